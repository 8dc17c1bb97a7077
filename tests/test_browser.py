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
