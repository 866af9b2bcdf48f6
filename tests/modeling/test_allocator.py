"""`keep_freed_memory`: large blocks freed by one step are reused by the next without faults."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import numpy as np
from pneumonia.modeling.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
np.ones(16_000_000, dtype=np.float32)  # 64 MB, above glibc's largest mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(16_000_000, dtype=np.float32)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    _, default = page_faults("default")
    kept, after = page_faults("keep")
    assert default >= 10 * 100  # glibc as it comes maps each array anew and faults it in
    assert kept == "True" and after * 20 < default
