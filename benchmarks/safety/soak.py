"""Benchmark: the service over time, and a kill -9 while it writes its prediction log.

    .venv/bin/python benchmarks/safety/soak.py [--minutes 10] [--clients 8] [--bad 0.1] \\
        [--log LOG] [--images DIR] [--kill-after 30] [--json out.json]
    .venv/bin/python benchmarks/safety/soak.py --minutes 0.5 --kill-after 5   # a quick look

1. Soak: `pneumonia serve` (the shipped model, its own process) on 127.0.0.1; `--clients`
   threads post one image per request for `--minutes`: real X-rays (JPEGs from `--images`,
   default the shared training split; synthetic PNGs where it is absent) and, in a share
   `--bad` of requests, a bad file (text named .jpeg, a truncated JPEG, an empty .png, a
   random-bytes .png). Every 10 s the service's resident memory is read from /proc. Per
   minute: good requests/s, p95 latency, bad files answered 4xx, anything else. At the end the
   service is stopped (SIGINT) and its log must hold exactly one row per good answer.
2. Fault: the service again, on a fresh log, under the same load; /health is polled for the
   rows it has committed; after `--kill-after` s it gets SIGKILL. Then the log must open
   (SQLite: `PRAGMA integrity_check` is ok), hold every row /health acknowledged, and take
   new rows after a restart. Answers sent after the last commit may lack a row: the writer
   commits every 0.2 s after answering (docs/deployment.md); their number is printed.

`--log` takes what `serve --log` takes: a SQLite path (default: a temporary file per phase) or
a postgresql:// URL (rows are counted from each phase's start time, so a database in use
does not confuse the counts). Prints a JSON summary (and writes it with `--json`).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from pneumonia.data.synthetic import synthetic_xray
from pneumonia.monitoring.log_target import log_url
from pneumonia.monitoring.predlog import now, read_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, memory_mb, start_service

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chest_xray" / "train"
BAD = [
    ("notes.jpeg", b"this is a text file, not an X-ray\n" * 20, "image/jpeg"),
    ("empty.png", b"", "image/png"),
    ("noise.png", bytes(random.Random(0).randbytes(5000)), "image/png"),
]


def images(folder: Path, count: int = 64) -> list[tuple[str, bytes, str]]:
    """Up to `count` JPEGs from both classes of `folder`, else synthetic PNG X-rays."""
    files = sorted(folder.glob("*/*.jpeg"))
    if files:
        chosen = random.Random(0).sample(files, min(count, len(files)))
        return [(p.name, p.read_bytes(), "image/jpeg") for p in chosen]
    out = []
    for k in range(8):
        gray = synthetic_xray(
            "PNEUMONIA" if k % 2 else "NORMAL", 900, 1100, np.random.default_rng(k)
        )
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, "PNG")
        out.append((f"synthetic{k}.png", buffer.getvalue(), "image/png"))
    return out


def start(log: str) -> tuple[subprocess.Popen[bytes], str]:
    """`pneumonia serve` on a free port with `log`; returns once /health answers."""
    process, url = start_service(["--log", log])
    return process, url


class Load:
    """`clients` threads posting good and bad files to /predict until stopped."""

    def __init__(self, url: str, good: list[Any], bad_share: float, clients: int) -> None:
        self.url, self.good, self.bad_share = url, good, bad_share
        self.events: list[tuple[float, bool, int, float]] = []  # time, bad, status, seconds
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self, k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                bad = rng.random() < self.bad_share
                upload = rng.choice(BAD if bad else self.good)
                began = time.perf_counter()
                try:
                    status = http.post(f"{self.url}/predict", files={"files": upload}).status_code
                except httpx.TransportError:
                    status = 0  # the service is gone (the fault phase)
                with self._lock:
                    self.events.append((time.monotonic(), bad, status, time.perf_counter() - began))

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def soak(log: str, good: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    process, url = start(log)
    since = now()
    memory: list[tuple[float, float]] = []
    began = time.monotonic()
    load = Load(url, good, args.bad, args.clients)
    while time.monotonic() - began < args.minutes * 60:
        memory.append((round(time.monotonic() - began, 1), round(memory_mb(process.pid), 1)))
        time.sleep(min(10.0, max(0.0, args.minutes * 60 - (time.monotonic() - began))))
    memory.append((round(time.monotonic() - began, 1), round(memory_mb(process.pid), 1)))
    load.join()
    process.send_signal(signal.SIGINT)  # a clean stop: the log writes what is queued
    process.wait(timeout=60)
    minutes = []
    for m in range(max(1, int(np.ceil(args.minutes)))):
        window = [e for e in load.events if m * 60 <= e[0] - began < (m + 1) * 60]
        good_ok = [e[3] for e in window if not e[1] and e[2] == 200]
        span = min(60.0, args.minutes * 60 - m * 60)
        minutes.append({
            "minute": m + 1,
            "good_per_s": round(len(good_ok) / span, 1),
            "p95_ms": round(float(np.percentile(good_ok, 95)) * 1000, 1) if good_ok else None,
            "bad_4xx": sum(1 for e in window if e[1] and 400 <= e[2] < 500),
            "other": sum(1 for e in window if (e[1] and not 400 <= e[2] < 500)
                         or (not e[1] and e[2] != 200)),
        })  # fmt: skip
    answered = sum(1 for e in load.events if not e[1] and e[2] == 200)
    rows = len(read_log(log, since=since))
    warm = [mb for t, mb in memory if t >= 60] or [mb for _, mb in memory]
    return {
        "minutes": minutes,
        "rss_mb": memory,
        "rss_growth_after_first_minute_mb": round(warm[-1] - warm[0], 1),
        "good_answered": answered,
        "log_rows": rows,
        "rows_missing": answered - rows,
    }


def fault(log: str, good: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    process, url = start(log)
    since = now()
    load = Load(url, good, args.bad, args.clients)
    acknowledged, began = 0, time.monotonic()
    with httpx.Client(timeout=5) as http:
        while time.monotonic() - began < args.kill_after:
            acknowledged = http.get(f"{url}/health").json()["prediction_log"]["written"]
            time.sleep(0.05)
    process.kill()  # SIGKILL while clients post and the writer commits
    process.wait()
    load.join()
    answered = sum(1 for e in load.events if not e[1] and e[2] == 200)
    result: dict[str, Any] = {"acknowledged_rows": acknowledged, "good_answered": answered}
    if log_url(log).get_backend_name() == "sqlite":
        db = sqlite3.connect(log)
        result["integrity_check"] = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
    rows = len(read_log(log, since=since))
    result.update(rows_after_kill=rows, answered_without_row=answered - rows)
    process, url = start(log)  # the restart opens the same log and appends to it
    with httpx.Client(timeout=60) as http:
        for upload in good[:5]:
            http.post(f"{url}/predict", files={"files": upload}).raise_for_status()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    result["rows_after_restart_and_5_more"] = len(read_log(log, since=since))
    result["ok"] = rows >= acknowledged and result["rows_after_restart_and_5_more"] == rows + 5
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bad", type=float, default=0.1, help="share of requests with a bad file")
    parser.add_argument("--log", help="SQLite path or postgresql:// URL (default: temporary)")
    parser.add_argument("--images", type=Path, default=SHARED)
    parser.add_argument("--kill-after", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pneumonia-soak-"))
    good = images(args.images)
    summary: dict[str, Any] = {
        "machine": machine(),
        "clients": args.clients,
        "bad_share": args.bad,
        "images": f"{len(good)} files from {args.images}"
        if good[0][2] == "image/jpeg"
        else "synthetic",
        "soak": soak(args.log or str(folder / "soak.sqlite"), good, args),
        "fault": fault(args.log or str(folder / "fault.sqlite"), good, args),
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
