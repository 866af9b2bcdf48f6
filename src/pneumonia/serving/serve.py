"""`pneumonia serve`: a FastAPI service around one bundle, loaded once.

Routes: `GET /` (a web page: drop an X-ray, see probability, label and Grad-CAM), `POST
/predict` (one or many images), `POST /explain` (one image -> PNG overlay), `GET /health`,
`GET /model` (the model card), and FastAPI's `/openapi.json` and `/docs`. Uploads pass the same
input door as every other command, capped in bytes and in decoded pixels. A bad upload is
answered with a JSON error (413 too large, 415 not a readable image, 422 a malformed request),
never a 500 with a traceback, and the service stays up for the next request.

`/predict` runs on the bundle's backend (ONNX Runtime by default), with concurrent requests
grouped into one network call (`pneumonia.serving.batching`); when the queue of waiting requests is
full the answer is 503 with Retry-After. `/explain` needs PyTorch (Grad-CAM): a bundle served
on ONNX Runtime loads its PyTorch network at the first `/explain`, and an inference-only
install answers 501.
"""

from __future__ import annotations

import hashlib
import logging
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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pneumonia.core import __version__
from pneumonia.core.bundle import TRAIN_EXTRA, Bundle
from pneumonia.core.bundle import model_version as version_of
from pneumonia.core.card import model_card
from pneumonia.core.errors import ImageError, ImageTooLargeError
from pneumonia.core.preprocess import square_stats
from pneumonia.data.image_io import decode_image
from pneumonia.modeling.inference import check_operating_point, prediction, score_squares
from pneumonia.modeling.loading import load_bundle
from pneumonia.modeling.runtime import lanes, torch_available
from pneumonia.monitoring.predlog import PredictionLog, Record, now
from pneumonia.serving.batching import Batching, MicroBatcher, Overloaded
from pneumonia.serving.predict import guard_summary

log = logging.getLogger(__name__)
SERVICE_METHODS = ("gradcam", "gradcam++")  # scorecam takes minutes on a CPU: CLI only


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_bytes: int = 32 * 1024 * 1024  # per file
    max_pixels: int = 50_000_000  # decoded width x height, checked before decoding
    max_files: int = 32


class UploadProblem(Exception):  # noqa: N818 - answered as an HTTP error, not raised to users
    """An upload that gets a JSON error with `status`."""

    def __init__(self, status: int, filename: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.filename, self.reason = status, filename, reason


def model_version(bundle: Bundle) -> str:
    """`<architecture>@<first 12 hex of the weights' sha256>`."""
    return version_of(bundle.meta)


def _read(upload: UploadFile, limits: Limits) -> tuple[str, bytes]:
    name = upload.filename or "upload"
    data = upload.file.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise UploadProblem(413, name, f"file is over the {limits.max_bytes:,}-byte limit")
    return name, data


def _gray(name: str, data: bytes, limits: Limits) -> np.ndarray:
    try:
        return decode_image(data, name, limits.max_pixels).pixels
    except ImageTooLargeError as exc:
        raise UploadProblem(413, name, exc.reason) from None
    except ImageError as exc:
        raise UploadProblem(415, name, exc.reason) from None


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


@dataclass(frozen=True)
class Upload:
    """A decoded upload: where it sits in the answer, its square and what the log keeps."""

    index: int
    square: np.ndarray
    sha256: str
    width: int
    height: int


def _predict(
    service: Service, uploads: list[UploadFile], limits: Limits, started: float
) -> JSONResponse:
    if not uploads:
        return _error(422, "no file uploaded; send images as multipart field 'files'")
    if len(uploads) > limits.max_files:
        return _error(413, f"{len(uploads)} files; at most {limits.max_files} per request")
    bundle = service.bundle
    results: list[dict[str, Any]] = []
    good: list[Upload] = []
    problems: list[UploadProblem] = []
    for upload in uploads:
        try:
            name, data = _read(upload, limits)
            gray = _gray(name, data, limits)
            square = bundle.contract.square(gray)
            digest = hashlib.sha256(data).hexdigest()
            good.append(Upload(len(results), square, digest, gray.shape[1], gray.shape[0]))
            results.append({"filename": name})
        except UploadProblem as p:
            problems.append(p)
            results.append({"filename": p.filename, "error": p.reason})
    if not good:
        first = problems[0]
        return _error(first.status, f"{first.filename}: {first.reason}", results=results)
    scored = service.batcher.submit([u.square for u in good])
    for u, (prob, score, viral) in zip(good, scored, strict=True):
        name = results[u.index]["filename"]
        answer = prediction(bundle, name, float(prob), float(score), float(viral))
        results[u.index].update(
            probability=answer.probability,
            label=answer.label,
            in_distribution=answer.in_distribution,
            ood_score=answer.ood_score,
            subtype=answer.subtype,
            subtype_probability=answer.subtype_probability,
        )
    service.record(good, results, started)
    return JSONResponse(
        {
            "model_version": model_version(bundle),
            "threshold": bundle.threshold,
            "threshold_rule": bundle.meta.threshold.rule,
            "guard": guard_summary(bundle),
            "results": results,
        }
    )


@dataclass
class Service:
    """What the routes share: the bundle, the batcher and the prediction log (or None)."""

    bundle: Bundle
    batcher: MicroBatcher
    log: PredictionLog | None

    def record(self, uploads: list[Upload], results: list[dict[str, Any]], started: float) -> None:
        """Append one log row per answered upload (a failed write is logged, not raised)."""
        if self.log is None:
            return
        latency = round(1000 * (time.perf_counter() - started), 2)
        version, when = model_version(self.bundle), now()
        stats = square_stats(np.stack([u.square for u in uploads]))
        rows = []
        for k, u in enumerate(uploads):
            r = results[u.index]
            rows.append(
                Record(
                    when, u.sha256, u.width, u.height, round(float(stats["brightness"][k]), 6),
                    round(float(stats["contrast"][k]), 6), version, self.bundle.backend,
                    r["probability"], r["label"], r["in_distribution"], r["ood_score"], latency,
                    r["subtype"], r["subtype_probability"],
                )
            )  # fmt: skip
        self.log.append(rows)


class Explainer:
    """Grad-CAM for the service: the bundle's PyTorch network, loaded at first use when the
    service answers on ONNX Runtime."""

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

    def __call__(self, upload: UploadFile, method: str, limits: Limits) -> Response:
        name, data = _read(upload, limits)
        gray = _gray(name, data, limits)
        bundle = self.network()
        from pneumonia.serving.explain import explain_gray, overlay_png

        expl = explain_gray(bundle, gray, name, method)
        headers = {
            "X-Probability": f"{expl.probability:.6f}",
            "X-Label": expl.label,
            "X-In-Distribution": str(expl.in_distribution).lower(),
            "X-OOD-Score": "" if expl.ood_score is None else f"{expl.ood_score:.4f}",
            "X-Model-Version": model_version(bundle),
        }
        return Response(
            overlay_png(expl, bundle.threshold), media_type="image/png", headers=headers
        )


def create_app(
    bundle: Bundle,
    limits: Limits | None = None,
    batching: Batching | None = None,
    log_path: str | Path | None = None,
) -> FastAPI:
    """The service for `bundle` (loaded by the caller, once, on the backend `/predict` runs
    on); requests are micro-batched as `batching` says; with `log_path`, every prediction is
    appended to that prediction log (a SQLite path or a PostgreSQL URL)."""
    limits = limits or Limits()
    check_operating_point(bundle)
    batcher = MicroBatcher(
        lambda squares: score_squares(bundle, squares), batching, lanes(bundle.model)
    )
    service = Service(bundle, batcher, PredictionLog(log_path) if log_path else None)
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
        description="Pediatric chest X-ray NORMAL vs PNEUMONIA. A research tool, not a "
        "medical device.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.service = service
    page = files("pneumonia").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.exception_handler(UploadProblem)
    def upload_problem(_: Request, exc: UploadProblem) -> JSONResponse:
        return _error(exc.status, f"{exc.filename}: {exc.reason}")

    @app.exception_handler(Overloaded)
    def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        response = _error(503, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(where) or "malformed request")

    @app.exception_handler(StarletteHTTPException)
    def http_problem(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return _error(500, f"internal error ({type(exc).__name__}); the service is still up")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and which model answers."""
        return {
            "status": "ok",
            "model_version": model_version(bundle),
            "backend": bundle.backend,
            "version": __version__,
            "guard": guard_summary(bundle)["active"],
            "prediction_log": service.log.status() if service.log else None,
        }

    @app.get("/model")
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

    @app.post("/predict")
    def predict(files: Annotated[list[UploadFile], File()]) -> JSONResponse:
        """P(PNEUMONIA), label and the guard's verdict (`in_distribution`, `ood_score`) for
        each uploaded image (multipart field `files`)."""
        return _predict(service, files, limits, time.perf_counter())

    @app.post("/explain", response_class=Response)
    def explain(
        file: Annotated[UploadFile, File()],
        method: Annotated[str, Query(pattern="^(gradcam|gradcam\\+\\+)$")] = "gradcam",
    ) -> Response:
        """Grad-CAM overlay (PNG) beside the original: a qualitative aid, not a diagnosis."""
        return explainer(file, method, limits)

    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run an app from `create_app` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
