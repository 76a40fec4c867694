"""Every imported dataset is versioned by DVC: a stage in dvc.yaml, recorded in dvc.lock without
re-running the import, so its assets say dvc_tracked and push/pull carry it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from visrec_pipelines.cli import main
from visrec_pipelines.data.dvc_stages import import_command
from visrec_pipelines.versioning import dataset_version

VENV_BIN = str(Path(sys.executable).parent)


def dvc(cwd: Path, *args: str) -> str:
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"], DVC_NO_ANALYTICS="1")
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    dvc(root, "init", "--no-scm")
    dvc(root, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    monkeypatch.setenv("VISREC_ROOT", str(root))
    return root


def visrec(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def stages(root: Path, name: str) -> tuple[dict, dict]:
    return (yaml.safe_load((root / "dvc.yaml").read_text())["stages"][name],
            yaml.safe_load((root / "dvc.lock").read_text())["stages"][name])


@pytest.mark.slow
def test_hm_import_becomes_a_tracked_stage_that_push_and_pull_carry(project, hm_source):
    output = visrec("data", "import", "hm", str(hm_source.root))
    assert "import report:" in output and "DVC: stage 'hm'" in output
    stage, locked = stages(project, "hm")
    assert stage == {"cmd": "visrec data import hm ../hm --name hm", "deps": ["../hm"], "outs": ["assets/hm"]}
    assert [d["path"] for d in locked["deps"]] == ["../hm"]
    first = dataset_version(project / "assets" / "hm")
    assert first["dvc_tracked"] and locked["outs"][0]["md5"] == first["version"]
    assert "up to date" in dvc(project, "status")           # `dvc repro` would not re-run it

    written = (project / "dvc.yaml").read_text()
    visrec("data", "import", "hm", str(hm_source.root))      # the same import again: nothing changes
    assert (project / "dvc.yaml").read_text() == written
    assert dataset_version(project / "assets" / "hm") == first

    with open(hm_source.root / "transactions_train.csv", "a") as more:
        more.write(f"2018-09-30,{hm_source.customers[0]},{hm_source.articles[0]},0.03,1\n")
    visrec("data", "import", "hm", str(hm_source.root))
    second = dataset_version(project / "assets" / "hm")
    assert second["dvc_tracked"] and second["version"] != first["version"]
    dvc(project, "repro", "--force", "hm")                  # the stage's command really re-imports it
    assert dataset_version(project / "assets" / "hm") == second

    dvc(project, "push", "hm")
    shutil.rmtree(project / "assets" / "hm")
    shutil.rmtree(project / ".dvc" / "cache")
    dvc(project, "pull", "hm")
    assert dataset_version(project / "assets" / "hm") == second


@pytest.mark.slow
def test_folder_and_amazon_stages_beside_a_commented_dvc_yaml(project, amazon_source, tmp_path):
    (project / "dvc.yaml").write_text("# datasets and how they are made\nstages:\n  other:\n"
                                      "    cmd: echo hi > note.txt   # a stage of the user's\n"
                                      "    outs:\n      - note.txt\n")
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (40, 40), "red").save(pics / "a.jpg")
    pd.DataFrame({"sku": ["a"], "image": ["a.jpg"]}).to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user_id": ["u1"], "sku": ["a"], "ts": [1704164645]}).to_csv(tmp_path / "events.csv", index=False)
    visrec("data", "import", "folder", "--items", str(tmp_path / "items.csv"), "--events", str(tmp_path / "events.csv"),
           "--images", str(pics), "--map", "item_id=sku", "--map", "timestamp=ts", "--event-type", "view",
           "--name", "shop")
    visrec("data", "import", "amazon", str(amazon_source / "reviews_Clothing.json.gz"),
           str(amazon_source / "meta_Clothing.json"), "--images", str(amazon_source / "images"))
    text = (project / "dvc.yaml").read_text()
    assert text.startswith("# datasets and how they are made") and "# a stage of the user's" in text
    shop, _ = stages(project, "shop")
    assert shop["cmd"] == ("visrec data import folder --items ../items.csv --events ../events.csv --images ../pics "
                           "--map item_id=sku --map timestamp=ts --event-type view --name shop")
    assert sorted(shop["deps"]) == ["../events.csv", "../items.csv", "../pics"] and shop["outs"] == ["assets/shop"]
    amazon, _ = stages(project, "amazon")
    assert sorted(amazon["deps"]) == ["../amazon/images", "../amazon/meta_Clothing.json",
                                      "../amazon/reviews_Clothing.json.gz"]
    for name in ("shop", "amazon"):
        assert dataset_version(project / "assets" / name)["dvc_tracked"]
    assert "up to date" in dvc(project, "status", "shop", "amazon")


@pytest.mark.slow
def test_an_unchanged_templated_stage_is_left_as_written(project, tmp_path):
    """The project's own movielens stage reads its source from params.yaml: kept, only committed."""
    source = tmp_path / "ml"
    (source / "posters").mkdir(parents=True)
    (source / "movies.csv").write_text("item_id,title,genres\n1,A (1995),Comedy\n")
    (source / "ratings.csv").write_text("user_id,item_id,rating,timestamp\n1,1,4.0,964982703\n")
    Image.new("RGB", (30, 40), "blue").save(source / "posters" / "1.jpg")
    template = ("stages:\n  movielens:\n    cmd: visrec data import movielens ${movielens.source} --name movielens\n"
                "    deps:\n      - ${movielens.source}\n    outs:\n      - assets/movielens\n")
    (project / "dvc.yaml").write_text(template)
    (project / "params.yaml").write_text("movielens:\n  source: ../ml\n")
    output = visrec("data", "import", "movielens", str(source))
    assert "DVC: stage 'movielens'" in output
    assert (project / "dvc.yaml").read_text() == template
    assert dataset_version(project / "assets" / "movielens")["dvc_tracked"]


def test_outside_a_dvc_project_the_import_says_it_is_not_versioned(hm_source, tmp_path, monkeypatch):
    monkeypatch.setenv("VISREC_ROOT", str(tmp_path / "plain"))
    output = visrec("data", "import", "hm", str(hm_source.root))
    assert "is not inside a DVC project, so this dataset is not versioned" in output
    assert not (tmp_path / "plain" / "dvc.yaml").exists()
    assert not dataset_version(tmp_path / "plain" / "assets" / "hm")["dvc_tracked"]


def test_the_stage_command_runs_from_the_project_root(tmp_path):
    root = tmp_path / "project"
    assert import_command(["hm", tmp_path / "hm data", "--name", "hm"], root, root / "assets" / "hm") == \
        "visrec data import hm '../hm data' --name hm"
    assert import_command(["hm", Path("/srv/hm"), "--name", "hm"], root, root / "data" / "hm") == \
        "VISREC_ASSETS=data visrec data import hm /srv/hm --name hm"     # no folder shared but /: absolute
