"""Every imported dataset is versioned by DVC, like the demo and MovieLens.

After an import inside a DVC project (found from the output folder upward), the stage that
reproduces it is added to the project's ``dvc.yaml`` (or updated; an unchanged stage, templated
ones included, is left as written) — cmd: the same ``visrec data import ...`` line, paths relative
to the project root where the source shares a folder with it; deps: the source files and folders;
outs: ``assets/<name>`` — and recorded in ``dvc.lock`` with ``dvc commit`` instead of re-running the
import. So ``versioning.dataset_version`` finds it ``dvc_tracked``, and ``dvc push``/``dvc pull``
carry it. Inside ``dvc repro`` (``DVC_STAGE`` set) DVC records the stage itself: nothing is done.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
from pathlib import Path

from ..versioning import find_dvc_root

ASSETS = "assets"


def register_import(dataset_root: Path, arguments: list, deps: list[Path]) -> str:
    """Add or update the import's stage and commit it; one line saying what was done (or why not).
    ``arguments`` follow ``visrec data import``; Path arguments are written relative to the root."""
    if os.environ.get("DVC_STAGE"):
        return f"DVC: run by `dvc repro` (stage {os.environ['DVC_STAGE']}), which records the output itself"
    out = Path(dataset_root).resolve()
    root = find_dvc_root(out)
    if root is None:
        return (f"DVC: {out} is not inside a DVC project, so this dataset is not versioned "
                f"(run `dvc init` in the project, then import again)")
    out_path = out.relative_to(root).as_posix()
    command = import_command(arguments, root, out)
    dep_paths = [portable_path(Path(dep), root) for dep in deps]

    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:   # DVC resolves dvc.yaml and the stage's paths from the working directory
        with contextlib.chdir(root), Repo(str(root)) as repo:
            stage, record = _existing_stage(repo, out), "dvc.lock"
            if stage is not None and not stage.cmd:
                name = record = stage.addressing    # tracked by `dvc add` (a .dvc file): kept that way
            elif stage is not None and _same(stage, command, dep_paths, out_path):
                name = stage.name
            else:
                name = stage.name if stage is not None else _free_name(repo, out.name)
                repo.stage.add(name=name, cmd=command, deps=dep_paths, outs=[out_path], force=True)
            repo.commit(name, force=True)
    except DvcException as exc:
        return f"DVC: {out_path} could not be versioned: {exc}"
    return (f"DVC: stage {name!r} of {root / 'dvc.yaml'} now records {out_path} in {record} "
            f"(`dvc push` shares it, `dvc repro {name}` re-imports it)")


def import_command(arguments: list, root: Path, out: Path) -> str:
    """The ``visrec data import ...`` line that makes ``out`` again when run from ``root``."""
    words = [portable_path(a, root) if isinstance(a, Path) else str(a) for a in arguments]
    line = shlex.join(["visrec", "data", "import", *words])
    if out.parent != root / ASSETS:      # the assets folder is not the default <root>/assets
        line = f"VISREC_ASSETS={shlex.quote(out.parent.relative_to(root).as_posix())} {line}"
    return line


def portable_path(path: Path, root: Path) -> str:
    """Relative to ``root`` when the path shares a folder with it (``../shared/...``), else absolute."""
    path = Path(os.path.abspath(path))
    if os.path.commonpath([path, root]) == os.path.sep:
        return path.as_posix()
    return Path(os.path.relpath(path, root)).as_posix()


def _existing_stage(repo, out: Path):
    for stage in repo.index.stages:
        if any(Path(o.fs_path) == out for o in stage.outs):
            return stage
    return None


def _same(stage, command: str, deps: list[str], out_path: str) -> bool:
    return (stage.cmd == command and sorted(d.def_path for d in stage.deps) == sorted(deps)
            and [o.def_path for o in stage.outs] == [out_path])


def _free_name(repo, dataset_name: str) -> str:
    """The dataset's name as a stage name (DVC allows letters, digits, _ and -), or import-<name>
    when another stage already has it."""
    name = re.sub(r"[^\w-]", "-", dataset_name) or "dataset"
    taken = {getattr(s, "name", None) for s in repo.index.stages}
    return name if name not in taken else f"import-{name}"
