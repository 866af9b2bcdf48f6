"""The web page end to end in headless Chromium: upload a synthetic X-ray, see the result and
the Grad-CAM overlay. Skips when no Chromium is installed (`.ci/run` installs Debian's)."""

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image

from conftest import TinyRun, band
from pneumonia.data.ood_corpus import MAKERS
from pneumonia.data.synthetic import save_image, synthetic_xray
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.serving.security import Door, Tokens
from pneumonia.serving.serve import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# quiet on a machine without internet: no background connections to Google's services
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
# PNEUMONIA_SCREENSHOTS=docs/figures pytest tests/serving/test_web_page.py
# refreshes the docs' pictures
SHOTS = os.environ.get("PNEUMONIA_SCREENSHOTS")
DOCS = Path(__file__).parents[2] / "docs"


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page PNG in `tmp_path` (checked), copied to $PNEUMONIA_SCREENSHOTS when set."""
    target = tmp_path / name
    page.screenshot(path=str(target), full_page=True)
    assert Image.open(target).size[0] >= 800
    if SHOTS:
        shutil.copy(target, Path(SHOTS) / name)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tiny_run: TinyRun) -> Iterator[str]:
    yield from running(load_bundle(tiny_run.bundle))


@pytest.fixture(scope="module")
def shipped_service() -> Iterator[str]:
    yield from running(load_bundle(None, "onnx"))


def running(bundle: Bundle, door: Door | None = None) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(bundle, door=door), port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_shows_probability_label_and_overlay(
    service: str, tiny_run: TinyRun, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    xray = save_image(
        synthetic_xray("PNEUMONIA", 90, 120, np.random.default_rng(3)), tmp_path / "x.png"
    )
    bad = tmp_path / "bad.jpeg"
    bad.write_text("not an image")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(service)
        expect(page.locator("#model")).to_contain_text("cnn_small@")

        page.set_input_files("#file", str(xray))
        expect(page.locator("#result")).to_be_visible(timeout=30_000)
        probability = float(page.locator("#probability").inner_text())
        assert 0 <= probability <= 1
        threshold = load_bundle(tiny_run.bundle).threshold
        # the page shows 3 decimals; the label comes from the exact probability
        if abs(probability - threshold) > 1e-3:
            expected = "PNEUMONIA" if probability >= threshold else "NORMAL"
            expect(page.locator("#label")).to_have_text(expected)
        overlay = page.locator("#overlay")
        expect(overlay).to_be_visible(timeout=30_000)
        assert overlay.evaluate("img => img.naturalWidth") == 240  # original beside its CAM

        page.set_input_files("#file", str(bad))
        expect(page.locator("#error")).to_contain_text("not an image", timeout=30_000)
        browser.close()
    assert all(url.startswith(service) or url.startswith("blob:") for url in requests)


def test_the_page_says_when_an_answer_is_borderline(tiny_run: TinyRun, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    wide = band(Path(shutil.copytree(tiny_run.bundle, tmp_path / "b")), 30.0)  # every answer
    xray = save_image(
        synthetic_xray("NORMAL", 90, 120, np.random.default_rng(4)), tmp_path / "x.png"
    )
    for url in running(load_bundle(wide)):
        with sync_playwright() as p:
            browser, page = upload(p, url, xray)
            expect(page.locator("#threshold")).to_contain_text(
                "borderline: P within [", timeout=30_000
            )
            expect(page.locator("#threshold")).to_contain_text("could change the label")
            browser.close()


def upload(playwright: Any, url: str, image: Path) -> tuple[Any, Any]:
    """(browser, page): Chromium at the service's page, `image` chosen in its file input."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.goto(url)
    page.set_input_files("#file", str(image))
    return browser, page


def test_the_page_warns_when_the_image_is_no_chest_xray(
    shipped_service: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    blank = save_image(MAKERS["cartoon"](np.random.default_rng(1), 300, 260), tmp_path / "c.png")
    with sync_playwright() as p:
        browser, page = upload(p, shipped_service, blank)
        expect(page.locator("#ood")).to_be_visible(timeout=30_000)
        expect(page.locator("#ood")).to_contain_text(
            "does not look like a pediatric frontal chest X-ray"
        )
        assert "untrusted" in (page.locator("#result").get_attribute("class") or "")
        expect(page.locator("#guard")).to_contain_text("out-of-distribution score")
        float(page.locator("#probability").inner_text())  # still shown, struck through
        expect(page.locator("#overlay")).to_be_visible(timeout=60_000)
        screenshot(page, tmp_path, "web-page-ood.png")
        browser.close()


def test_the_page_on_an_xray_and_the_shipped_report(shipped_service: str, tmp_path: Path) -> None:
    """The pictures of the docs: the page answering on an X-ray-like image with its
    Grad-CAM, and the shipped model's report (docs/report-shipped-val.html) as a browser
    shows it, with no request leaving the page."""
    from playwright.sync_api import expect, sync_playwright

    gray = synthetic_xray("PNEUMONIA", 420, 500, np.random.default_rng(5))
    xray = save_image(gray, tmp_path / "x.png")
    with sync_playwright() as p:
        browser, page = upload(p, shipped_service, xray)
        expect(page.locator("#overlay")).to_be_visible(timeout=60_000)
        expect(page.locator("#guard")).to_contain_text("out-of-distribution score")
        screenshot(page, tmp_path, "web-page.png")
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto((DOCS / "report-shipped-val.html").as_uri())
        expect(page.locator("h1").first).to_contain_text("evaluation report")
        expect(page.locator("body")).to_contain_text("out-of-distribution guard flagged")
        screenshot(page, tmp_path, "report.png")
        browser.close()
    assert all(url.startswith("file:") or url.startswith("data:") for url in requests)


TOKEN = "page-token-0123456789abcdef"


@pytest.fixture(scope="module")
def locked_service(tiny_run: TinyRun) -> Iterator[str]:
    door = Door(tokens=Tokens((TOKEN,)), allowed_hosts=("127.0.0.1",))
    yield from running(load_bundle(tiny_run.bundle), door)


def test_the_page_asks_for_the_token_and_keeps_it_in_the_tab(
    locked_service: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    xray = save_image(
        synthetic_xray("PNEUMONIA", 90, 120, np.random.default_rng(3)), tmp_path / "x.png"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems: list[str] = []  # a CSP violation is a console error
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(locked_service)
        expect(page.locator("#model")).to_contain_text("enter the access token")
        page.set_input_files("#file", str(xray))
        expect(page.locator("#error")).to_contain_text("needs its access token", timeout=30_000)
        page.fill("#token", TOKEN)
        page.click("#tokenbox button")
        expect(page.locator("#model")).to_contain_text("cnn_small@", timeout=30_000)
        assert page.locator("#token").input_value() == ""  # not left in the field
        assert page.evaluate("sessionStorage.getItem('pneumonia-token')") == TOKEN
        assert page.evaluate("localStorage.length") == 0  # the tab only
        again = tmp_path / "again.png"  # another file: choosing the same one fires no change
        again.write_bytes(xray.read_bytes())
        page.set_input_files("#file", str(again))
        expect(page.locator("#result")).to_be_visible(timeout=30_000)
        expect(page.locator("#overlay")).to_be_visible(timeout=30_000)
        browser.close()
    assert not [m for m in problems if "Content Security Policy" in m], problems
