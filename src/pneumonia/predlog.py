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
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
TABLE = "predictions"


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
        self.failures = 0
        self.written = 0
        self._lock = threading.Lock()
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
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning(
                        "prediction log %s: write failed (%s); %d failed so far, the service "
                        "keeps answering",
                        self.path,
                        exc,
                        self.failures,
                    )
                return False
            self.written += len(rows)
            return True

    def status(self) -> dict[str, Any]:
        """Path, rows written and failed writes since start (for /health)."""
        return {"path": str(self.path), "written": self.written, "failed_writes": self.failures}

    def close(self) -> None:
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
