"""SIGKILL in the middle of a champion swap, then a restart: the last good champion serves, even when
the alias now points at a broken artifact. Runs the real `visrec serve` in a subprocess."""
import json
import os
import signal
import subprocess
import textwrap
import time

import httpx
import pytest

from .conftest import free_port, python, wait_http

# `visrec serve`, with Registry.load_bundle slowed down for one version, so the test can kill the
# process while that version is being loaded (between the alias moving and the swap).
LAUNCHER = textwrap.dedent("""
    import os, pathlib, sys, time
    from visrec_pipelines.registry import Registry

    original = Registry.load_bundle

    def slow_load_bundle(self, version):
        if str(version) == os.environ.get("SLOW_VERSION"):
            pathlib.Path(os.environ["MARKER"]).write_text(f"loading {version}")
            time.sleep(300)
        return original(self, version)

    Registry.load_bundle = slow_load_bundle
    from visrec_pipelines.cli import main
    main(sys.argv[1:])
""")


def start(shop, tmp_path, dataset, port, **env):
    script = tmp_path / "launch_server.py"
    script.write_text(LAUNCHER)
    environment = {**shop.environment(dataset), "VISREC_SERVING_POLL_S": "0.3", "VISREC_SERVING_ENCODER": "none",
                   "MARKER": str(tmp_path / "marker"), **env}
    log = open(tmp_path / f"server-{port}-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen([python(), str(script), "serve", "--dataset", dataset, "--port", str(port)],
                            env=environment, stdout=log, stderr=subprocess.STDOUT)


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.mark.slow
def test_kill_mid_swap_then_restart(shop, tmp_path):
    dataset = shop.dataset("kill-midswap")
    first = shop.register(dataset, "bpr")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    user = shop.split.train.user_ids[0]
    server = start(shop, tmp_path, dataset, port, SLOW_VERSION=str(int(first) + 1))
    try:
        ready = wait_http(f"{base}/readyz", timeout=90, process=server).json()
        assert ready["champion_version"] == first
        second = shop.register(dataset, "mostpop")          # the alias moves; the watcher starts loading
        assert second == str(int(first) + 1)
        deadline = time.monotonic() + 30
        while not (tmp_path / "marker").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "marker").read_text() == f"loading {second}"
        assert httpx.get(f"{base}/recommendations/{user}").json()["champion_version"] == first  # mid-swap: old serves
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    finally:
        stop(server)

    last_good = shop.warehouse / dataset / "serving" / "last_good.json"
    assert json.loads(last_good.read_text())["champion_version"] == first     # intact, not half-written

    # restart: the alias's version is fine, so it serves (the swap the kill interrupted completes)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(shop, tmp_path, dataset, port)
    try:
        assert wait_http(f"{base}/readyz", timeout=90, process=server).json()["champion_version"] == second
    finally:
        stop(server)

    # the alias's artifact is now broken (say, a half-copied artifact store): a restart serves the
    # newest version that still loads (last_good.json names the broken one now, so this comes from
    # the registry's champion history), and says why
    shop.artifact_file(dataset, second).write_bytes(b"garbage")
    assert json.loads(last_good.read_text())["champion_version"] == second
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(shop, tmp_path, dataset, port)
    try:
        ready = wait_http(f"{base}/readyz", timeout=90, process=server).json()
        assert ready["champion_version"] == first and ready["degraded"]
        assert f"version {second}" in ready["fallback"]
        assert ready["last_error"]["version"] == second
        recs = httpx.get(f"{base}/recommendations/{user}", params={"k": 3})
        assert recs.status_code == 200 and recs.json()["champion_version"] == first
    finally:
        stop(server)
