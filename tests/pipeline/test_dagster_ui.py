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
    deadline, names = time.time() + 240, None      # a loaded CI machine: loading the code location is slow
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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_ui_shows_each_datasets_own_history(isolated_env, settings, free_port, spawn, browser):
    """One instance, one webserver, two datasets: each asset's Partitions page shows each
    dataset's own latest materialisation (its rows, its version), not the other's."""
    from dagster import DagsterInstance, materialize
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from visrec_pipelines.data.demo import generate_demo
    from visrec_pipelines.defs.catalogue import catalogue_source
    from visrec_pipelines.defs.partitions import register_dataset
    from visrec_pipelines.resources import default_resources

    sizes = {"demo": 30, "shop": 12}
    for name, n_items in sizes.items():
        generate_demo(settings.assets_dir / name, n_items=n_items, n_users=4, seed=n_items)
    with DagsterInstance.get() as instance:                       # the DAGSTER_HOME the webserver reads
        for name in sizes:
            register_dataset(instance, name)
            assert materialize([catalogue_source], partition_key=name, instance=instance,
                               resources=default_resources(settings)).success

    port = free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = spawn([str(webserver), "-m", "visrec_pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)],
                 env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "the webserver did not start"
            time.sleep(1)

    def metadata_row(label: str) -> str:
        cells = browser.find_elements(By.XPATH, f"//td[normalize-space()='{label}']/following-sibling::td[1]")
        return cells[0].text.strip() if cells else ""

    for name, n_items in sizes.items():
        browser.get(f"http://127.0.0.1:{port}/assets/catalogue_source?view=partitions&partition={name}")
        WebDriverWait(browser, 60).until(lambda d, name=name: metadata_row("dataset") == name)
        assert metadata_row("rows") == str(n_items)                  # its own latest materialisation
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Materialized (2)" in body and "demo" in body and "shop" in body   # both datasets listed
    browser.save_screenshot(str(settings.root_dir / "dagster-ui-partitions.png"))
