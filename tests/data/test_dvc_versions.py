"""The project's own dvc.yaml: repro, push/pull round trip, and versions that follow the data."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from visrec_pipelines.versioning import dataset_version

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = str(Path(sys.executable).parent)


def dvc(cwd: Path, *args: str) -> str:
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ["PATH"], DVC_NO_ANALYTICS="1")
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def project(tmp_path):
    """A copy of the project's DVC setup with a tiny demo and a local remote in tmp_path."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", ".dvcignore", "visrec_pipelines/data/demo.py"):   # the stage's files
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["demo"].update(items=40, users=10, seed=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "remote", "add", "-f", "-d", "local", str(tmp_path / "remote"))
    return root


@pytest.mark.slow
def test_repro_push_pull_and_versions(project):
    dvc(project, "repro", "demo")
    demo = project / "assets" / "demo"
    first = dataset_version(demo)
    assert first["dvc_tracked"] and first["version"].endswith(".dir")
    assert first["version"] == yaml.safe_load((project / "dvc.lock").read_text())["stages"]["demo"]["outs"][0]["md5"]

    dvc(project, "push", "demo")
    shutil.rmtree(demo)
    shutil.rmtree(project / ".dvc" / "cache")
    dvc(project, "pull", "demo")
    assert dataset_version(demo) == first  # the same bytes came back

    (demo / "events.csv").write_text((demo / "events.csv").read_text() + "u1,i1,view,,2025-01-01T00:00:00Z\n")
    edited = dataset_version(demo)
    assert edited["version"] != first["version"] and not edited["dvc_tracked"]

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["demo"]["seed"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(project, "repro", "demo")
    reseeded = dataset_version(demo)
    assert reseeded["dvc_tracked"] and reseeded["version"] not in (first["version"], edited["version"])


def test_version_outside_a_dvc_project(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    before = dataset_version(tmp_path)
    assert not before["dvc_tracked"] and before["files"] == 1
    (tmp_path / "a.txt").write_text("b")
    assert dataset_version(tmp_path)["version"] != before["version"]
