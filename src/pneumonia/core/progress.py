"""Run a function over many items on all cores, with a rich progress bar."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


def default_workers() -> int:
    """Worker processes to use: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def progress_bar(transient: bool = False, disable: bool = False) -> Progress:
    """The package's progress bar style (description, bar, count, elapsed, remaining);
    `disable` draws nothing."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
        disable=disable,
    )


def track(items: Iterable[T], total: int, description: str, show: bool = True) -> Iterator[T]:
    """Yield `items` while advancing a progress bar (nothing drawn when `show` is False)."""
    if not show:
        yield from items
        return
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    description: str,
    workers: int | None = None,
    show: bool = True,
) -> list[R]:
    """`[fn(x) for x in items]` over `workers` processes, order kept. `fn` must not raise."""
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) < 64:
        return list(track(map(fn, items), len(items), description, show))
    chunk = max(1, min(64, len(items) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fn, items, chunksize=chunk)
        return list(track(results, len(items), description, show))
