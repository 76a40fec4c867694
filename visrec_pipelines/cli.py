"""``visrec`` command line: data generation and import, and running the asset graph."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .settings import Settings


class OneLineErrors(click.Group):
    """Every failure ends in one line that says what happened and what to do; ``--traceback``
    shows the stack instead (for a bug report)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.params.get("traceback"):
                raise
            raise click.ClickException(_one_line(exc)) from exc


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):    # a setting from the environment is out of range
        first = exc.errors()[0]
        name = "VISREC_" + "_".join(map(str, first["loc"])).upper()
        return f"setting {name} is invalid: {first['msg']} (got {first.get('input')!r})"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{text} (run `visrec --traceback ...` for the details)" if _unexpected(exc) else text


def _unexpected(exc: Exception) -> bool:
    """Errors that already say what to do, as opposed to a bug or an environment problem."""
    from .data.contract import DatasetError
    from .registry import NoPreviousChampion
    from .run_config import RunConfigError

    return not isinstance(exc, (DatasetError, NoPreviousChampion, RunConfigError, FileNotFoundError,
                                PermissionError))


@click.group(cls=OneLineErrors)
@click.option("--traceback", is_flag=True, help="show the full stack of an error instead of one line")
@click.pass_context
def main(ctx: click.Context, traceback: bool) -> None:
    """visrec: visual recommendation, from images and behaviour to ranked items."""
    ctx.obj = Settings()   # the environment is read here, once


def settings_for(dataset: str | None = None) -> Settings:
    """The command's settings, for ``dataset`` when given (else $VISREC_DATASET or demo)."""
    return click.get_current_context().find_object(Settings).with_dataset(dataset)


@main.group()
def data() -> None:
    """Create or import datasets under assets/ (the dataset contract)."""


@data.command("demo")
@click.option("--items", "n_items", default=3000, show_default=True, help="catalogue size")
@click.option("--users", "n_users", default=800, show_default=True, help="simulated shoppers")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default: assets/demo")
def data_demo(n_items: int, n_users: int, seed: int, out: Path | None) -> None:
    """Generate the built-in demo shop (deterministic from the seed)."""
    from .data.demo import generate_demo

    out = out or settings_for().assets_dir / "demo"
    started = time.perf_counter()
    dataset = generate_demo(out, n_items=n_items, n_users=n_users, seed=seed, progress=True)
    _report(dataset, time.perf_counter() - started)


@data.group("import")
def data_import() -> None:
    """Import outside data into the dataset contract."""


DVC_OPTION = click.option("--dvc/--no-dvc", "use_dvc", default=True, show_default=True,
                          help="inside a DVC project, add/update the dataset's stage in dvc.yaml and "
                               "record it in dvc.lock")


@data_import.command("movielens")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default="movielens", show_default=True)
@DVC_OPTION
def import_movielens_cmd(path: Path, name: str, use_dvc: bool) -> None:
    """PATH holds ratings.csv, movies.csv and posters/{item_id}.jpg."""
    from .data.importers import import_movielens

    started = time.perf_counter()
    dataset = import_movielens(path, settings_for().assets_dir / name, progress=True)
    _report(dataset, time.perf_counter() - started)
    _version(dataset, use_dvc, ["movielens", path, "--name", name], [path])


@data_import.command("folder")
@click.option("--items", "items_csv", required=True, type=click.Path(exists=True, path_type=Path),
              help="items table (CSV/TSV in any common delimiter and encoding, or Parquet)")
@click.option("--events", "events_csv", required=True, type=click.Path(exists=True, path_type=Path),
              help="events table (CSV or Parquet)")
@click.option("--images", "images_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--users", "users_csv", type=click.Path(exists=True, path_type=Path), default=None,
              help="optional users table: events of users not in it will be quarantined")
@click.option("--map", "pairs", multiple=True, metavar="[TABLE.]COLUMN=SOURCE",
              help="contract column = your column, e.g. --map user_id=customer_id (repeatable; TABLE is "
                   "events, items or users, default every table that has SOURCE)")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="YAML with events:/items:/users: sections, timestamp_format:, event_type:")
@click.option("--event-type", default=None,
              help="the type of every event (view, click, add_to_cart, purchase, rating) when the "
                   "events table has no event_type column")
@click.option("--timestamp-format", default=None,
              help="auto (default: ISO-8601 or unix s/ms/µs by magnitude), iso, unix_s, unix_ms, unix_us, "
                   "or a strptime pattern such as %d/%m/%Y (day-first dates are never guessed)")
@click.option("--name", default="folder", show_default=True)
@DVC_OPTION
def import_folder_cmd(items_csv: Path, events_csv: Path, images_dir: Path, users_csv: Path | None,
                      pairs: tuple[str, ...], mapping_file: Path | None, event_type: str | None,
                      timestamp_format: str | None, name: str, use_dvc: bool) -> None:
    """A shop's items and events tables (and optionally users), and a folder of images."""
    from .data.importers import ColumnMapping, import_folder

    mapping = ColumnMapping.build(mapping_file, pairs, timestamp_format, event_type)
    started = time.perf_counter()
    dataset = import_folder(items_csv, events_csv, images_dir, settings_for().assets_dir / name,
                            users_csv=users_csv, mapping=mapping, progress=True)
    _report(dataset, time.perf_counter() - started)
    options = [("--users", users_csv), ("--mapping", mapping_file), *(("--map", p) for p in pairs),
               ("--event-type", event_type), ("--timestamp-format", timestamp_format)]
    arguments = ["folder", "--items", items_csv, "--events", events_csv, "--images", images_dir,
                 *[word for option, value in options if value is not None for word in (option, value)],
                 "--name", name]
    _version(dataset, use_dvc, arguments, [items_csv, events_csv, images_dir, users_csv, mapping_file])


@data_import.command("hm")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default="hm", show_default=True)
@DVC_OPTION
def import_hm_cmd(path: Path, name: str, use_dvc: bool) -> None:
    """H&M Personalized Fashion layout: PATH holds articles.csv, transactions_train.csv,
    customers.csv and images/0xx/0xxxxxxxxx.jpg."""
    from .data.importers import import_hm

    started = time.perf_counter()
    dataset = import_hm(path, settings_for().assets_dir / name, progress=True)
    _report(dataset, time.perf_counter() - started)
    _version(dataset, use_dvc, ["hm", path, "--name", name], [path])


@data_import.command("amazon")
@click.argument("reviews", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("meta", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", "images_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="holds <asin>.jpg")
@click.option("--name", default="amazon", show_default=True)
@DVC_OPTION
def import_amazon_cmd(reviews: Path, meta: Path, images_dir: Path, name: str, use_dvc: bool) -> None:
    """Amazon Reviews layout: REVIEWS and META are JSON lines (plain or .gz; META may hold Python
    dict literals, as older dumps do)."""
    from .data.importers import import_amazon

    started = time.perf_counter()
    dataset = import_amazon(reviews, meta, images_dir, settings_for().assets_dir / name, progress=True)
    _report(dataset, time.perf_counter() - started)
    _version(dataset, use_dvc, ["amazon", reviews, meta, "--images", images_dir, "--name", name],
             [reviews, meta, images_dir])


def _report(dataset, seconds: float) -> None:
    from .data.import_report import report_lines

    manifest = dataset.read_manifest()
    counts = manifest.get("counts", {})
    click.echo(f"dataset {dataset.name!r} at {dataset.root} in {seconds:.1f}s: "
               + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if "import_report" in manifest:
        click.echo("\n".join(report_lines(manifest["import_report"])))
    click.echo(_make_partition(dataset))


def _make_partition(dataset) -> str:
    """The new dataset becomes a partition of every asset in the Dagster instance at once, so the UI
    offers it and the sensors watch it (they would also find it on their next tick)."""
    from .defs.partitions import register_dataset
    from .runner import dagster_instance

    settings = settings_for()
    if dataset.root.parent.resolve() != settings.assets_dir:
        return f"Dagster: {dataset.root} is outside {settings.assets_dir}, so it is not a partition"
    try:
        with dagster_instance(settings) as instance:
            register_dataset(instance, dataset.name)
    except Exception as exc:       # a down instance must not undo an import
        return f"Dagster: could not register {dataset.name!r} ({type(exc).__name__}: {exc}); `visrec run` will"
    return f"Dagster: {dataset.name!r} is a partition of every asset (materialise it in the UI or `visrec run " \
           f"--dataset {dataset.name}`)"


def _version(dataset, use_dvc: bool, arguments: list, deps: list) -> None:
    """Inside a DVC project, the import becomes a stage recorded in dvc.lock (data.dvc_stages)."""
    if not use_dvc:
        click.echo("DVC: skipped (--no-dvc): the dataset is not versioned")
        return
    from .data.dvc_stages import register_import

    click.echo(register_import(dataset.root, arguments, [Path(d) for d in deps if d is not None]))


@main.command("embed")
@click.option("--dataset", "dataset_name", default=None, help="default: $VISREC_DATASET or demo")
@click.option("--shard", default="0/1", show_default=True, help="i/n: embed only shard i of n")
@click.option("--encoder", "encoder_name", default=None, help="default: $VISREC_ENCODER or efficientnet-lite0")
@click.option("--weights", "weights_path", default=None, help="weights file for torchvision backbones")
@click.option("--runtime", default="auto", show_default=True)
@click.option("--workers", default=1, show_default=True, help="decoding threads")
@click.option("--chunk-rows", default=1024, show_default=True,
              help="vectors per published chunk: the most work a killed run loses")
def embed(dataset_name, shard, encoder_name, weights_path, runtime, workers, chunk_rows) -> None:
    """Embed one shard of a dataset's validated images into the shared embedding store (run it on
    several processes or machines at once; the raw_images asset must be materialised)."""
    from .vision.embedding_job import update_embeddings
    from .vision.embedding_store import EmbeddingStore
    from .vision.encoders import shared_encoder

    settings = settings_for(dataset_name)
    warehouse = settings.warehouse_for()
    index, count = (int(x) for x in shard.split("/"))
    raw_images = warehouse.read_table("raw_images")
    if raw_images is None:
        raise click.ClickException(f"no raw_images table at {warehouse.table_path('raw_images')}: "
                                   f"materialise raw_images first (visrec run --dataset {settings.dataset})")
    encoder = shared_encoder(encoder_name or settings.encoder, weights_path or settings.encoder_weights,
                             runtime, str(settings.cache_dir))
    store = EmbeddingStore.for_encoder(warehouse.embeddings_dir, encoder)
    report = update_embeddings(store, encoder, raw_images, settings.dataset_folder().image_file,
                               shard=(index, count), workers=workers, progress=True, rows_per_chunk=chunk_rows)
    for repair in store.repairs:
        click.echo(f"repaired: {repair}")
    click.echo(f"shard {shard}: embedded {report.embedded}, unchanged {report.unchanged}, "
               f"removed {report.removed}, failures {len(report.failures)} "
               f"({report.images_per_second:.1f} img/s)")


@main.command("promote")
@click.option("--dataset", "dataset_name", default=None, help="default: $VISREC_DATASET or demo")
@click.option("--rollback", is_flag=True, help="restore the previous champion")
def promote(dataset_name: str | None, rollback: bool) -> None:
    """Show the champion ranker and its history, or roll back to the previous champion."""
    registry = settings_for(dataset_name).registry()
    if rollback:
        version = registry.rollback()
        click.echo(f"{registry.model_name}: champion rolled back to version {version}")
    champion = registry.current_champion()
    if champion is None:
        click.echo(f"{registry.model_name} has no champion yet (run `visrec run` first)")
        return
    click.echo(f"{registry.model_name}: champion = version {champion.version} "
               f"({champion.tags.get('ranker', '?')}, ndcg@20 {champion.tags.get('ndcg_at_20', '?')}); "
               f"history {registry.history()}")


@main.command("serve")
@click.option("--dataset", "dataset_name", default=None, help="default: $VISREC_DATASET or demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="bind address (loopback by default)")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--poll-seconds", default=None, type=float,
              help="check for a new champion/index this often [default: $VISREC_SERVING_POLL_S or 10]")
@click.option("--index-source", type=click.Choice(["snapshot", "milvus"]), default=None,
              help="snapshot: the .npz the item_index asset writes; milvus: export the aliased "
                   "collection [default: $VISREC_INDEX_SOURCE or snapshot]")
@click.option("--encoder", default=None, help="encoder for search by image, or 'none' "
                                              "[default: $VISREC_SERVING_ENCODER or efficientnet-lite0]")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(dataset_name, host, port, poll_seconds, index_source, encoder, access_log) -> None:
    """Serve recommendations, similar items, search by image, feedback events and the gallery
    (OpenAPI docs at /docs). Write endpoints need X-API-Key when VISREC_API_KEY is set."""
    from .serving.server import serve as run_server

    overrides = {k: v for k, v in {"serving_poll_s": poll_seconds, "index_source": index_source,
                                   "serving_encoder": encoder}.items() if v is not None}
    settings = settings_for(dataset_name).replace(**overrides)
    click.echo(f"serving dataset {settings.dataset!r} on http://{host}:{port} (docs at /docs)")
    run_server(settings, host=host, port=port, access_log=access_log)


@main.command("run")
@click.option("--dataset", "dataset_name", default=None, help="default: $VISREC_DATASET or demo")
@click.option("--set", "assignments", multiple=True, metavar="ASSET.FIELD=VALUE",
              help="a run-config value, e.g. behaviour_events.max_bad_fraction=0.5 (repeatable)")
@click.option("--config", "config_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a YAML file of ASSET: {FIELD: VALUE} (repeatable; --set wins)")
@click.option("--show-config", is_flag=True, help="list every setting with its default, then stop")
def run(dataset_name: str | None, assignments: tuple[str, ...], config_files: tuple[Path, ...],
        show_config: bool) -> None:
    """Materialise the whole asset graph in-process on one dataset."""
    from .definitions import build_definitions
    from .run_config import build_run_config, describe
    from .runner import run_pipeline

    settings = settings_for(dataset_name)
    defs = build_definitions(settings)
    if show_config:
        click.echo(describe(defs))
        return
    run_config = build_run_config(defs, list(assignments), list(config_files))
    ok = run_pipeline(echo=click.echo, settings=settings, run_config=run_config)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
