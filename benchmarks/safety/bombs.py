"""Benchmark (issue 36): the served model against small files that decode to gigabytes.

    .venv/bin/python benchmarks/safety/bombs.py [--bundle BUNDLE]

Starts `pneumonia serve` (the shipped model unless --bundle, a token, no log) on loopback and
sends, four at once: a deflated DICOM whose pixels inflate to 1 GiB, a 7000x7000 16-bit
DICOM, a 7070x7070 RGBA PNG header and a deflated 7000x7000 16-bit DICOM. Then an EPS file,
and a request declaring a 1 GiB body. Reports each answer, the server's peak resident memory
(VmHWM) against its resident memory before the bombs, and how long the 1 GiB body took to be
refused; the machine line beside the times.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, memory_mb, start_service

from pneumonia.data.synthetic import deflated_dicom, oversized_png

TOKEN = "bomb-benchmark-token-0123456789"


def dicom_header(side: int) -> bytes:
    """A 16-bit DICOM whose header claims side x side pixels (a few hundred bytes sent)."""
    import io

    import numpy as np
    from pydicom import dcmread

    from pneumonia.data.renderings import dicom_bytes

    ds = dcmread(io.BytesIO(dicom_bytes(np.zeros((4, 4), np.uint16), "MONOCHROME2", 16)))
    ds.Rows = ds.Columns = side
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def declared_body(url: str, size: int) -> tuple[bytes, float]:
    """Send headers declaring `size` bytes and a few of them; (status line, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(head + b"--b\r\n" + b"x" * 65536)
        conn.settimeout(30)
        reply = conn.recv(4096)
    return reply.split(b"\r\n", 1)[0], time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None)
    args = parser.parse_args(argv)
    bombs = {
        "deflated DICOM, 1 GiB inflated": deflated_dicom(23170),
        "DICOM 7000x7000 16-bit": dicom_header(7000),
        "PNG 7070x7070 RGBA": oversized_png(7070, color_type=6),
        "deflated DICOM 7000x7000 16-bit": deflated_dicom(7000),
    }
    serve = [args.bundle] if args.bundle else []
    process, url = start_service([*serve, "--no-log"], {"PNEUMONIA_API_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    results: dict[str, Any] = {"machine": machine()}
    try:
        with httpx.Client(timeout=120, headers=auth) as http:
            png = oversized_png(64)  # warm-up: an ordinary refusal
            http.post(f"{url}/predict", files={"files": ("w.png", png)})
            before = memory_mb(process.pid)
            answers: dict[str, tuple[int, str]] = {}

            def send(name: str, data: bytes) -> None:
                response = http.post(f"{url}/predict", files={"files": (name, data)})
                answers[name] = (response.status_code, response.json()["error"][:110])

            threads = [threading.Thread(target=send, args=item) for item in bombs.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak = memory_mb(process.pid, "VmHWM")
            eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
            refused = http.post(f"{url}/predict", files={"files": ("a.eps", eps)})
        status, seconds = declared_body(url, 1 << 30)
        results.update(
            answers=answers,
            rss_before_mb=round(before, 1),
            peak_mb=round(peak, 1),
            growth_mb=round(peak - before, 1),
            eps=(refused.status_code, refused.json()["error"]),
            declared_1gib=(status.decode(), round(seconds, 3)),
        )
    finally:
        process.terminate()
        process.wait(30)
    memory = f"{results['peak_mb']} MB (+{results['growth_mb']} MB)"
    print(f"{results['machine']}; server RSS {results['rss_before_mb']} MB before, peak {memory}")
    print("| upload | status | answer |\n|---|---|---|")
    for name, (code, text) in results["answers"].items():
        print(f"| {name} ({len(bombs[name]):,} bytes) | {code} | {text} |")
    print(f"| EPS | {results['eps'][0]} | {results['eps'][1]} |")
    line, seconds = results["declared_1gib"]
    print(f"| body declaring 1 GiB | {line} | refused in {seconds} s |")
    return results


if __name__ == "__main__":
    main()
