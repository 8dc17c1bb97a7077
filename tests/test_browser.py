"""The web page of ``bgcut serve`` in a real browser: headless Chromium (Debian's package) via Selenium.

Skipped on a developer machine without Chromium; under CI (``CI`` set, as ``.ci/run`` does, which
also installs the browser) a browser that cannot start is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from bgcut.config import RunOptions
from bgcut.pipeline.infer import Predictor
from bgcut.serve.options import ServeOptions

from .conftest import square_image
from .test_serve import running

SCREENSHOT = os.environ.get("BGCUT_SCREENSHOT")  # where to keep a screenshot of the page, to look at


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "headless Chromium and chromedriver are needed: apt-get install chromium chromium-driver"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[object]:
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_a_photo_and_see_the_cutout(browser: object, tmp_path: Path, luma_weights: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "photo.png"
    Image.fromarray(square_image((80, 60), (20, 15, 60, 45))).save(photo)
    predictor = Predictor.from_options(RunOptions(weights=str(luma_weights), device="cpu"), pad=False)
    with running(ServeOptions(), predictor) as client:
        driver = browser
        driver.get(str(client.base_url) + "/")  # type: ignore[attr-defined]
        driver.find_element(By.ID, "files").send_keys(str(photo))  # type: ignore[attr-defined]
        cut = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "img.cutout")))
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].naturalWidth", cut) > 0)
        # The page shows what the server cut: read the shown image's pixels back through a canvas.
        pixels = driver.execute_script(  # type: ignore[attr-defined]
            """
            const img = arguments[0], c = document.createElement("canvas");
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext("2d"); g.drawImage(img, 0, 0);
            return [c.width, c.height, Array.from(g.getImageData(40, 30, 1, 1).data),
                    Array.from(g.getImageData(2, 2, 1, 1).data)];
            """,
            cut,
        )
        assert pixels[:2] == [80, 60]
        assert pixels[2][3] == 255 and pixels[3][3] == 0  # the square opaque, the corner transparent
        link = driver.find_element(By.LINK_TEXT, "Download")  # type: ignore[attr-defined]
        assert link.get_attribute("download") == "photo.png"
        assert driver.find_element(By.ID, "all").is_enabled()  # type: ignore[attr-defined]
        # A rejected upload: its one-line error, and no broken-image icon for the preview.
        junk = tmp_path / "notes.png"
        junk.write_bytes(b"not a picture")
        driver.find_element(By.ID, "files").send_keys(str(junk))  # type: ignore[attr-defined]
        error = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".error")))
        assert error.text.startswith("notes.png: ")
        broken = driver.execute_script(  # type: ignore[attr-defined]
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0).length"
        )
        assert broken == 0
        if SCREENSHOT:
            driver.save_screenshot(SCREENSHOT)  # type: ignore[attr-defined]


def test_review_page_sorts_filters_marks_and_exports(browser: object, tmp_path: Path) -> None:
    """bgcut review on 2,000 entries: worst first, a page at a time, filtered by doubt and by
    folder; two marked with the keyboard and exported as a list bgcut reads back."""
    import json

    import numpy as np
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from bgcut.review import make_review

    out, src = tmp_path / "out", tmp_path / "in"
    rng = np.random.default_rng(0)
    doubts = rng.permutation(2000) / 2000
    lines = []
    for i, d in enumerate(doubts):
        folder = "a" if i % 3 else "b"
        (out / folder).mkdir(parents=True, exist_ok=True)
        (src / folder).mkdir(parents=True, exist_ok=True)
        rgba = np.zeros((12, 16, 4), np.uint8)
        rgba[2:10, 3:13] = (200, 40, 40, 255)
        Image.fromarray(rgba).save(out / folder / f"p{i:04d}.png")
        Image.fromarray(rgba[:, :, :3]).save(src / folder / f"p{i:04d}.png")
        row = {"input": str(src / folder / f"p{i:04d}.png"), "outputs": [str(out / folder / f"p{i:04d}.png")],
               "status": "done", "doubt": float(d), "doubt_parts": {"unsure": float(d), "frame": 0.0}}  # fmt: skip
        lines.append(json.dumps(row))
    manifest = tmp_path / "run.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    summary = make_review(out, manifest)
    assert summary.entries == 2000 and summary.thumbnails_made == 4000 and summary.unreadable == 0
    assert make_review(out, manifest).thumbnails_kept == 4000  # made once, kept beside the page

    driver = browser
    driver.get((out / "review.html").as_uri())  # type: ignore[attr-defined]
    count = driver.find_element(By.ID, "count")  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(lambda d: count.text == "2000 of 2000 cut-outs")
    entries = driver.find_elements(By.CSS_SELECTOR, ".entry")  # type: ignore[attr-defined]
    assert len(entries) == 200  # a page at a time
    worst = max(range(2000), key=lambda i: doubts[i])
    assert entries[0].find_element(By.CSS_SELECTOR, ".name").text.endswith(f"p{worst:04d}.png")
    shown = [float(e.text.split()[1]) for e in driver.find_elements(By.CSS_SELECTOR, ".doubt")]  # type: ignore[attr-defined]
    assert shown == sorted(shown, reverse=True)

    driver.execute_script(  # type: ignore[attr-defined]
        "const s = document.getElementById('min'); s.value = '0.9'; s.dispatchEvent(new Event('input'));"
    )
    high = sum(d >= 0.9 for d in doubts)
    WebDriverWait(driver, 10).until(lambda d: count.text == f"{high} of 2000 cut-outs")
    driver.execute_script(  # type: ignore[attr-defined]
        "const s = document.getElementById('folder'); s.value = 'b'; s.dispatchEvent(new Event('input'));"
    )
    both = sum(d >= 0.9 and i % 3 == 0 for i, d in enumerate(doubts))
    WebDriverWait(driver, 10).until(lambda d: count.text == f"{both} of 2000 cut-outs")
    names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".name")]  # type: ignore[attr-defined]
    assert len(names) == both and all("/in/b/" in n for n in names)

    first = driver.find_element(By.CSS_SELECTOR, ".entry")  # type: ignore[attr-defined]
    first.click()
    keys = ActionChains(driver)  # to whatever has the focus, as a user's keyboard does
    keys.send_keys("x").send_keys(Keys.ARROW_RIGHT).send_keys("x").perform()
    assert driver.find_element(By.ID, "rejected-count").text == "2 rejected"  # type: ignore[attr-defined]
    ActionChains(driver).send_keys("e").perform()
    exported = driver.find_element(By.ID, "rejects").text.splitlines()  # type: ignore[attr-defined]
    assert exported == sorted(names[:2])
    if SCREENSHOT:
        driver.save_screenshot(SCREENSHOT)  # type: ignore[attr-defined]
