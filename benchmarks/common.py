"""What the benchmark scripts share: the machine line beside every time, and the shared data.

A script adds this folder to its path (`sys.path.insert(0, str(Path(__file__).parents[1]))`)
and imports from `common`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

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
