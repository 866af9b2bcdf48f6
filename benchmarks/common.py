"""What the benchmark scripts share: the machine line beside every time, and the shared data.

A script adds this folder to its path (`sys.path.insert(0, str(Path(__file__).parents[1]))`)
and imports from `common`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMONIA_SHARED", REPO.parent / "shared")) / "data"
ORIGINALS = SHARED / "originals"
COPIES = SHARED / "chest_xray" / "train"


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (the platform's word elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """`<CPU>, <n> cores`: the line every reported time carries."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def print_table(columns: list[str], rows: list[list[object]]) -> None:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def free_port() -> int:
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(args: list[str], env: dict[str, str] | None = None) -> tuple[Any, str]:
    """`pneumonia serve ARGS` on a free loopback port; (process, base URL) once /health
    answers (two minutes at most)."""
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    command = [sys.executable, "-m", "pneumonia", "serve", *args, "--port", str(port)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the service did not answer /health in 2 minutes")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")
