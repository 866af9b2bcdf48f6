"""`pneumonia serve`: a FastAPI service around one bundle, loaded once, behind a door.

Routes: `GET /` (a web page: drop an X-ray, see probability, label and Grad-CAM; it asks for
the token and keeps it in the tab), `POST /predict` (one or many images), `POST /explain` (one
image -> PNG overlay), `GET /health` (minimal: up, which model, whether the log writes),
`GET /model` (the model card), `GET /status` (the prediction log's details) and
`/openapi.json`; `GET` routes answer `HEAD` too. There is no Swagger UI (it would load its
scripts from a CDN): read `/openapi.json` with a token, or docs/serving.md.

The door (`pneumonia.serving.security`): a bearer token on every route but `/health` and the
page's own files, an allowed-host and same-origin check, a body cap judged from
`Content-Length` and enforced while reading, and the browser security headers on every
answer. Uploads pass the same input door as every other command, under the byte, pixel and
decoded-byte budgets of `Limits` (`pneumonia.serving.uploads`). A bad request is answered
with a JSON error (400, 401, 403, 408, 413, 415, 422, 503), never a 500 with a traceback,
and the service stays up for the next request.

`/predict` runs on the bundle's backend (the int8 or float ONNX model by default), with
concurrent requests grouped into one network call (`pneumonia.serving.batching`). `/explain`
reports the same probability, label and guard verdict as `/predict` (the same call on the
same model); only its Grad-CAM comes from the PyTorch network, loaded at the first `/explain`
(an inference-only install answers 501).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pneumonia.core import __version__
from pneumonia.core.bundle import TRAIN_EXTRA
from pneumonia.core.bundle import model_version as version_of
from pneumonia.core.card import model_card
from pneumonia.inference.loading import Bundle, load_bundle
from pneumonia.inference.predictions import (
    Prediction,
    check_operating_point,
    prediction,
    score_squares,
)
from pneumonia.inference.runtime import lanes, torch_available
from pneumonia.monitoring.predlog import PredictionLog, answer_records
from pneumonia.serving.batching import Batching, MicroBatcher
from pneumonia.serving.predict import borderline_summary, guard_summary
from pneumonia.serving.problems import ERRORS, add_handlers, api_description, error
from pneumonia.serving.security import Door, Guarded
from pneumonia.serving.uploads import Decoder, Limits, UploadProblem

log = logging.getLogger(__name__)
SERVICE_METHODS = ("gradcam", "gradcam++")  # scorecam takes minutes on a CPU: CLI only
METHOD_PATTERN = f"^({'|'.join(re.escape(m) for m in SERVICE_METHODS)})$"
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}


def model_version(bundle: Bundle) -> str:
    """`<architecture>@<first 12 hex of the weights' sha256>`."""
    return version_of(bundle.meta)


@dataclass(frozen=True)
class Upload:
    """A decoded upload: where it sits in the answer, its square and what the log keeps."""

    index: int
    square: np.ndarray
    sha256: str
    width: int
    height: int


@dataclass
class Service:
    """What the routes share: the bundle, the decoder, the batcher and the prediction log."""

    bundle: Bundle
    decoder: Decoder
    batcher: MicroBatcher
    log: PredictionLog | None

    def decode(self, upload: UploadFile, index: int) -> tuple[str, np.ndarray, Upload]:
        """(file name, grayscale pixels, the upload as the network and the log see it)."""
        name, data = self.decoder.read(upload)
        gray = self.decoder.gray(name, data)
        square = self.bundle.contract.square(gray)
        digest = hashlib.sha256(data).hexdigest()
        return name, gray, Upload(index, square, digest, gray.shape[1], gray.shape[0])

    def answers(self, names: list[str], uploads: list[Upload]) -> list[Prediction]:
        """The bundle's answers for decoded uploads, through the micro-batcher."""
        scored = self.batcher.submit([u.square for u in uploads])
        return [
            prediction(self.bundle, name, float(p), float(score), float(viral))
            for name, (p, score, viral) in zip(names, scored, strict=True)
        ]

    def record(
        self, uploads: list[Upload], answers: list[Prediction], started: float, token: str | None
    ) -> None:
        """Append one log row per answered upload (a failed write is logged, not raised)."""
        if self.log is None:
            return
        squares = np.stack([u.square for u in uploads])
        inputs = [(u.sha256, u.width, u.height) for u in uploads]
        self.log.append(answer_records(self.bundle, answers, squares, inputs, started, token))

    def health(self) -> dict[str, Any]:
        """Up or not, which model on which backend, whether the log is writing: nothing else."""
        writing = None if self.log is None else self.log.status()["error"] is None
        return {
            "status": "ok",
            "model_version": model_version(self.bundle),
            "backend": self.bundle.backend,
            "prediction_log": "off" if writing is None else "writing" if writing else "failing",
        }


def _predict(service: Service, uploads: list[UploadFile], token: str | None) -> JSONResponse:
    started = time.perf_counter()
    limits = service.decoder.limits
    if not uploads:
        return error(422, "no file uploaded; send images as multipart field 'files'")
    if len(uploads) > limits.max_files:
        return error(413, f"{len(uploads)} files; at most {limits.max_files} per request")
    results: list[dict[str, Any]] = []
    good: list[Upload] = []
    names: list[str] = []
    problems: list[UploadProblem] = []
    for upload in uploads:
        try:
            name, _, decoded = service.decode(upload, len(results))
            good.append(decoded)
            names.append(name)
            results.append({"filename": name})
        except UploadProblem as p:
            problems.append(p)
            results.append({"filename": p.filename, "error": p.reason})
    if not good:
        first = problems[0]
        return error(first.status, f"{first.filename}: {first.reason}", results=results)
    answers = service.answers(names, good)
    for u, a in zip(good, answers, strict=True):
        results[u.index].update(
            probability=a.probability, label=a.label, in_distribution=a.in_distribution,
            ood_score=a.ood_score, subtype=a.subtype, subtype_probability=a.subtype_probability,
            borderline=a.borderline,
        )  # fmt: skip
    service.record(good, answers, started, token)
    bundle = service.bundle
    return JSONResponse(
        {
            "model_version": model_version(bundle),
            "threshold": bundle.threshold,
            "threshold_rule": bundle.meta.threshold.rule,
            "guard": guard_summary(bundle),
            "borderline": borderline_summary(bundle),
            "results": results,
        }
    )


class Explainer:
    """Grad-CAM for the service: the bundle's PyTorch network (loaded at first use when the
    service answers on ONNX Runtime), with the service's own answer beside it."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle if bundle.backend == "torch" else None
        self.path = bundle.path
        self._lock = threading.Lock()

    def network(self) -> Bundle:
        with self._lock:
            if self.bundle is None:
                if not torch_available():
                    raise StarletteHTTPException(
                        501,
                        "explanations need PyTorch (Grad-CAM), which this inference-only "
                        f"install lacks; {TRAIN_EXTRA}",
                    )
                self.bundle = load_bundle(self.path, "torch")
            return self.bundle

    def __call__(self, service: Service, upload: UploadFile, method: str) -> Response:
        name, gray, decoded = service.decode(upload, 0)
        network = self.network()
        answer = service.answers([name], [decoded])[0]
        from pneumonia.serving.explain import explain_gray, overlay_png

        expl = explain_gray(network, gray, name, method, answer)
        headers = {
            "X-Probability": f"{answer.probability:.6f}",
            "X-Label": str(answer.label),
            "X-In-Distribution": str(answer.in_distribution).lower(),
            "X-OOD-Score": "" if answer.ood_score is None else f"{answer.ood_score:.4f}",
            "X-Borderline": "" if answer.borderline is None else str(answer.borderline).lower(),
            "X-Model-Version": model_version(service.bundle),
        }
        png = overlay_png(expl, service.bundle.threshold)
        return Response(png, media_type="image/png", headers=headers)


def create_app(
    bundle: Bundle,
    limits: Limits | None = None,
    batching: Batching | None = None,
    log_path: str | Path | None = None,
    door: Door | None = None,
) -> FastAPI:
    """The service for `bundle` (loaded by the caller, once, on the backend `/predict` runs
    on); requests are micro-batched as `batching` says; with `log_path`, every prediction is
    appended to that prediction log (a SQLite path or a PostgreSQL URL). `door` says who may
    call (default: anyone, any host: for tests and code that puts its own door in front)."""
    limits = limits or Limits()
    door = door or Door(anonymous=True, max_body_bytes=limits.max_body_bytes)
    check_operating_point(bundle)
    batcher = MicroBatcher(
        lambda squares: score_squares(bundle, squares), batching, lanes(bundle.model)
    )
    service = Service(
        bundle, Decoder(limits), batcher, PredictionLog(log_path) if log_path else None
    )
    explainer = Explainer(bundle)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()
        if service.log is not None:
            service.log.close()

    app = FastAPI(
        title="pneumonia",
        version=__version__,
        description=api_description(limits),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.state.service = service
    app.state.door = door
    add_handlers(app)
    _routes(app, service, explainer)
    app.add_middleware(Guarded, door=door)
    return app


def _routes(app: FastAPI, service: Service, explainer: Explainer) -> None:
    bundle = service.bundle
    web = files("pneumonia").joinpath("web")
    page = web.joinpath("index.html").read_text(encoding="utf-8")
    static = {name: web.joinpath(name).read_bytes() for name in STATIC}

    @app.api_route(
        "/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in static:
            return error(404, f"no file {name!r} here")
        return Response(static[name], media_type=STATIC[name])

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: up, which model on which backend, whether the prediction log is
        writing. No path, host, user or secret: `GET /status` (with a token) has the details."""
        return service.health()

    @app.get("/status", responses=ERRORS)
    def status() -> dict[str, Any]:
        """The prediction log's details (where, rows written and lost, the last error) and
        the service's limits."""
        return {
            **service.health(),
            "version": __version__,
            "guard": guard_summary(bundle)["active"],
            "prediction_log": service.log.status() if service.log else None,
            "limits": service.decoder.limits.__dict__,
        }

    @app.get("/model", responses=ERRORS)
    def model() -> dict[str, Any]:
        """The model card (markdown) and the facts a client needs."""
        meta = bundle.meta
        return {
            "model_version": model_version(bundle),
            "backend": bundle.backend,
            "architecture": meta.architecture.name,
            "labels": list(meta.labels),
            "threshold": meta.threshold.value,
            "threshold_rule": meta.threshold.rule,
            "guard": guard_summary(bundle),
            "preprocessing": meta.preprocessing.describe(),
            "validation": meta.validation,
            "card": model_card(meta),
        }

    for path, endpoint in (("/health", health), ("/model", model), ("/status", status)):  # HEAD
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)

    @app.post("/predict", responses=ERRORS)
    def predict(
        request: Request, files: Annotated[list[UploadFile], File(min_length=1)]
    ) -> JSONResponse:
        """P(PNEUMONIA), label and the guard's verdict (`in_distribution`, `ood_score`) for
        each uploaded image (multipart field `files`)."""
        return _predict(service, files, request.scope.get("state", {}).get("token_id"))

    @app.post("/explain", response_class=Response, responses=ERRORS)
    def explain(
        file: Annotated[UploadFile, File()],
        method: Annotated[str, Query(pattern=METHOD_PATTERN)] = "gradcam",
    ) -> Response:
        """Grad-CAM overlay (PNG) beside the original, with `/predict`'s own probability,
        label and guard verdict in its X- headers: a qualitative aid, not a diagnosis."""
        return explainer(service, file, method)


def serve(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8000, header_timeout: float = 10.0
) -> None:
    """Run an app from `create_app` with uvicorn until interrupted: no server banner, idle
    keep-alive connections closed after 5 s, headers that take longer than `header_timeout`
    to arrive closed (`security.header_deadline_protocol`)."""
    import uvicorn

    from pneumonia.serving.security import header_deadline_protocol

    uvicorn.run(
        app, host=host, port=port, log_level="info", access_log=False, server_header=False,
        timeout_keep_alive=5, http=header_deadline_protocol(header_timeout),
    )  # fmt: skip
