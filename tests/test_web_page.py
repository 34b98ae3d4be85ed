"""The web page in a real browser: Debian's Chromium, headless, driven by Selenium.

A person's path through the page: enroll a photo, identify another photo of that person and
read the name from the page, see a stranger come back unknown, list, rename and remove people,
enroll from a (fake) webcam. A screenshot of the result is kept as a test artefact
(test-artefacts/web_page.png, or $FACEID_TEST_ARTEFACTS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serving import PROBES, ROOT, Server, photo

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _y4m(photo_path: Path, out: Path, frames: int = 30) -> Path:
    """A Y4M video of one photo: Chromium's fake webcam plays it (4:2:0, even sides)."""
    import numpy as np
    from PIL import Image

    im = Image.open(photo_path).convert("RGB")
    im = im.resize((im.width // 2 * 2, im.height // 2 * 2))
    y, cb, cr = (np.asarray(c) for c in im.convert("YCbCr").split())
    half = (im.width // 2, im.height // 2)
    planes = [y] + [np.asarray(Image.fromarray(c).resize(half, Image.BILINEAR)) for c in (cb, cr)]
    frame = b"FRAME\n" + b"".join(p.astype(np.uint8).tobytes() for p in planes)
    header = f"YUV4MPEG2 W{im.width} H{im.height} F30:1 Ip A1:1 C420jpeg\n".encode()
    out.write_bytes(header + frame * frames)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        # A webcam that shows a face: a fake capture device playing a photo, permission given.
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--use-file-for-fake-video-capture="
        + str(_y4m(photo("Carlos_Moya", 1), tmp_path_factory.mktemp("webcam") / "cam.y4m")),
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    with Server(tmp_path_factory.mktemp("web")) as server:
        browser.get(server.url + "/")
        yield browser


def _wait_for_text(driver, css: str, timeout: float = 120) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def text(d):
        found = [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, css)]
        return found[0] if found and found[0] else False

    return WebDriverWait(driver, timeout).until(text)


def _identify(driver, path: Path) -> str:
    from selenium.webdriver.common.by import By

    driver.execute_script("document.getElementById('identify-result').replaceChildren()")
    driver.find_element(By.ID, "identify-file").send_keys(str(path))
    driver.find_element(By.ID, "identify-btn").click()
    return _wait_for_text(driver, "#identify-result .face-name")


def test_a_person_enrolled_in_the_page_is_named_and_a_stranger_is_unknown(page):
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "enroll-name").send_keys("Carlos Moya")
    files = "\n".join(str(photo("Carlos_Moya", n)) for n in (1, 2))
    page.find_element(By.ID, "enroll-files").send_keys(files)
    page.find_element(By.ID, "enroll-btn").click()
    status = _wait_for_text(page, "#enroll-status.ok, #enroll-status.error")
    assert status == "enrolled 2 photo(s) of Carlos Moya", status
    assert _wait_for_text(page, "#people-table tbody tr td") == "Carlos Moya"

    assert _identify(page, PROBES / "Adrien_Brody_0001.jpg") == "unknown"
    assert _identify(page, PROBES / "Carlos_Moya_0002.jpg") == "Carlos Moya"
    canvas = page.find_element(By.ID, "identify-canvas")
    assert canvas.size["width"] > 100  # the photo, with its box and name drawn on it

    artefacts = Path(os.environ.get("FACEID_TEST_ARTEFACTS") or ROOT / "test-artefacts")
    artefacts.mkdir(parents=True, exist_ok=True)
    shot = artefacts / "web_page.png"
    assert page.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_verify_shows_distance_and_threshold_side_by_side(page):
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "verify-a").send_keys(str(PROBES / "Alvaro_Uribe_0002.jpg"))
    page.find_element(By.ID, "verify-b").send_keys(str(photo("Alvaro_Uribe", 1)))
    page.find_element(By.ID, "verify-btn").click()
    text = _wait_for_text(page, "#verify-result.ok, #verify-result.error")
    assert text.startswith("same person: distance ") and "(threshold " in text


def test_people_can_be_renamed_and_removed_from_the_page(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    row = page.find_element(By.CSS_SELECTOR, "#people-table tbody tr")
    box = row.find_element(By.CLASS_NAME, "rename-input")
    box.clear()
    box.send_keys("Carlos Moya Llorens")
    row.find_element(By.CLASS_NAME, "rename-btn").click()
    status = _wait_for_text(page, "#people-status.ok")
    assert status == "renamed Carlos Moya to Carlos Moya Llorens"
    row = page.find_element(By.CSS_SELECTOR, "#people-table tbody tr")
    row.find_element(By.CLASS_NAME, "remove-btn").click()
    WebDriverWait(page, 10).until(lambda d: d.switch_to.alert).accept()
    WebDriverWait(page, 30).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, "#people-table tbody tr")
    )


def test_a_person_can_be_enrolled_from_the_webcam(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    name = page.find_element(By.ID, "enroll-name")
    name.clear()
    name.send_keys("Carlos Moya")
    page.find_element(By.ID, "webcam-btn").click()
    # Playing, with frames drawn (the first frames of a starting camera may be blank).
    WebDriverWait(page, 30).until(
        lambda d: d.execute_script(
            "const v = document.getElementById('webcam-video');"
            "return v.videoWidth > 0 && v.readyState >= 2 && v.currentTime > 0.5"
        )
    )
    # Clear the last enrollment's outcome, its class too: a stale "ok" would match the wait
    # below while the page is still at "enrolling…".
    page.execute_script(
        "const s = document.getElementById('enroll-status');"
        "s.textContent = ''; s.className = 'status';"
    )
    page.find_element(By.ID, "webcam-capture").click()
    status = _wait_for_text(page, "#enroll-status.ok, #enroll-status.error")
    assert status == "enrolled 1 photo(s) of Carlos Moya", status
    assert _identify(page, PROBES / "Carlos_Moya_0002.jpg") == "Carlos Moya"


def test_no_request_leaves_the_machine(page):
    """Everything the page loaded came from the service itself."""
    entries = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    origin = page.execute_script("return location.origin")
    assert entries and all(e.startswith(origin) for e in entries), entries
