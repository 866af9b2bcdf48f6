"""The prediction log: one SQLite row per prediction the service makes, for `monitor`.

A row holds when, what (the upload's sha256, its decoded size and two input statistics of
the model's square: mean and standard deviation in [0, 1]), which model and backend, the
answer (probability, label, the guard's score and verdict) and how long it took. Never
pixels, never a file name, never a DICOM header field. Writes are serialised by a lock (the
service answers requests on several threads) and the database runs in WAL mode so `monitor`
can read while the service writes. A failed write (a full disk, a locked or removed file) is
logged and counted, and the service goes on answering.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
TABLE = "predictions"
COMMIT_EVERY_S = 0.2  # the writer commits at most this often


@dataclass(frozen=True)
class Record:
    """One logged prediction."""

    time: str  # ISO 8601, UTC
    sha256: str  # of the uploaded bytes
    width: int
    height: int
    brightness: float  # mean of the model's input square, in [0, 1]
    contrast: float  # standard deviation of the square
    model: str  # <architecture>@<weights sha256 prefix>
    backend: str
    probability: float
    label: str
    in_distribution: bool | None  # None: the bundle has no guard
    ood_score: float | None
    latency_ms: float


SQL_TYPES = {"str": "TEXT", "int": "INTEGER", "bool": "INTEGER", "float": "REAL"}
COLUMNS = [f.name for f in fields(Record)]


def now() -> str:
    """The current time as the log writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _schema() -> str:
    """The table's definition, from `Record`'s fields (`float | None` -> REAL)."""
    cols = [f"{f.name} {SQL_TYPES[str(f.type).split(' ')[0]]}" for f in fields(Record)]
    return f"CREATE TABLE IF NOT EXISTS {TABLE} ({', '.join(cols)})"


class PredictionLog:
    """An append-only SQLite log, safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lost = 0  # rows that could not be written
        self.written = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[list[Record] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_schema())
        self._db.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (time)")
        self._db.commit()

    def write(self, records: Iterable[Record]) -> bool:
        """Append `records` in one transaction; False (logged, counted) when it failed."""
        rows = [astuple(r) for r in records]
        marks = ", ".join("?" * len(COLUMNS))
        with self._lock:
            try:
                with self._db:
                    self._db.executemany(f"INSERT INTO {TABLE} VALUES ({marks})", rows)
            except (sqlite3.Error, OSError) as exc:
                first = self.lost == 0
                self.lost += len(rows)
                if first or self.lost % 100 < len(rows):
                    log.warning(
                        "prediction log %s: write failed (%s); %d rows lost so far, the "
                        "service keeps answering",
                        self.path,
                        exc,
                        self.lost,
                    )
                return False
            self.written += len(rows)
            return True

    def append(self, records: list[Record]) -> None:
        """Queue `records` for the writer thread (started at the first call); returns at once."""
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._drain, name="prediction-log")
                self._writer.daemon = True
                self._writer.start()
        self._queue.put(records)

    def _drain(self) -> None:
        while True:
            batches = [self._queue.get()]
            if batches[0] is not None:
                time.sleep(COMMIT_EVERY_S)  # let rows gather: one commit for many requests
            while not self._queue.empty():
                batches.append(self._queue.get_nowait())
            rows = [r for batch in batches if batch is not None for r in batch]
            try:
                if rows:
                    self.write(rows)
            except Exception:  # never let the writer die: flush() would wait forever
                self.lost += len(rows)
                log.exception("prediction log %s: unexpected error while writing", self.path)
            for _ in batches:
                self._queue.task_done()
            if None in batches:
                return

    def flush(self) -> None:
        """Wait until every appended record has been written (or has failed)."""
        self._queue.join()

    def status(self) -> dict[str, Any]:
        """Path, rows written and rows lost to failed writes since start (for /health)."""
        self.flush()
        return {"path": str(self.path), "written": self.written, "lost": self.lost}

    def close(self) -> None:
        """Write what is queued, stop the writer, close the database."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
        with self._lock:
            self._db.close()


def read_log(path: Path, since: str | None = None, until: str | None = None) -> list[Record]:
    """The records of a log, oldest first, with `since <= time < until` (ISO strings)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prediction log")
    query, args = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}", []
    where = []
    if since:
        where.append("time >= ?")
        args.append(since)
    if until:
        where.append("time < ?")
        args.append(until)
    if where:
        query += " WHERE " + " AND ".join(where)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(query + " ORDER BY time", args).fetchall()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: not a prediction log ({exc})") from None
    finally:
        db.close()
    out = []
    for row in rows:
        values = dict(zip(COLUMNS, row, strict=True))
        if values["in_distribution"] is not None:
            values["in_distribution"] = bool(values["in_distribution"])
        out.append(Record(**values))
    return out
