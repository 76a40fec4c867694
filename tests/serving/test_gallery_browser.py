"""The gallery in a real headless browser (Debian's chromium, driven by selenium through
/usr/bin/chromedriver): choose a user, see history and reasoned recommendations, open an item,
filter by tag, upload a picture, search by words, and keep a screenshot."""
import shutil
import threading
from pathlib import Path

import pytest
import uvicorn

from .conftest import free_port, wait_http


@pytest.fixture(scope="module")
def gallery_url(shop):
    from visrec_pipelines.serving.app import create_app

    app = create_app(shop.settings("demo"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
    assert app.state.images.wait(120), app.state.images.status()
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_gallery_end_to_end(browser, gallery_url, shop, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    cards = lambda section: browser.find_elements(By.CSS_SELECTOR, f"#{section} .card")   # noqa: E731

    browser.get(gallery_url + "/")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "user-select")).options) > 1)
    assert "champion v" in browser.find_element(By.ID, "status").text

    # the page opens on something real: the longest-history shopper and their recommendations
    users = Select(browser.find_element(By.ID, "user-select"))
    first = users.options[1].get_attribute("value")
    wait.until(lambda d: d.find_element(By.ID, "history-user").text == first and len(cards("recommendations")) >= 5)

    # choose another user: history thumbnails and recommendations with tags and reasons
    user = users.options[2].get_attribute("value")
    users.select_by_value(user)
    wait.until(lambda d: d.find_element(By.ID, "history-user").text == user
               and len(cards("recommendations")) >= 5 and len(cards("history")) > 0)
    history = {c.get_attribute("data-item-id") for c in cards("history")}
    recommended = cards("recommendations")
    assert not history & {c.get_attribute("data-item-id") for c in recommended}
    for card in recommended:
        assert card.find_element(By.CSS_SELECTOR, ".reason").text
        assert card.find_elements(By.CSS_SELECTOR, ".tag")
    assert any("you liked" in c.find_element(By.CSS_SELECTOR, ".reason").text for c in recommended)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#recommendations img')].every(i => i.complete && i.naturalWidth > 0)"))

    # open an item: its visually similar items
    chosen = recommended[0]
    chosen_title = chosen.find_element(By.CSS_SELECTOR, ".title").text
    chosen.find_element(By.CSS_SELECTOR, "img").click()
    wait.until(EC.visibility_of_element_located((By.ID, "similar-section")))
    wait.until(lambda d: len(cards("similar")) > 0)
    assert browser.find_element(By.ID, "similar-title").text == chosen_title
    assert chosen.get_attribute("data-item-id") not in {c.get_attribute("data-item-id") for c in cards("similar")}

    # filter by a tag: recommendations and similar items all carry it
    Select(browser.find_element(By.ID, "tag-select")).select_by_value("red")

    def all_red(section):
        found = cards(section)
        return bool(found) and all("red" in [t.text for t in c.find_elements(By.CSS_SELECTOR, ".tag")] for c in found)

    wait.until(lambda d: all_red("recommendations") and all_red("similar"))

    # upload a picture of a red catalogue item: it comes back first
    items = shop.items()
    red = items[items["colour"] == "red"].iloc[0]
    browser.find_element(By.ID, "upload-input").send_keys(str(shop.assets / "demo" / red["image_path"]))
    wait.until(lambda d: len(cards("search-results")) > 0)
    assert cards("search-results")[0].get_attribute("data-item-id") == red["item_id"]
    assert all_red("search-results")

    # words find the items that carry them (titles and tags), the tag filter still applies
    browser.find_element(By.ID, "text-input").send_keys("red")
    browser.find_element(By.ID, "text-go").click()
    wait.until(lambda d: len(cards("text-results")) > 0)
    assert all_red("text-results")

    # a bad upload is explained, not silently ignored
    junk = tmp_path / "notes.png"
    junk.write_text("not a picture")
    browser.find_element(By.ID, "upload-input").send_keys(str(junk))
    wait.until(EC.visibility_of_element_located((By.ID, "message")))
    assert "not_an_image" in browser.find_element(By.ID, "message").text

    # a visitor the champion does not know: popular picks, not an error
    Select(browser.find_element(By.ID, "tag-select")).select_by_value("")
    browser.find_element(By.ID, "user-input").send_keys("brand-new-visitor")
    browser.find_element(By.ID, "user-go").click()
    wait.until(lambda d: "new visitor" in d.find_element(By.ID, "recs-note").text)
    wait.until(lambda d: len(cards("recommendations")) >= 5)

    users.select_by_index(0)                      # back to the first user, for the screenshot
    users.select_by_value(user)
    wait.until(lambda d: "champion v" in d.find_element(By.ID, "recs-note").text)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('img')].every(i => i.complete)"))
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "gallery.png"
    assert browser.save_screenshot(str(shot))
    from PIL import Image
    with Image.open(shot) as picture:
        assert picture.size[0] >= 1000 and picture.size[1] >= 800
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200          # thumbnails rendered, not a blank page
    keep = Path(__import__("os").environ.get("VISREC_SCREENSHOT_DIR", tmp_path))
    if keep != tmp_path:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / "gallery.png")
