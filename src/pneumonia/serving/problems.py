"""How the service says no: one JSON error body, the documented statuses, the handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pneumonia.data.formats import ALLOWED
from pneumonia.serving.batching import Overloaded
from pneumonia.serving.uploads import Limits, UploadProblem

log = logging.getLogger(__name__)
FORMATS = f"{', '.join(ALLOWED[:-1])} or {ALLOWED[-1]}"  # what the door reads (data.formats)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": {"error": text}}}}
    for code, text in (
        (401, "no token, or a wrong one: send Authorization: Bearer <token>"),
        (403, "a cross-site request (its Origin is not this service)"),
        (408, "the request body stalled"),
        (413, "a file, a request or an image over its limit"),
        (415, f"not a {FORMATS} image, or an unreadable one"),
        (422, "a malformed request (no file, wrong field)"),
        (503, "too many requests waiting; retry after Retry-After seconds"),
    )
}


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """The JSON error body every refusal has: {"error": message, ...}."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def add_handlers(app: FastAPI) -> None:
    """Every refusal as the same JSON body, with the headers its status needs."""

    @app.exception_handler(UploadProblem)
    def upload_problem(_: Request, exc: UploadProblem) -> JSONResponse:
        return error(exc.status, f"{exc.filename}: {exc.reason}")

    @app.exception_handler(Overloaded)
    def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        response = error(503, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return error(422, "; ".join(where) or "malformed request")

    @app.exception_handler(StarletteHTTPException)
    def http_problem(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # 405's Allow, 401's WWW-Authenticate
        return response

    @app.exception_handler(Exception)
    def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return error(500, f"internal error ({type(exc).__name__}); the service is still up")


def api_description(limits: Limits) -> str:
    """The API docs' front matter: what the service is, who may call it, what it takes."""
    return (
        "Pediatric chest X-ray NORMAL vs PNEUMONIA. A research tool, not a medical device.\n\n"
        "Every route but `GET /health` (and the web page's own files) needs "
        "`Authorization: Bearer <token>` when the service has tokens.\n\n"
        f"Limits: {limits.max_files} files a request; {limits.max_body_bytes:,} bytes a "
        f"request (refused from Content-Length, before reading); {limits.max_bytes:,} bytes a "
        f"file; {limits.max_pixels:,} decoded pixels and {limits.max_decoded_bytes:,} decoded "
        f"bytes an image, judged from its header before decoding; {limits.decode_slots} "
        f"images decoded at once. Formats: {FORMATS} (a TIFF of one page), recognised by "
        "their first bytes; any other is 415."
    )
