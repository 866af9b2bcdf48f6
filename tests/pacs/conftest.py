"""Fixtures of the DICOM node's tests: free ports, a DICOM destination that keeps what it is
sent, and a real Orthanc (Debian's `orthanc` and `orthanc-dicomweb`, which `.ci/run`
installs; the tests that need it skip, saying why, where it is absent)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Destination:
    """A pynetdicom Storage SCP on loopback that keeps every dataset it is sent."""

    ae_title: str
    port: int
    received: list[Any] = field(default_factory=list)
    server: Any = None

    @property
    def address(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def start(self) -> Destination:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt

        def keep(event: Any) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.received.append(ds)
            return 0x0000

        ae = AE(ae_title=self.ae_title)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        where = ("127.0.0.1", self.port)
        self.server = ae.start_server(where, block=False, evt_handlers=[(evt.EVT_C_STORE, keep)])
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture
def destination() -> Iterator[Destination]:
    """A DICOM destination (AE title DEST) the node's results go to."""
    dest = Destination("DEST", free_port()).start()
    yield dest
    dest.stop()


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its DICOM port (AE title ORTHANC) and REST/DICOMweb base URL."""

    dicom_port: int
    url: str

    def get(self, route: str, query: dict[str, Any] | None = None) -> Any:
        """GET a REST route (POST with `query` as JSON, as /tools/find wants)."""
        data = None if query is None else json.dumps(query).encode()
        with urllib.request.urlopen(self.url + route, data=data, timeout=10) as answer:
            return json.loads(answer.read())

    def file(self, instance: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}/instances/{instance}/file", timeout=10) as a:
            return bytes(a.read())


def start_orthanc(root: Path, extra: dict[str, Any] | None = None) -> tuple[Orthanc, Any]:
    """Orthanc with its DICOMweb plugin, storing under `root`, on free loopback ports; returns
    it and its process once its REST API answers."""
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "pneumonia-tests", "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"), "DicomAet": "ORTHANC", "DicomPort": dicom_port,
        "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomServerEnabled": True, "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "StorageCompression": False,
        **(extra or {}),
    }  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("wb")
    process = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=log, stderr=log)
    server = Orthanc(dicom_port, f"http://127.0.0.1:{http_port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            server.get("/system")
            return server, process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    process.kill()
    pytest.fail(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A fresh Orthanc for one test; skipped where Debian's orthanc is not installed."""
    if not Path(ORTHANC).exists() or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
    server, process = start_orthanc(tmp_path / "orthanc")
    yield server
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def chest_film(path: Path, seed: int = 0, label: str = "PNEUMONIA", **header: str) -> Path:
    """A synthetic frontal chest CR of a four-year-old as a 12-bit DICOM file in a study of
    its own (made-up patient details); `header` elements override or add to it."""
    import io

    import numpy as np
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from pneumonia.data.renderings import dicom_bytes
    from pneumonia.data.synthetic import synthetic_xray

    gray = synthetic_xray(label, 96, 80, np.random.default_rng(seed)).astype(np.uint16) * 16
    fields = {"PatientName": "Doe^Jane", "PatientID": "SECRET-4711", "PatientAge": "004Y",
              "StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(),
              "Modality": "CR", "ViewPosition": "PA", "BodyPartExamined": "CHEST"}  # fmt: skip
    ds = dcmread(io.BytesIO(dicom_bytes(gray, "MONOCHROME2", 12, None, fields)))
    for keyword, value in header.items():
        if value == "":
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def shipped() -> Any:
    """The shipped model on its default backend, loaded once."""
    from pneumonia.inference.loading import load_bundle

    return load_bundle(None, "auto")


def send(
    port: int, paths: list[Path], calling: str = "SENDER", called: str = "PNEUMONIA"
) -> list[int]:
    """C-STORE each file, in its own transfer syntax, in one association; the statuses."""
    from pydicom import dcmread
    from pynetdicom import AE

    datasets = [dcmread(p) for p in paths]
    ae = AE(ae_title=calling)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "the node refused the association"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def echo(port: int, calling: str = "SENDER") -> int | None:
    """C-ECHO's status, or None when the association was refused."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="PNEUMONIA")
    if not assoc.is_established:
        return None
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


@contextmanager
def running_node(
    bundle: Any, spool: Path, destinations: list[str], **options: Any
) -> Iterator[Any]:
    """A node (AE PNEUMONIA, accepting SENDER) on a free port, stopped afterwards."""
    from pneumonia.pacs.node import Node, NodeOptions
    from pneumonia.pacs.outbox import Destination as Where

    settings = {"allow": ("SENDER",), "capture": False, "retry_max_s": 0.5, **options}
    node = Node(bundle, NodeOptions(destinations=tuple(Where.parse(d) for d in destinations),
                                    spool=spool, port=free_port(), **settings))  # fmt: skip
    node.start()
    try:
        yield node
    finally:
        node.stop()
