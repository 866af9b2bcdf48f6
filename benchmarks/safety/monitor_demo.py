"""Demo: a prediction log with a drift made on purpose, and `monitor`'s report on it.

The shipped model is served in-process (FastAPI's TestClient, the real `/predict` route and
prediction log). Days 1-3 it receives validation X-rays as they are; days 4-6 a "new site"
sends the other validation X-rays at their originals' aspect ratio (1.33 wider), brighter
(gamma 0.6), with one upload in five that is no chest X-ray at all (documents, photos-like
textures, cartoons). `monitor` then reports each half; the second report's page is the
screenshot in docs/monitoring.md.

    python benchmarks/safety/monitor_demo.py --manifest work/manifest.csv \\
        --out reports/monitor-demo \\
        --screenshot docs/figures/monitor-report.png
"""

from __future__ import annotations

import argparse
import io
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from pneumonia.data.image_io import read_image
from pneumonia.data.ood_corpus import MAKERS
from pneumonia.data.shifts import apply_shift
from pneumonia.data.split import read_manifest
from pneumonia.inference.loading import load_bundle
from pneumonia.monitoring.monitor import monitor
from pneumonia.serving import serve as serve_module
from pneumonia.serving.serve import create_app

START = datetime(2026, 11, 2, tzinfo=UTC)


def png(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def uploads(paths: list[str], drifted: bool, seed: int) -> list[bytes]:
    """The images one half of the demo sends, as PNG bytes."""
    rng = np.random.default_rng(seed)
    out = []
    for path in paths:
        gray = read_image(path)[1].pixels
        if drifted:
            if rng.random() < 0.2:
                kind = str(rng.choice(["document", "texture", "cartoon"]))
                gray = MAKERS[kind](rng, *gray.shape)
            else:
                gray = apply_shift("gamma_0.6", apply_shift("wide_1.33", gray), 0)
        out.append(png(gray))
    return out


def send(client: TestClient, images: list[bytes], first_day: int) -> None:
    """Post each image at its own time, spread over three days from `first_day`."""
    step = timedelta(days=3) / max(len(images), 1)
    for i, data in enumerate(images):
        when = START + timedelta(days=first_day) + i * step
        stamp = when.isoformat(timespec="milliseconds")
        with mock.patch.object(serve_module, "now", lambda stamp=stamp: stamp):
            response = client.post("/predict", files={"files": (f"{i}.png", data, "image/png")})
        response.raise_for_status()


def main(argv: list[str] | None = None) -> dict[str, dict]:  # type: ignore[type-arg]
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=Path("work/manifest.csv"))
    parser.add_argument("--bundle", default=None, help="default: the shipped model")
    parser.add_argument("--out", type=Path, default=Path("reports/monitor-demo"))
    parser.add_argument("--per-half", type=int, default=260)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    paths = [r.path for r in read_manifest(args.manifest) if r.split == "val"]
    rng = np.random.default_rng(0)
    rng.shuffle(paths)
    bundle = load_bundle(args.bundle, "auto")
    log = args.out / "predictions.sqlite"
    with TestClient(create_app(bundle, log_path=log)) as client:
        send(client, uploads(paths[: args.per_half], False, 1), 0)
        send(client, uploads(paths[args.per_half : 2 * args.per_half], True, 2), 3)
    results = {}
    for name, since, until in (("before", 0, 3), ("after", 3, 6)):
        window = [(START + timedelta(days=d)).date().isoformat() for d in (since, until)]
        result = monitor(log, args.bundle, args.out / name, *window)
        results[name] = result
        tripped = ", ".join(a["rule"] for a in result["alerts"]) or "none"
        print(
            f"days {since + 1}-{until}: {result['volume']['predictions']} predictions; "
            f"alerts: {tripped}"
        )
        for r in result["rules"]:
            value = "-" if r["value"] is None else f"{r['value']:.4g}"
            print(
                f"  | {r['rule']} | {value} | {r['limit']} | {'ALERT' if r['tripped'] else 'ok'} |"
            )
    if args.screenshot:
        screenshot(args.out / "after" / "monitor.html", args.screenshot)
    return results


def screenshot(page: Path, target: Path) -> None:
    """A full-page PNG of a report, taken with the project's headless Chromium."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        tab = browser.new_page(viewport={"width": 1100, "height": 900})
        tab.goto(page.resolve().as_uri())
        target.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(target), full_page=True)
        browser.close()
    print(f"screenshot: {target}")


if __name__ == "__main__":
    main()
