"""The DICOM node in this process: pynetdicom senders, a pynetdicom destination, its journal."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from conftest import wait_until
from pacs.conftest import Destination, chest_film, echo, free_port, running_node, send
from pneumonia.inference.predictions import predict_paths
from pneumonia.monitoring.predlog import read_log
from pneumonia.pacs.journal import instance_key
from pneumonia.pacs.report import read_report

LABELS = ("PNEUMONIA", "NORMAL")


def reports(dest: Destination) -> list[dict[str, Any]]:
    return [read_report(ds) for ds in dest.received if ds.Modality == "SR"]


def test_each_film_gets_one_report_with_the_cli_answer(
    tmp_path: Path, shipped: Any, destination: Destination
) -> None:
    films = [chest_film(tmp_path / f"{k}.dcm", seed=k, label=LABELS[k % 2]) for k in range(4)]
    log = tmp_path / "log.sqlite"
    with running_node(shipped, tmp_path / "spool", [destination.address], log=str(log)) as node:
        assert send(node.options.port, films) == [0] * 4
        wait_until(lambda: len(destination.received) == 4, 20)
        assert send(node.options.port, films[:2]) == [0, 0]  # re-sent: acknowledged, not answered
        assert echo(node.options.port) == 0
        wait_until(lambda: node.outbox.pending() == 0)
    expected = {
        dcmread(p.path).SOPInstanceUID: p for p in predict_paths(shipped, [str(f) for f in films])
    }
    said = {r["source"]: r for r in reports(destination)}
    assert len(destination.received) == 4 and set(said) == set(expected)
    for uid, p in expected.items():
        assert said[uid]["Screening result"] == p.label
        assert said[uid]["P(PNEUMONIA)"] == pytest.approx(p.probability, abs=0.002)
    rows = read_log(log)
    assert len(rows) == 4 and {r.sha256 for r in rows} == {instance_key(u) for u in expected}
    logged = {r.sha256: r for r in rows}
    for uid, p in expected.items():
        row = logged[instance_key(uid)]
        assert (row.label, row.borderline, row.backend) == (p.label, p.borderline, shipped.backend)


@pytest.mark.parametrize(
    ("header", "why"),
    [({"Modality": "CT"}, "modality CT"), ({"ViewPosition": "LL"}, "view position LL"),
     ({"PatientAge": "045Y"}, "patient age")],
)  # fmt: skip
def test_what_the_header_rules_refuse_gets_no_answer(
    tmp_path: Path, shipped: Any, destination: Destination, header: dict[str, str], why: str
) -> None:
    film = chest_film(tmp_path / "x.dcm", **header)
    with running_node(shipped, tmp_path / "spool", [destination.address]) as node:
        assert send(node.options.port, [film]) == [0]
        assert echo(node.options.port) == 0
        (row,) = node.journal.instances()
    assert row["outcome"] == "not analysed" and why in row["reason"]
    assert destination.received == []


def test_broken_pixels_fail_that_store_alone(
    tmp_path: Path, shipped: Any, destination: Destination
) -> None:
    broken = chest_film(tmp_path / "broken.dcm")
    ds = dcmread(broken)
    ds.PixelData = ds.PixelData[:100]  # cut short
    ds.save_as(broken)
    good = chest_film(tmp_path / "good.dcm", seed=3)
    with running_node(shipped, tmp_path / "spool", [destination.address]) as node:
        statuses = send(node.options.port, [broken, good])
        assert echo(node.options.port) == 0
        wait_until(lambda: len(destination.received) == 1)
        outcomes = {r["outcome"]: r["reason"] for r in node.journal.instances()}
    assert statuses[0] == 0xC210 and statuses[1] == 0
    assert "failed" in outcomes and "answered" in outcomes
    assert not any(label in outcomes["failed"] for label in LABELS)


def test_an_ae_not_allowed_is_rejected(tmp_path: Path, shipped: Any) -> None:
    with running_node(shipped, tmp_path / "spool", []) as node:
        assert echo(node.options.port, calling="INTRUDER") is None
        assert echo(node.options.port, calling="SENDER") == 0
        with pytest.raises(AssertionError, match="refused"):
            send(node.options.port, [chest_film(tmp_path / "a.dcm")], calling="INTRUDER")
        assert node.journal.instances() == []


def test_four_senders_at_once_each_get_their_answers(
    tmp_path: Path, shipped: Any, destination: Destination
) -> None:
    films = [
        [chest_film(tmp_path / f"{s}-{k}.dcm", seed=10 * s + k) for k in range(3)] for s in range(4)
    ]
    statuses: list[list[int]] = []
    with running_node(shipped, tmp_path / "spool", [destination.address]) as node:
        senders = [threading.Thread(target=lambda f=f: statuses.append(send(node.options.port, f)))
                   for f in films]  # fmt: skip
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(60)
        wait_until(lambda: len(destination.received) == 12, 30)
    assert statuses == [[0, 0, 0]] * 4
    sources = {r["source"] for r in reports(destination)}
    assert sources == {dcmread(f).SOPInstanceUID for group in films for f in group}


def test_a_destination_down_gets_its_results_when_it_is_back(tmp_path: Path, shipped: Any) -> None:
    later = Destination("DEST", free_port())  # not listening yet
    films = [chest_film(tmp_path / f"{k}.dcm", seed=k) for k in range(2)]
    with running_node(shipped, tmp_path / "spool", [later.address]) as node:
        assert send(node.options.port, films) == [0, 0]
        wait_until(lambda: any(d["attempts"] >= 1 for d in node.journal.deliveries()))
        assert node.outbox.pending() == 2
        queued = node.journal.deliveries()
        assert {d["state"] for d in queued} == {"queued"} and any(d["last_error"] for d in queued)
        later.start()
        try:
            wait_until(lambda: len(later.received) == 2, 30)
            wait_until(lambda: {d["state"] for d in node.journal.deliveries()} == {"delivered"})
        finally:
            later.stop()
    assert node.outbox.pending() == 0


def test_what_was_queued_is_sent_by_the_next_start(tmp_path: Path, shipped: Any) -> None:
    later = Destination("DEST", free_port())
    film = chest_film(tmp_path / "a.dcm")
    with running_node(shipped, tmp_path / "spool", [later.address]) as node:
        assert send(node.options.port, [film]) == [0]
    later.start()
    try:
        with running_node(shipped, tmp_path / "spool", [later.address]) as node:
            wait_until(lambda: len(later.received) == 1, 30)
            assert send(node.options.port, [film]) == [0]  # answered before the restart
    finally:
        later.stop()
    assert len(later.received) == 1


def test_the_capture_goes_with_the_report(
    tmp_path: Path, shipped: Any, destination: Destination
) -> None:
    film = chest_film(tmp_path / "a.dcm")
    with running_node(shipped, tmp_path / "spool", [destination.address], capture=True) as node:
        assert send(node.options.port, [film]) == [0]
        wait_until(lambda: len(destination.received) == 2, 30)
    kinds = sorted(str(ds.SOPClassUID.name) for ds in destination.received)
    assert kinds == ["Comprehensive SR Storage", "Secondary Capture Image Storage"]
    assert {ds.StudyInstanceUID for ds in destination.received} == {dcmread(film).StudyInstanceUID}


def test_a_port_in_use_is_a_clear_error(tmp_path: Path, shipped: Any) -> None:
    import socket

    from pneumonia.core.errors import PneumoniaError
    from pneumonia.pacs.node import Node, NodeOptions

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        options = NodeOptions(("SENDER",), (), tmp_path / "spool", port=taken.getsockname()[1],
                              capture=False)  # fmt: skip
        node = Node(shipped, options)
        with pytest.raises(PneumoniaError, match=r"cannot listen on .*--port"):
            node.start()
