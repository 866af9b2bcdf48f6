"""The prediction log on both back ends (a SQLite file, a PostgreSQL server): schema, round
trip, time windows, concurrent writers and replicas, failing writes, and what is not a log."""

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, Table, inspect
from sqlalchemy.exc import OperationalError

from pneumonia.monitoring.log_target import log_url
from pneumonia.monitoring.predlog import (
    ADDED,
    COLUMNS,
    PREDICTIONS,
    PredictionLog,
    Record,
    open_engine,
    read_log,
    read_logs,
)


def record(time: str = "2026-11-23T10:00:00.000+00:00", **changes: object) -> Record:
    base = Record(time, "ab" * 32, 640, 480, 0.45, 0.22, "m@123", "onnx", 0.9, "PNEUMONIA",
                  True, 1.1, 12.5)  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a log goes: a SQLite file in a folder yet to be made, or an empty database."""
    if request.param == "sqlite":
        return str(tmp_path / "sub" / "log.sqlite")
    return str(request.getfixturevalue("postgres_url"))


def test_round_trip_and_window(target: str) -> None:
    log = PredictionLog(target)
    times = [f"2026-11-2{d}T10:00:00.000+00:00" for d in (1, 2, 3)]
    assert log.write([record(t) for t in times])
    assert log.write(
        [record("2026-11-24T00:00:00.000+00:00", in_distribution=None, ood_score=None,
                subtype="viral", subtype_probability=0.75)]
    )  # fmt: skip
    log.close()
    rows = read_log(target)
    assert [r.time for r in rows] == [*times, "2026-11-24T00:00:00.000+00:00"]
    assert rows[0] == record(times[0]) and rows[-1].in_distribution is None
    assert rows[0].subtype is None and (rows[-1].subtype, rows[-1].subtype_probability) == (
        "viral", 0.75)  # fmt: skip
    assert isinstance(rows[0].in_distribution, bool)
    window = read_log(target, since=times[1], until=times[2])
    assert [r.time for r in window] == [times[1]]


def test_schema_has_no_pixels_names_or_headers(target: str) -> None:
    PredictionLog(target).close()
    engine = open_engine(log_url(target))
    columns = [c["name"] for c in inspect(engine).get_columns("predictions")]
    indexes = [i["name"] for i in inspect(engine).get_indexes("predictions")]
    engine.dispose()
    assert columns == COLUMNS and indexes == ["predictions_time"]
    banned = ("pixel", "image", "file", "name", "patient", "path", "dicom", "study")
    assert not [c for c in columns if any(b in c for b in banned)]


def test_replicas_starting_together_share_one_log(target: str) -> None:
    """Four replicas (own engines) create the schema at once, then write at once."""
    logs: list[PredictionLog] = []
    errors: list[BaseException] = []

    def replica(k: int) -> None:
        try:
            log = PredictionLog(target)
            logs.append(log)
            for i in range(25):
                assert log.write([record(f"2026-11-23T1{k}:00:{i:02d}.000+00:00")])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sum(log.lost for log in logs) == 0
    for log in logs:
        log.close()
    assert len(read_log(target)) == 100


def test_concurrent_writers_lose_nothing(target: str) -> None:
    log = PredictionLog(target)

    def writer(k: int) -> None:
        for i in range(50):
            log.write([record(f"2026-11-23T10:{k:02d}:{i:02d}.000+00:00")])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.status()["written"] == 400 and log.lost == 0
    log.close()
    assert len(read_log(target)) == 400


def test_a_failing_write_is_counted_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")
    full = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    def fail() -> None:
        raise full

    monkeypatch.setattr(log._engine, "begin", fail)
    assert log.write([record()]) is False and log.write([record()]) is False
    status = log.status()
    assert status["lost"] == 2 and status["error"] == "database or disk is full"
    assert "disk is full" in caplog.text and "sqlalche.me" not in caplog.text
    monkeypatch.undo()
    assert log.write([record()]) is True and log.status()["error"] is None  # space freed


def test_a_server_that_cannot_be_reached_is_one_line_and_rows_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = PredictionLog("postgresql://someone:secret@127.0.0.1:1/nowhere")  # nothing listens
    assert log.error is not None and "\n" not in log.error
    assert log.write([record()]) is False and log.status()["lost"] == 1
    assert "secret" not in caplog.text and "secret" not in log.where
    assert "127.0.0.1:1/nowhere" in caplog.text
    log.close()
    with pytest.raises(ConnectionError, match=r"127.0.0.1:1/nowhere: cannot read the log"):
        read_log("postgresql://someone:secret@127.0.0.1:1/nowhere")


def test_reading_what_is_not_a_log(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such prediction log"):
        read_log(tmp_path / "absent.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="not a prediction log"):
        read_log(tmp_path / "junk.sqlite")


def test_reading_a_database_without_the_table(postgres_url: str) -> None:
    with pytest.raises(ValueError, match="not a prediction log"):
        read_log(postgres_url)


def test_several_logs_merge_in_time_order(tmp_path: Path) -> None:
    for k in range(2):
        log = PredictionLog(tmp_path / f"replica{k}.sqlite")
        log.write([record(f"2026-11-2{d}T1{k}:00:00.000+00:00") for d in (1, 3)])
        log.close()
    rows = read_logs([tmp_path / "replica0.sqlite", tmp_path / "replica1.sqlite"])
    assert [r.time[:13] for r in rows] == [
        "2026-11-21T10", "2026-11-21T11", "2026-11-23T10", "2026-11-23T11"]  # fmt: skip


def test_appends_are_written_by_one_thread_in_order(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")

    def client(k: int) -> None:
        for i in range(25):
            log.append([record(f"2026-11-23T1{k}:00:{i:02d}.000+00:00")])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.status()["written"] == 100  # status waits for the queue
    log.append([record("2026-11-24T00:00:00.000+00:00")])
    log.close()  # writes what is still queued
    rows = read_log(tmp_path / "log.sqlite")
    assert len(rows) == 101 and [r.time for r in rows] == sorted(r.time for r in rows)


def test_an_old_log_with_integer_columns_still_reads(tmp_path: Path) -> None:
    """Logs written before SQLAlchemy (booleans in INTEGER columns) read as before."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE predictions (time TEXT, sha256 TEXT, width INTEGER, height INTEGER, "
               "brightness REAL, contrast REAL, model TEXT, backend TEXT, probability REAL, "
               "label TEXT, in_distribution INTEGER, ood_score REAL, latency_ms REAL)")  # fmt: skip
    db.execute("INSERT INTO predictions VALUES ('2026-11-01T00:00:00.000+00:00', 'x', 1, 2, "
               "0.5, 0.2, 'm', 'onnx', 0.7, 'PNEUMONIA', 0, 3.0, 9.0)")  # fmt: skip
    db.commit()
    db.close()
    [row] = read_log(path)
    assert row.in_distribution is False and row.width == 1
    log = PredictionLog(path)  # the service keeps appending to it
    assert log.write([record()])
    log.close()
    assert len(read_log(path)) == 2


def test_an_older_log_gains_the_subtype_columns(target: str) -> None:
    """A log made before the subtype columns reads (subtype None), and a service opening it
    adds the columns and logs the subtype from then on."""
    engine = open_engine(log_url(target))
    kept = [Column(c.name, c.type) for c in PREDICTIONS.columns if c.name not in ADDED]
    old = Table("predictions", MetaData(), *kept)
    old.create(engine)
    with engine.begin() as connection:
        connection.execute(old.insert(), [{k: v for k, v in record().__dict__.items()
                                           if k not in ADDED}])  # fmt: skip
    engine.dispose()
    [before] = read_log(target)
    assert before == record() and before.subtype is None
    log = PredictionLog(target)
    assert log.write([record("2026-11-24T00:00:00.000+00:00", subtype="bacterial",
                             subtype_probability=0.1)])  # fmt: skip
    log.close()
    assert [r.subtype for r in read_log(target)] == [None, "bacterial"]
    engine = open_engine(log_url(target))
    assert [c["name"] for c in inspect(engine).get_columns("predictions")] == COLUMNS
    engine.dispose()
