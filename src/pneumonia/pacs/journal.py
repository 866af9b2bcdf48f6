"""The DICOM node's journal: what became of every instance it received, in the prediction log.

Two tables beside the prediction log's `predictions` (same database: a SQLite file or
PostgreSQL, as `--log` names it):

- `dicom_instances`: one row per received instance, keyed by the sha256 of its SOP Instance
  UID (the UID itself, like every other header field, is not stored): when, which calling AE
  sent it, the outcome (`answered`, `not analysed`, `failed`), why, and the UID of the report
  sent back. A re-sent instance whose row says answered or not analysed is not analysed again.
- `dicom_deliveries`: one row per result and destination: `queued` or `delivered`, how many
  attempts it took and the last error (a destination that was down says so here).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, Text, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from pneumonia.core.errors import PneumoniaError, one_line
from pneumonia.monitoring.log_target import describe, log_url
from pneumonia.monitoring.predlog import now, open_engine, while_locked

ANSWERED, NOT_ANALYSED, FAILED = "answered", "not analysed", "failed"
QUEUED, DELIVERED = "queued", "delivered"
METADATA = MetaData()
INSTANCES = Table(
    "dicom_instances",
    METADATA,
    Column("key", Text, primary_key=True),  # sha256 of the SOP Instance UID
    Column("time", Text),
    Column("calling_ae", Text),
    Column("outcome", Text),
    Column("reason", Text),
    Column("report_uid", Text),
)
DELIVERIES = Table(
    "dicom_deliveries",
    METADATA,
    Column("key", Text, primary_key=True),
    Column("destination", Text, primary_key=True),
    Column("state", Text),
    Column("attempts", Integer),
    Column("last_error", Text),
    Column("time", Text),
)


def instance_key(sop_instance_uid: str) -> str:
    """How the journal names an instance: the sha256 of its SOP Instance UID."""
    return hashlib.sha256(str(sop_instance_uid).strip().encode()).hexdigest()


class Journal:
    """The node's record of instances and deliveries (safe to share between threads)."""

    def __init__(self, target: str | Path) -> None:
        self.url = log_url(target)
        self.where = describe(self.url)
        try:
            self._engine = open_engine(self.url)
            while_locked(lambda: METADATA.create_all(self._engine))
        except (SQLAlchemyError, OSError) as exc:
            raise PneumoniaError(
                f"{self.where}: cannot open the node's journal ({one_line(exc)})"
            ) from None

    def _run(self, *statements: Any) -> list[Any]:
        def go() -> list[Any]:
            with self._engine.begin() as connection:
                results = [connection.execute(s) for s in statements]
                last = results[-1]
                return list(last.mappings()) if last.returns_rows else []

        return while_locked(go)

    def outcome(self, key: str) -> str | None:
        """answered / not analysed / failed for a journalled instance, None if never seen."""
        rows = self._run(select(INSTANCES.c.outcome).where(INSTANCES.c.key == key))
        return rows[0]["outcome"] if rows else None

    def record(
        self, key: str, calling_ae: str, outcome: str, reason: str | None, report_uid: str | None
    ) -> None:
        """What became of an instance (replacing an earlier failure's row)."""
        row = {"key": key, "time": now(), "calling_ae": calling_ae, "outcome": outcome,
               "reason": reason, "report_uid": report_uid}  # fmt: skip
        self._run(delete(INSTANCES).where(INSTANCES.c.key == key), insert(INSTANCES).values(row))

    def queued(self, key: str, destination: str) -> None:
        """A result for `destination` waits in the outbox."""
        where = (DELIVERIES.c.key == key) & (DELIVERIES.c.destination == destination)
        row = {"key": key, "destination": destination, "state": QUEUED, "attempts": 0,
               "last_error": None, "time": now()}  # fmt: skip
        self._run(delete(DELIVERIES).where(where), insert(DELIVERIES).values(row))

    def attempted(self, key: str, destination: str, error: str | None) -> None:
        """One delivery attempt: delivered (error None) or still queued, with the error."""
        where = (DELIVERIES.c.key == key) & (DELIVERIES.c.destination == destination)
        state = DELIVERED if error is None else QUEUED
        self._run(update(DELIVERIES).where(where).values(
            state=state, attempts=DELIVERIES.c.attempts + 1, last_error=error, time=now()
        ))  # fmt: skip

    def instances(self) -> list[dict[str, Any]]:
        """Every instance row, oldest first."""
        return [dict(r) for r in self._run(select(INSTANCES).order_by(INSTANCES.c.time))]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery row, oldest first."""
        return [dict(r) for r in self._run(select(DELIVERIES).order_by(DELIVERIES.c.time))]

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()
