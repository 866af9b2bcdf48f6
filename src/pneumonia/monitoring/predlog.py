"""The prediction log: one row per prediction the service makes, for `monitor`.

A row holds when, what (the upload's sha256, its decoded size and two input statistics of
the model's square: mean and standard deviation in [0, 1]), which model and backend, the
answer (probability, label, the guard's score and verdict) and how long it took. Never
pixels, never a file name, never a DICOM header field.

Where it lives: a SQLite file (the embedded default, a path) or a PostgreSQL database (a
`postgresql://user:password@host/db` URL) that several replicas share. One code path,
SQLAlchemy Core, for both. The table is created on first use; on PostgreSQL under an
advisory lock, so replicas starting together do not race. SQLite runs in WAL mode so
`monitor` can read while the service writes. Writes go through one writer thread that
commits every `COMMIT_EVERY_S`: a row is durable once committed, and the service answers
before that, so a crash can lose the last fraction of a second. A failed write (a full
disk, a database that is down or unreachable) is logged and counted, and the service goes
on answering; the next write tries again.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import (
    NoSuchModuleError,
    NoSuchTableError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from pneumonia.core.bundle import model_version
from pneumonia.core.errors import PneumoniaError, one_line
from pneumonia.core.preprocess import square_stats
from pneumonia.monitoring.log_target import describe, log_url

if TYPE_CHECKING:
    import numpy as np

    from pneumonia.inference.loading import Bundle
    from pneumonia.inference.predictions import Prediction

log = logging.getLogger(__name__)
TABLE = "predictions"
COMMIT_EVERY_S = 0.2  # the writer commits at most this often
CONNECT_TIMEOUT_S = 5  # an unreachable server fails a write in this long, not minutes
SCHEMA_LOCK = 0x70_6E_65_75  # PostgreSQL advisory lock key held while the table is created
LOCKED_TRIES = 100  # 50 ms apart: how long SQLite's unwaited locks are retried
T = TypeVar("T")


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
    subtype: str | None = None  # bacterial or viral; None: no subtype head, or NORMAL
    subtype_probability: float | None = None  # P(viral | pneumonia); None without the head
    token_id: str | None = None  # which API token asked (its sha256 prefix); None: anonymous
    borderline: bool | None = None  # within the bundle's band; None: the bundle records none


ADDED = ("subtype", "subtype_probability", "token_id", "borderline")
"""Columns added after the first logs were written: `create_schema` adds them to an older
log, and reading one without them gives None."""
SQL_TYPES = {"str": Text, "int": Integer, "bool": Boolean, "float": Float}
COLUMNS = [f.name for f in fields(Record)]
METADATA = MetaData()
PREDICTIONS = Table(
    TABLE,
    METADATA,
    *[Column(f.name, SQL_TYPES[str(f.type).split(" ")[0]]()) for f in fields(Record)],
)
TIME_INDEX = Index(f"{TABLE}_time", PREDICTIONS.c.time)


def now() -> str:
    """The current time as the log writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def answer_records(
    bundle: Bundle, answers: Sequence[Prediction], squares: np.ndarray,
    inputs: Sequence[tuple[str, int, int]], started: float, token_id: str | None = None,
) -> list[Record]:  # fmt: skip
    """One row per answer: its input's (sha256, width, height), its contract square's
    statistics (`squares`, N x S x S), the bundle's model and backend, and the latency since
    `started` (a `time.perf_counter()` reading), all at one time."""
    latency = round(1000 * (time.perf_counter() - started), 2)
    version, when, stats = model_version(bundle.meta), now(), square_stats(squares)
    return [
        Record(
            when, sha, width, height, round(float(stats["brightness"][k]), 6),
            round(float(stats["contrast"][k]), 6), version, bundle.backend,
            float(a.probability or 0.0), str(a.label), a.in_distribution, a.ood_score,
            latency, a.subtype, a.subtype_probability, token_id, a.borderline,
        )
        for k, (a, (sha, width, height)) in enumerate(zip(answers, inputs, strict=True))
    ]  # fmt: skip


def while_locked(call: Callable[[], T]) -> T:
    """`call()`, tried again for up to 5 s while SQLite answers "database is locked": some
    locks (switching a new file to WAL, say) are not waited for, and several replicas may
    open one new log at once."""
    for _ in range(LOCKED_TRIES - 1):
        try:
            return call()
        except (sqlite3.OperationalError, OperationalError) as exc:
            if "locked" not in str(exc):
                raise
        time.sleep(0.05)
    return call()


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    """WAL mode and its usual durability."""
    cursor = connection.cursor()
    while_locked(lambda: cursor.execute("PRAGMA journal_mode=WAL"))
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_engine(url: URL, readonly: bool = False) -> Engine:
    """An engine for the log at `url`; a SQLite file is opened read-only with `readonly`
    (never created), else its folder is made and it runs in WAL mode."""
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        if readonly:
            uri = f"file:{path.resolve()}?mode=ro"
            return create_engine(
                "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=5.0)
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 5.0, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
    except (NoSuchModuleError, ImportError):
        raise PneumoniaError(
            f"{describe(url)}: PostgreSQL needs the psycopg driver: pip install 'psycopg[binary]'"
        ) from None


def create_schema(engine: Engine) -> None:
    """Create the table and its time index unless they exist (safe with several writers)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        connection.execute(CreateTable(PREDICTIONS, if_not_exists=True))
        connection.execute(CreateIndex(TIME_INDEX, if_not_exists=True))
        for name in _missing_columns(connection):  # a log written before these columns
            _add_column(connection, name)


def _missing_columns(connection: Any) -> list[str]:
    """The columns of ADDED that the table lacks (an older log); NoSuchTableError without it."""
    present = {c["name"] for c in inspect(connection).get_columns(TABLE)}
    return [name for name in ADDED if name not in present]


def _add_column(connection: Any, name: str) -> None:
    """ALTER TABLE ADD COLUMN `name`: on PostgreSQL under the schema's advisory lock; on SQLite
    a replica that added it since the look is no error."""
    kind = PREDICTIONS.c[name].type.compile(dialect=connection.dialect)
    statement = text(f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind}")
    if connection.dialect.name == "postgresql":
        connection.execute(statement)
    else:
        try:
            with connection.begin_nested():
                connection.execute(statement)
        except OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise
    log.info("prediction log: added column %s to an older log", name)


class PredictionLog:
    """An append-only prediction log, safe to share between threads (and, on PostgreSQL or
    one SQLite file, between processes)."""

    def __init__(self, target: str | Path) -> None:
        self.url = log_url(target)
        self.where = describe(self.url)
        self.lost = 0  # rows that could not be written
        self.written = 0
        self.error: str | None = None  # the last write's failure, None once one succeeds
        self._lock = threading.Lock()
        self._queue: queue.Queue[list[Record] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._ready = False
        try:
            self._engine = open_engine(self.url)
        except OSError as exc:
            raise PneumoniaError(
                f"{self.where}: cannot create the prediction log ({exc})"
            ) from None
        try:
            self._ensure_schema()
        except (SQLAlchemyError, OSError) as exc:
            if self.url.get_backend_name() == "sqlite":
                raise PneumoniaError(
                    f"{self.where}: cannot open the prediction log ({one_line(exc)})"
                ) from None
            self.error = one_line(exc)  # a server that is down: the service answers anyway
            log.error("prediction log %s: %s; rows are counted as lost until it answers",
                      self.where, self.error)  # fmt: skip

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        if self.url.get_backend_name() == "sqlite":
            while_locked(lambda: create_schema(self._engine))
        else:
            create_schema(self._engine)  # PostgreSQL: under its advisory lock
        self._ready = True

    def write(self, records: Iterable[Record]) -> bool:
        """Append `records` in one transaction; False (logged, counted) when it failed."""
        rows = [asdict(r) for r in records]
        with self._lock:
            try:
                self._ensure_schema()
                with self._engine.begin() as connection:
                    connection.execute(insert(PREDICTIONS), rows)
            except (SQLAlchemyError, OSError) as exc:
                first = self.lost == 0
                self.lost += len(rows)
                self.error = one_line(exc)
                if first or self.lost % 100 < len(rows):
                    log.warning(
                        "prediction log %s: write failed (%s); %d rows lost so far, the "
                        "service keeps answering",
                        self.where,
                        self.error,
                        self.lost,
                    )
                return False
            self.written += len(rows)
            self.error = None
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
                log.exception("prediction log %s: unexpected error while writing", self.where)
            for _ in batches:
                self._queue.task_done()
            if None in batches:
                return

    def flush(self) -> None:
        """Wait until every appended record has been written (or has failed)."""
        self._queue.join()

    def status(self) -> dict[str, Any]:
        """Where (no password), rows written and lost since start, the last error (/health)."""
        self.flush()
        return {"path": self.where, "written": self.written, "lost": self.lost,
                "error": self.error}  # fmt: skip

    def close(self) -> None:
        """Write what is queued, stop the writer, close the database's connections."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
        with self._lock:
            self._engine.dispose()


def read_log(
    source: str | Path, since: str | None = None, until: str | None = None
) -> list[Record]:
    """The records of one log, oldest first, with `since <= time < until` (ISO strings).
    Raises FileNotFoundError (no such file), ConnectionError (a server that does not
    answer) or ValueError (not a prediction log), each one line naming the log."""
    url = log_url(source)
    where = describe(url)
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite and not Path(str(url.database)).is_file():
        raise FileNotFoundError(f"{where}: no such prediction log")
    query = select(PREDICTIONS).order_by(PREDICTIONS.c.time)
    if since:
        query = query.where(PREDICTIONS.c.time >= since)
    if until:
        query = query.where(PREDICTIONS.c.time < until)
    engine = open_engine(url, readonly=True)
    try:
        with engine.connect() as connection:
            missing = _missing_columns(connection)  # an older log reads them as None
            columns = [c for c in PREDICTIONS.columns if c.name not in missing]
            rows = connection.execute(query.with_only_columns(*columns)).all()
    except NoSuchTableError:
        raise ValueError(f"{where}: not a prediction log (no table {TABLE})") from None
    except SQLAlchemyError as exc:
        if sqlite or _answered(exc):
            raise ValueError(f"{where}: not a prediction log ({one_line(exc)})") from None
        raise ConnectionError(f"{where}: cannot read the log ({one_line(exc)})") from None
    finally:
        engine.dispose()
    return [Record(**row._asdict()) for row in rows]


def _answered(exc: SQLAlchemyError) -> bool:
    """Whether a server error came from a server that answered (a missing table, say: it
    carries a SQLSTATE) rather than from failing to reach one."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) is not None


def read_logs(
    sources: Sequence[str | Path], since: str | None = None, until: str | None = None
) -> list[Record]:
    """The records of several logs (replicas' SQLite files, a shared database), merged in
    time order."""
    merged = [r for source in sources for r in read_log(source, since, until)]
    return sorted(merged, key=lambda r: r.time)
