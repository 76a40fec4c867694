"""Dataset versions: the DVC content hash of a dataset folder (what ``dvc add``/``dvc repro`` record).

Every asset and model names the exact data it came from by this hash. It is computed from the
bytes on disk with DVC's own hashing (cached by DVC's state db), so it is right even when the
folder was changed without ``dvc commit``; ``dvc_tracked`` says whether it matches ``dvc.lock``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml


def find_dvc_root(path: Path) -> Path | None:
    for candidate in [path, *path.parents]:
        if (candidate / ".dvc").is_dir():
            return candidate
    return None


def _hash_with_dvc(path: Path, root: Path | None) -> tuple[str, int, int]:
    from dvc_data.hashfile.build import build

    if root is not None:
        from dvc.repo import Repo

        with Repo(str(root)) as repo:
            _, meta, obj = build(repo.cache.local, str(path), repo.fs, "md5")
    else:  # outside any DVC project: same algorithm, throwaway object store
        from dvc_data.hashfile.db import HashFileDB
        from dvc_objects.fs.local import LocalFileSystem

        fs = LocalFileSystem()
        with tempfile.TemporaryDirectory() as scratch:
            _, meta, obj = build(HashFileDB(fs, scratch), str(path), fs, "md5")
    return obj.hash_info.value, int(meta.size or 0), int(meta.nfiles or 0)


def locked_hashes(root: Path) -> dict[str, str]:
    """Output path → md5 as recorded in dvc.lock and any ``*.dvc`` files under assets/."""
    recorded: dict[str, str] = {}
    lock = root / "dvc.lock"
    if lock.is_file():
        for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
            for out in stage.get("outs", []):
                recorded[str((root / out["path"]).resolve())] = out.get("md5", "")
    for pointer in (root / "assets").glob("*.dvc"):
        for out in (yaml.safe_load(pointer.read_text()) or {}).get("outs", []):
            recorded[str((pointer.parent / out["path"]).resolve())] = out.get("md5", "")
    return recorded


def dataset_version(path: Path) -> dict:
    """{'version': md5 '.dir' hash, 'dvc_tracked': matches dvc.lock, 'size_bytes', 'files'}"""
    path = Path(path).resolve()
    root = find_dvc_root(path)
    digest, size, files = _hash_with_dvc(path, root)
    tracked = root is not None and locked_hashes(root).get(str(path)) == digest
    return {"version": digest, "dvc_tracked": tracked, "size_bytes": size, "files": files}
