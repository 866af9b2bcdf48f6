"""The node's outbox: results on disk until their destination has them, then gone.

Each destination (`AET@HOST:PORT` for C-STORE, an `http(s)://` DICOMweb URL for STOW-RS) has
a folder under the spool. A result is written there (a temporary name, fsync, rename) and
journalled as queued *before* the node acknowledges the image it answers, so nothing
acknowledged is lost: a node killed at any moment sends what its folders hold when it starts
again. One thread per destination sends each result in turn and deletes it once the
destination confirmed it; a destination that is down is retried with exponential backoff (up
to `retry_max_s`), the journal counting the attempts and keeping the last error.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pynetdicom import AE

from pneumonia.core.errors import PneumoniaError, one_line
from pneumonia.pacs.journal import Journal

log = logging.getLogger(__name__)
SUCCESS_OR_WARNING = {0x0000, 0x0001, 0x0107, 0x0116} | set(range(0xB000, 0xC000))


@dataclass(frozen=True)
class Destination:
    """Where results go: a DICOM node (`ae_title`, `host`, `port`) or a STOW-RS `url`."""

    text: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""

    @classmethod
    def parse(cls, text: str) -> Destination:
        """'AET@HOST:PORT' or 'http(s)://…/dicom-web' -> Destination; a clear error otherwise."""
        if re.match(r"^https?://", text):
            return cls(text, url=text.rstrip("/"))
        match = re.fullmatch(r"([^@\\]{1,16})@([^:@]+):(\d{1,5})", text.strip())
        if not match or not 0 < int(match[3]) < 65536:
            raise PneumoniaError(
                f"destination {text!r}: expected AET@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242) "
                "or a DICOMweb URL (http://host:8042/dicom-web)"
            )
        return cls(text, ae_title=match[1].strip(), host=match[2], port=int(match[3]))

    @property
    def folder(self) -> str:
        """The spool folder's name for this destination (stable across restarts)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.text)[:100]


def write_durably(path: Path, data: bytes) -> None:
    """`data` at `path`, all or nothing: a temporary file, fsync, rename, fsync of the folder."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def encode(ds: Any) -> bytes:
    """A dataset as a DICOM Part 10 file."""
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def send_dimse(dest: Destination, calling_ae: str, files: list[Path], timeout: float) -> None:
    """C-STORE every file to `dest` in one association; raises with the reason on failure."""
    datasets = [dcmread(f) for f in files]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"no association with {dest.text} (down, or it refused {calling_ae})")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code not in SUCCESS_OR_WARNING:
                raise ConnectionError(
                    f"{dest.text} answered C-STORE with status 0x{code & 0xFFFF:04X}"
                    if code >= 0
                    else f"{dest.text} gave no C-STORE answer"
                )
    finally:
        assoc.release()


def send_stow(dest: Destination, files: list[Path], timeout: float) -> None:
    """STOW-RS every file to the DICOMweb service at `dest.url`."""
    client = DICOMwebClient(url=dest.url)
    client.set_http_retry_params(retry=False)
    client.store_instances([dcmread(f) for f in files])


class Outbox:
    """Durable per-destination queues of results, each drained by its own thread."""

    def __init__(
        self, spool: Path, destinations: list[Destination], journal: Journal, calling_ae: str,
        retry_max_s: float = 60.0, timeout_s: float = 30.0,
    ) -> None:  # fmt: skip
        self.spool, self.destinations, self.journal = spool, destinations, journal
        self.calling_ae, self.retry_max_s, self.timeout_s = calling_ae, retry_max_s, timeout_s
        self._wake = {d.text: threading.Event() for d in destinations}
        self._stop = threading.Event()
        for dest in destinations:
            folder = spool / dest.folder
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*.tmp"):  # a write cut short: its instance was not acked
                stale.unlink()
        self._threads = [
            threading.Thread(target=self._drain, args=(d,), name=f"outbox {d.text}", daemon=True)
            for d in destinations
        ]
        for thread in self._threads:
            thread.start()

    def put(self, key: str, datasets: list[Any]) -> None:
        """Queue `datasets` (one instance's results) for every destination, durably."""
        blobs = [encode(ds) for ds in datasets]
        for dest in self.destinations:
            for n, blob in enumerate(blobs):
                write_durably(self.spool / dest.folder / f"{key}.{n}.dcm", blob)
            self.journal.queued(key, dest.text)
            self._wake[dest.text].set()

    def pending(self) -> int:
        """Results still waiting, over all destinations."""
        return sum(len(self._keys(d)) for d in self.destinations)

    def _keys(self, dest: Destination) -> list[str]:
        files = sorted((self.spool / dest.folder).glob("*.dcm"), key=lambda p: p.stat().st_mtime)
        return list(dict.fromkeys(p.name.split(".")[0] for p in files))

    def _send(self, dest: Destination, files: list[Path]) -> None:
        if dest.url:
            send_stow(dest, files, self.timeout_s)
        else:
            send_dimse(dest, self.calling_ae, files, self.timeout_s)

    def _drain(self, dest: Destination) -> None:
        first = delay = min(1.0, self.retry_max_s)
        while not self._stop.is_set():
            keys = self._keys(dest)
            if not keys:
                self._wake[dest.text].wait(1.0)
                self._wake[dest.text].clear()
                continue
            key = keys[0]
            files = sorted((self.spool / dest.folder).glob(f"{key}.*.dcm"))
            try:
                self._send(dest, files)
            except Exception as exc:  # network, refusals, a destination's own errors
                error = one_line(exc)[:300]
                log.warning("queued: destination %s down or refusing (%s); retry in %.0f s; "
                            "%d result(s) waiting", dest.text, error, delay, len(keys))  # fmt: skip
                self.journal.attempted(key, dest.text, error)
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            for f in files:
                f.unlink(missing_ok=True)
            self.journal.attempted(key, dest.text, None)
            log.info("delivered result %s to %s", key[:12], dest.text)
            delay = first

    def close(self) -> None:
        """Stop the delivery threads (what is queued stays on disk for the next start)."""
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)
