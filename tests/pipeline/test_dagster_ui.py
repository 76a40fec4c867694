"""`dagster dev`'s webserver loads the code location and lists the assets (what a person sees)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

QUERY = '{"query": "{ assetNodes { assetKey { path } } }"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_webserver_lists_the_assets(isolated_env):
    port = free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen(
        [str(webserver), "-m", "visrec_pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        deadline, names = time.time() + 90, None
        while time.time() < deadline and names is None:
            time.sleep(1)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=QUERY.encode(),
                                                 headers={"Content-Type": "application/json"})
                nodes = json.load(urllib.request.urlopen(request, timeout=5))["data"]["assetNodes"]
                names = {"/".join(n["assetKey"]["path"]) for n in nodes}
            except (OSError, KeyError, TypeError):
                continue
        assert names and {"raw_images", "item_catalogue", "behaviour_events", "quarantined_events"} <= names
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
