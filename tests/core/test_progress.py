"""Progress and worker processes: order kept, quiet when asked."""

import os

import pytest

from pneumonia.core.progress import default_workers, parallel_map, track


def square(x: int) -> int:
    return x * x


def test_parallel_map_keeps_the_order_in_processes_and_inline() -> None:
    items = list(range(200))
    assert parallel_map(square, items, "squaring", workers=2, show=False) == [x * x for x in items]
    assert parallel_map(square, items[:5], "few", workers=2, show=False) == [0, 1, 4, 9, 16]
    assert parallel_map(square, items, "inline", workers=1, show=False)[-1] == 199 * 199


def test_track_yields_everything_and_the_default_workers_fit_the_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert list(track(iter([3, 1, 2]), 3, "counting", show=False)) == [3, 1, 2]
    assert capsys.readouterr().out == ""  # quiet when not shown
    assert 1 <= default_workers() <= (os.cpu_count() or 1)
