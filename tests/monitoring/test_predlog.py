"""The prediction log: schema, round trip, time windows, threads, and failing writes."""

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from pneumonia.monitoring.predlog import COLUMNS, PredictionLog, Record, read_log


def record(time: str = "2026-11-23T10:00:00.000+00:00", **changes: object) -> Record:
    base = Record(time, "ab" * 32, 640, 480, 0.45, 0.22, "m@123", "onnx", 0.9, "PNEUMONIA",
                  True, 1.1, 12.5)  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip_and_window(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "sub" / "log.sqlite")
    times = [f"2026-11-2{d}T10:00:00.000+00:00" for d in (1, 2, 3)]
    assert log.write([record(t) for t in times])
    assert log.write(
        [record("2026-11-24T00:00:00.000+00:00", in_distribution=None, ood_score=None)]
    )
    log.close()
    rows = read_log(tmp_path / "sub" / "log.sqlite")
    assert [r.time for r in rows] == [*times, "2026-11-24T00:00:00.000+00:00"]
    assert rows[0] == record(times[0]) and rows[-1].in_distribution is None
    window = read_log(tmp_path / "sub" / "log.sqlite", since=times[1], until=times[2])
    assert [r.time for r in window] == [times[1]]


def test_schema_has_no_pixels_names_or_headers(tmp_path: Path) -> None:
    PredictionLog(tmp_path / "log.sqlite").close()
    db = sqlite3.connect(tmp_path / "log.sqlite")
    columns = [row[1] for row in db.execute("PRAGMA table_info(predictions)")]
    assert columns == COLUMNS
    banned = ("pixel", "image", "file", "name", "patient", "path", "dicom", "study")
    assert not [c for c in columns if any(b in c for b in banned)]


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")

    def writer(k: int) -> None:
        for i in range(50):
            log.write([record(f"2026-11-23T10:{k:02d}:{i:02d}.000+00:00")])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.status()["written"] == 400 and log.lost == 0
    assert len(read_log(tmp_path / "log.sqlite")) == 400


def test_a_failing_write_is_counted_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = PredictionLog(tmp_path / "log.sqlite")

    class FullDisk:
        def __enter__(self) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        def __exit__(self, *args: object) -> None:
            return None

    healthy = log._db
    log._db = FullDisk()  # type: ignore[assignment]
    assert log.write([record()]) is False and log.write([record()]) is False
    assert log.status()["lost"] == 2 and "disk is full" in caplog.text
    log._db = healthy
    assert log.write([record()]) is True  # space freed: logging resumes


def test_reading_what_is_not_a_log(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such prediction log"):
        read_log(tmp_path / "absent.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="not a prediction log"):
        read_log(tmp_path / "junk.sqlite")


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
