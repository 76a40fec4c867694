"""`dagster dev`'s webserver loads the code location and lists the assets (what a person sees)."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

QUERY = '{"query": "{ assetNodes { assetKey { path } } }"}'


@pytest.mark.slow
def test_webserver_lists_the_assets(isolated_env, free_port, spawn):
    port = free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = spawn(
        [str(webserver), "-m", "visrec_pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
