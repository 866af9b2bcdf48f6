"""`pneumonia dicom-node`: a DICOM Storage SCP that answers chest films where the PACS is.

pynetdicom listens; every storage SOP class is accepted in every transfer syntax a sender
proposes (many senders cannot decompress), and Verification (C-ECHO) is answered. Only the
calling AE titles of `--allow` may associate, and only to this node's AE title.

Each C-STORE is handled before it is acknowledged, in the association's own thread:

1. a re-sent instance (the journal already says answered or not analysed) is acknowledged and
   left alone: one answer per SOP Instance UID;
2. the header rules (`pneumonia.data.dicom_rules`) decide whether it is analysed at all; an
   instance they refuse is acknowledged and journalled "not analysed: why", with no label;
3. the pixels go through the one input door (`decode_dataset`) and the bundle's answer comes
   from the shared micro-batcher (the CAM, where on, from one PyTorch network under a lock);
   pixels that cannot be decoded get a failure status naming the problem;
4. the report (and capture) go into the outbox on disk, the journal and the prediction log
   record the answer, and only then is the instance acknowledged: a node killed after the
   acknowledgement delivers the result when it starts again.

Received pixels live only in memory, for the length of their C-STORE; nothing from the
header is logged. Any unexpected error fails that one C-STORE (status 0xA700), never the node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt

from pneumonia.core.errors import ImageError, PneumoniaError
from pneumonia.data.dicom import decode_dataset
from pneumonia.data.dicom_codecs import preload, syntax_name
from pneumonia.data.dicom_rules import AgeRange, refusal
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import Prediction, prediction, score_squares
from pneumonia.inference.runtime import lanes, torch_available
from pneumonia.monitoring.predlog import PredictionLog, answer_records
from pneumonia.pacs.journal import ANSWERED, FAILED, NOT_ANALYSED, Journal, instance_key
from pneumonia.pacs.outbox import Destination, Outbox
from pneumonia.pacs.report import reference, secondary_capture, structured_report
from pneumonia.serving.batching import Batching, MicroBatcher

log = logging.getLogger(__name__)
CANNOT_UNDERSTAND = 0xC210  # "Error: cannot understand" (a Storage SCP's failure range)
OUT_OF_RESOURCES = 0xA700
VERIFICATION = "1.2.840.10008.1.1"  # the C-ECHO SOP class


@dataclass(frozen=True)
class NodeOptions:
    """How the node listens, whom it answers, where results go and what it keeps."""

    allow: tuple[str, ...]
    destinations: tuple[Destination, ...]
    spool: Path
    ae_title: str = "PNEUMONIA"
    host: str = "127.0.0.1"
    port: int = 11112
    log: str | None = None  # prediction log (and journal) target; None: journal in the spool
    capture: bool = True
    ages: AgeRange = field(default_factory=AgeRange)
    retry_max_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.allow:
            raise PneumoniaError("name the senders: --allow AET (each calling AE title accepted)")
        if any(not 0 < len(a) <= 16 or "\\" in a for a in (self.ae_title, *self.allow)):
            raise PneumoniaError("AE titles are 1 to 16 characters, without backslashes")


def status(code: int, comment: str | None = None) -> Any:
    """A C-STORE response status, with an error comment (64 characters at most)."""
    answer = Dataset()
    answer.Status = code
    if comment:
        answer.ErrorComment = comment[:64]
    return answer


class Node:
    """The Storage SCP and everything behind it (see the module's doc)."""

    def __init__(self, bundle: Bundle, options: NodeOptions) -> None:
        if options.capture and not torch_available():
            raise PneumoniaError(
                "the Grad-CAM capture needs PyTorch: pip install 'pneumonia[train]', or "
                "pass --no-capture to send the report alone"
            )
        self.bundle, self.options = bundle, options
        preload()
        options.spool.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(options.log or options.spool / "journal.sqlite")
        self.predlog = PredictionLog(options.log) if options.log else None
        self.outbox = Outbox(options.spool, list(options.destinations), self.journal,
                             options.ae_title, options.retry_max_s)  # fmt: skip
        self.batcher = MicroBatcher(
            lambda s: score_squares(bundle, s), Batching(), lanes(bundle.model)
        )
        self._network = None
        if options.capture:  # PyTorch and the CAM, loaded here, not first in a handler thread
            import pneumonia.serving.explain  # noqa: F401

            self._network = load_bundle(bundle.path, "torch")
        self._cam_lock, self._claims_lock = threading.Lock(), threading.Lock()
        self._claims: dict[str, list[Any]] = {}  # key -> [lock, users]
        self._server: Any = None

    @contextmanager
    def _claim(self, key: str) -> Iterator[None]:
        """One instance handled at a time: a copy sent at once on two associations waits."""
        with self._claims_lock:
            entry = self._claims.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._claims_lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._claims[key]

    def start(self, block: bool = False) -> None:
        """Listen on the options' host and port (blocking with `block`)."""
        ae = AE(ae_title=self.options.ae_title)
        ae.require_called_aet = True
        ae.require_calling_aet = list(self.options.allow)
        ae.maximum_associations = 16
        for context in StoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(VERIFICATION)
        handlers = [(evt.EVT_C_STORE, self.on_store)]
        where = (self.options.host, self.options.port)
        try:
            self._server = ae.start_server(where, block=block, evt_handlers=handlers)  # type: ignore[arg-type]
        except OSError as exc:  # the port is taken, or not ours to bind
            self.stop()
            raise PneumoniaError(
                f"cannot listen on {where[0]}:{where[1]} ({exc.strerror or exc}); "
                "is another node or PACS using that port? Pick another with --port"
            ) from None

    def on_store(self, event: Any) -> Any:
        """Answer one C-STORE (see the module's doc); never raises."""
        calling = str(event.assoc.requestor.ae_title).strip()
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception as exc:  # a dataset pydicom cannot parse
            log.warning("from %s: unreadable dataset (%s)", calling, type(exc).__name__)
            return status(CANNOT_UNDERSTAND, "unreadable DICOM dataset")
        uid = str(ds.get("SOPInstanceUID", "") or event.request.AffectedSOPInstanceUID)
        key = instance_key(uid)
        try:
            with self._claim(key):
                return self._handle(ds, key, calling)
        except Exception:
            log.exception("instance %s from %s: unexpected error", key[:12], calling)
            return status(OUT_OF_RESOURCES, "unexpected error in the node; see its log")

    def _handle(self, ds: Any, key: str, calling: str) -> Any:
        done = self.journal.outcome(key)
        if done in (ANSWERED, NOT_ANALYSED):
            log.info("instance %s from %s: already %s; not analysed again", key[:12], calling, done)
            return status(0x0000)
        reason = refusal(ds, self.options.ages)
        if reason is not None:
            self.journal.record(key, calling, NOT_ANALYSED, reason, None)
            log.info("instance %s from %s: not analysed: %s", key[:12], calling, reason)
            return status(0x0000)
        started = time.perf_counter()
        syntax = syntax_name(str(ds.file_meta.get("TransferSyntaxUID", "")))
        try:
            ref = reference(ds)
            gray = decode_dataset(ds, f"instance {key[:12]}").pixels
        except (ImageError, ValueError) as exc:
            why = exc.reason if isinstance(exc, ImageError) else str(exc)
            self.journal.record(key, calling, FAILED, why, None)
            log.warning("instance %s from %s: failed: %s", key[:12], calling, why)
            return status(CANNOT_UNDERSTAND, why)
        del ds  # the received pixels are not needed past this point
        square = self.bundle.contract.square(gray)
        p, score, viral = self.batcher.submit([square])[0]
        answer = prediction(self.bundle, key, float(p), float(score), float(viral))
        results = [structured_report(ref, answer, self.bundle)]
        if self._network is not None:
            results.append(secondary_capture(ref, self._overlay(gray, answer), self.bundle))
        self.outbox.put(key, results)
        self.journal.record(key, calling, ANSWERED, None, str(results[0].SOPInstanceUID))
        self._log(key, gray, square, answer, started)
        log.info(
            "instance %s from %s (%s): %s (P %.3f)", key[:12], calling, syntax, answer.label, p
        )
        return status(0x0000)

    def _overlay(self, gray: np.ndarray, answer: Prediction) -> Any:
        from pneumonia.serving.explain import explain_gray, overlay_image  # loaded by __init__

        with self._cam_lock:  # one PyTorch network, one CAM at a time
            expl = explain_gray(self._network or self.bundle, gray, answer.path, "gradcam", answer)
        return overlay_image(expl, self.bundle.threshold)

    def _log(
        self, key: str, gray: np.ndarray, square: np.ndarray, a: Prediction, t0: float
    ) -> None:
        if self.predlog is not None:
            inputs = [(key, gray.shape[1], gray.shape[0])]
            self.predlog.append(answer_records(self.bundle, [a], square[None], inputs, t0))

    def stop(self) -> None:
        """Stop listening and delivering (queued results stay on disk), close the logs."""
        if self._server is not None:
            self._server.shutdown()
        self.outbox.close()
        self.batcher.close()
        if self.predlog is not None:
            self.predlog.close()
        self.journal.close()
