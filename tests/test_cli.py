"""The `visrec` command line drives the platform end to end."""
import shutil

import pandas as pd
from click.testing import CliRunner
from PIL import Image

from visrec_pipelines.cli import main
from visrec_pipelines.vision.embedding_store import EmbeddingStore


def test_demo_then_run(isolated_env):
    runner = CliRunner()
    made = runner.invoke(main, ["data", "demo", "--items", "40", "--users", "10", "--seed", "4"])
    assert made.exit_code == 0, made.output
    assert "items=40" in made.output
    ran = runner.invoke(main, ["run"])
    assert ran.exit_code == 0, ran.output
    assert "succeeded" in ran.output and "behaviour_events" in ran.output
    assert (isolated_env / "warehouse" / "demo" / "item_catalogue.parquet").is_file()
    for chatter in ("Created version", "Registered model", "UserWarning", "Downloading artifacts", "CloudPickle"):
        assert chatter not in ran.output                              # a quiet console ...
    log = (isolated_env / "warehouse" / "demo" / "logs" / "run.log").read_text()
    assert "Created version" in log and "CloudPickle" in log           # ... the library's words in the log

    # scale-out: two shard workers fill one store (as several machines would)
    store_root = isolated_env / "warehouse" / "demo" / "embeddings"
    shutil.rmtree(store_root)
    for shard in ("0/2", "1/2"):
        done = runner.invoke(main, ["embed", "--shard", shard])
        assert done.exit_code == 0, done.output
    encoder_id = pd.read_parquet(isolated_env / "warehouse" / "demo" / "image_embeddings.parquet")["encoder_id"][0]
    ids, vectors, _, _ = EmbeddingStore(store_root, encoder_id).load()
    assert len(ids) == 40 and vectors.shape[0] == 40


def test_run_unknown_dataset_is_a_clear_error(isolated_env):
    result = CliRunner().invoke(main, ["run", "--dataset", "nope"])
    assert result.exit_code != 0
    assert "not found" in result.output and "visrec data" in result.output


def test_import_folder_then_run(isolated_env, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    for k, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (64, 64), colour).save(pics / f"{k}.png")
    pd.DataFrame({"item_id": ["a", "b", "c"], "image": ["0.png", "1.png", "2.png"],
                  "colour": ["red", "green", "blue"]}).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "c"],
                  "event_type": ["view", "purchase", "click"], "value": ["", "1", ""],
                  "timestamp": ["2024-01-01T00:00:00Z"] * 3}).to_csv(tmp_path / "events.csv", index=False)
    runner = CliRunner()
    imported = runner.invoke(main, ["data", "import", "folder", "--items", str(tmp_path / "items.csv"),
                                    "--events", str(tmp_path / "events.csv"), "--images", str(pics),
                                    "--name", "shop"])
    assert imported.exit_code == 0, imported.output
    ran = runner.invoke(main, ["run", "--dataset", "shop"])
    assert ran.exit_code == 0, ran.output
    assert len(pd.read_parquet(isolated_env / "warehouse" / "shop" / "behaviour_events.parquet")) == 3
    assert "rankers skipped" in ran.output   # three events teach no ranker: said, not crashed


def test_errors_are_one_line_that_says_what_to_do(isolated_env, tmp_path):
    (tmp_path / "items.csv").write_text("item_id,image\na,a.jpg\n")
    (tmp_path / "events.csv").write_text("customer;article\nc1;a\n")
    runner = CliRunner()
    result = runner.invoke(main, ["data", "import", "folder", "--items", str(tmp_path / "items.csv"),
                                  "--events", str(tmp_path / "events.csv"), "--images", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {tmp_path / 'events.csv'}: required column(s) ['user_id', 'item_id',")
    assert "it has ['customer', 'article']" in line and "the events table needs the columns" in line

    bad_setting = runner.invoke(main, ["run"], env={"VISREC_EXECUTOR": "threads"})
    assert bad_setting.exit_code == 1
    assert bad_setting.output.strip() == ("Error: setting VISREC_EXECUTOR is invalid: Input should be "
                                          "'in_process', 'multiprocess' or 'celery' (got 'threads')")
    traced = runner.invoke(main, ["--traceback", "data", "import", "folder", "--items", str(tmp_path / "items.csv"),
                                  "--events", str(tmp_path / "events.csv"), "--images", str(tmp_path)])
    assert traced.exception is not None and "required column" in str(traced.exception)   # the real error


def test_run_set_changes_a_gates_threshold(isolated_env):
    """A blocked gate says which reasons dominate and the exact --set; that --set lets the run pass."""
    from visrec_pipelines.data.contract import Dataset, write_table
    from visrec_pipelines.data.demo import generate_demo

    shop = generate_demo(isolated_env / "assets" / "demo", n_items=30, n_users=12, seed=6)
    events = Dataset(shop.root).read_events()
    garbage = events.head(len(events) // 6).assign(timestamp="last tuesday")       # ~14% malformed
    write_table(pd.concat([events, garbage], ignore_index=True), shop.events_path)
    runner = CliRunner()
    blocked = runner.invoke(main, ["run"])
    assert blocked.exit_code == 1
    line = next(row for row in blocked.output.splitlines() if "bad_fraction_within_threshold FAILED" in row)
    assert "are malformed, over the 5% threshold; most: timestamp_parseable" in line
    hint = line.split("raise the threshold: ")[1].strip()
    assert hint.startswith("visrec run --set behaviour_events.max_bad_fraction=0.")
    passed = runner.invoke(main, hint.removeprefix("visrec ").split())
    assert passed.exit_code == 0, passed.output
    assert "bad_fraction_within_threshold FAILED" not in passed.output


def test_show_config_lists_every_assets_settings_graph_assets_too(isolated_env):
    shown = CliRunner().invoke(main, ["run", "--show-config"])
    assert shown.exit_code == 0, shown.output
    lines = set(shown.output.splitlines())
    assert {"image_embeddings.parallel_shards = 1", "behaviour_events.max_bad_fraction = 0.05",
            "ranker_ease.train = True"} <= lines
    wrong = CliRunner().invoke(main, ["run", "--set", "image_embeddings.shards=2"])
    assert wrong.exit_code == 1 and "image_embeddings has no setting shards" in wrong.output
