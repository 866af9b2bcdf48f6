"""The service's door: tokens, hosts and origins, body caps, bombs, formats, headers, timeouts."""

import asyncio
import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import TinyRun
from pneumonia.cli import app as cli_app
from pneumonia.core.errors import PneumoniaError
from pneumonia.data.synthetic import deflated_dicom, oversized_png, synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.monitoring.predlog import read_log
from pneumonia.serving.security import (
    CSP,
    TOKEN_ENV,
    Door,
    Guarded,
    Tokens,
    allowed_hosts,
    check_exposure,
    header_deadline_protocol,
    token_id,
)
from pneumonia.serving.serve import create_app

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png_bytes(side: int = 48) -> bytes:
    gray = synthetic_xray("PNEUMONIA", side, side + 12, np.random.default_rng(0))
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def guarded(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    log = tmp_path_factory.mktemp("log") / "log.sqlite"
    door = Door(tokens=Tokens((TOKEN,)), allowed_hosts=("testserver",))
    app = create_app(load_bundle(tiny_run.bundle), log_path=log, door=door)
    return TestClient(app, raise_server_exceptions=False)


def test_tokens_come_from_the_environment_and_a_file_and_short_ones_are_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens"
    path.write_text("# operators\n" + "a" * 20 + "\n\n" + "b" * 24 + "\n")
    tokens = Tokens.load(path, env="c" * 32 + ", " + "a" * 20)
    assert tokens.values == ("c" * 32, "a" * 20, "b" * 24)
    assert tokens.match("Bearer " + "b" * 24) == token_id("b" * 24)
    assert tokens.match("bearer " + "c" * 32) == token_id("c" * 32)
    assert tokens.match("Bearer " + "b" * 23) is None and tokens.match(None) is None
    assert tokens.match("Basic " + "b" * 24) is None
    with pytest.raises(PneumoniaError, match="a token of 5 characters") as info:
        Tokens.load(None, env="short")
    assert "short" not in str(info.value)
    with pytest.raises(PneumoniaError, match="cannot read the token file"):
        Tokens.load(tmp_path / "missing")


def test_every_route_but_health_needs_the_token(guarded: TestClient) -> None:
    files = {"files": ("x.png", png_bytes(), "image/png")}
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}):
        for method, route in (("post", "/predict"), ("post", "/explain"), ("get", "/model"),
                              ("get", "/openapi.json"), ("get", "/status")):  # fmt: skip
            kwargs: dict[str, Any] = {"headers": headers}
            if method == "post":
                kwargs["files"] = {"file" if route == "/explain" else "files": files["files"]}
            response = getattr(guarded, method)(route, **kwargs)
            assert response.status_code == 401, (route, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["error"] and TOKEN not in response.text
    assert guarded.get("/health").status_code == 200
    assert guarded.head("/health").status_code == 200
    assert guarded.get("/").status_code == 200 and guarded.get("/static/app.js").status_code == 200
    assert guarded.post("/predict", files=files, headers=AUTH).status_code == 200
    assert guarded.get("/openapi.json", headers=AUTH).status_code == 200


def test_the_log_names_the_token_by_its_id_never_the_token(guarded: TestClient) -> None:
    files = {"files": ("x.png", png_bytes(), "image/png")}
    assert guarded.post("/predict", files=files, headers=AUTH).status_code == 200
    status = guarded.get("/status", headers=AUTH).json()
    guarded.app.state.service.log.flush()  # type: ignore[attr-defined]
    rows = read_log(status["prediction_log"]["path"])
    assert rows and all(r.token_id == token_id(TOKEN) for r in rows)
    raw = Path(status["prediction_log"]["path"]).read_bytes()
    assert TOKEN.encode() not in raw


def test_health_says_no_path_host_user_or_secret(tiny_run: TinyRun) -> None:
    url = "postgresql://alice@127.0.0.1:1/db?password=S3cretPW"
    app = create_app(load_bundle(tiny_run.bundle), log_path=url)
    with TestClient(app) as client:
        health = client.get("/health")
        assert set(health.json()) == {"status", "model_version", "backend", "prediction_log"}
        for secret in ("S3cretPW", "alice", "127.0.0.1", "db"):
            assert secret not in json.dumps(health.json()["prediction_log"])
        assert "S3cretPW" not in client.get("/status").text


def test_cross_site_requests_and_foreign_hosts_are_refused(guarded: TestClient) -> None:
    files = {"files": ("x.png", png_bytes(), "image/png")}
    before = guarded.get("/status", headers=AUTH).json()["prediction_log"]["written"]
    forged = guarded.post(
        "/predict", files=files, headers={**AUTH, "Origin": "https://evil.example"}
    )
    assert forged.status_code == 403 and "cross-site" in forged.json()["error"]
    rebound = guarded.get("/health", headers={"Host": "evil.example"})
    assert rebound.status_code == 400
    same = guarded.post("/predict", files=files, headers={**AUTH, "Origin": "http://testserver"})
    assert same.status_code == 200
    after = guarded.get("/status", headers=AUTH).json()["prediction_log"]["written"]
    assert after == before + 1  # the forged request left no row


def test_exposed_without_a_token_refuses_to_start_naming_the_fix(
    tiny_run: TinyRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PneumoniaError, match=f"set {TOKEN_ENV}.*--token-file.*--allow-anonymous"):
        check_exposure("0.0.0.0", Tokens(), allow_anonymous=False)
    check_exposure("0.0.0.0", Tokens(), allow_anonymous=True)
    check_exposure("127.0.0.1", Tokens(), allow_anonymous=False)
    check_exposure("0.0.0.0", Tokens((TOKEN,)), allow_anonymous=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = CliRunner().invoke(cli_app, ["serve", str(tiny_run.bundle), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "--allow-anonymous" in result.output
    assert "Traceback" not in result.output
    assert allowed_hosts("127.0.0.1", []) == ("localhost", "127.0.0.1", "::1", "[::1]")
    assert allowed_hosts("0.0.0.0", []) is None
    assert allowed_hosts("0.0.0.0", ["xray.example:8000"]) == ("xray.example",)


def test_the_page_and_every_answer_carry_the_security_headers(guarded: TestClient) -> None:
    page = guarded.get("/")
    for response in (page, guarded.get("/health"), guarded.post("/predict")):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "server" not in response.headers or "uvicorn" not in response.headers["server"]
    assert "<script>" not in page.text and "<style>" not in page.text and "style=" not in page.text
    assert '<script src="static/app.js">' in page.text
    assert "sessionStorage" in guarded.get("/static/app.js").text
    assert guarded.get("/docs").status_code in (401, 404)  # no Swagger UI from a CDN


def test_405_says_what_is_allowed(guarded: TestClient) -> None:
    response = guarded.delete("/health", headers=AUTH)
    assert response.status_code == 405 and "GET" in response.headers["allow"]


def test_a_declared_huge_body_is_refused_before_it_is_read() -> None:
    reads = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never reached
        raise AssertionError("the app ran")

    async def receive() -> dict[str, Any]:
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"testserver"), (b"content-length", str(1 << 30).encode())]
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}
    started = time.perf_counter()
    asyncio.run(Guarded(app, Door(anonymous=True, max_body_bytes=1 << 20))(scope, receive, send))
    assert sent[0]["status"] == 413 and not reads and time.perf_counter() - started < 1
    assert b"1073741824 bytes" in sent[1]["body"]


def test_a_growing_or_stalled_body_is_stopped(tiny_run: TinyRun) -> None:
    app = create_app(
        load_bundle(tiny_run.bundle), door=Door(anonymous=True, max_body_bytes=100_000)
    )
    with TestClient(app) as client:

        def chunks() -> Any:  # no Content-Length: chunked, past the cap
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
            for _ in range(40):
                yield b"x" * 10_000

        response = client.post(
            "/predict",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 413 and "100,000-byte limit" in response.json()["error"]

    async def stalled() -> dict[str, Any]:
        await asyncio.sleep(5)
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    door = Door(anonymous=True, body_timeout=0.1)
    guarded = Guarded(app, door)
    headers = [(b"host", b"testserver"), (b"content-type", b"multipart/form-data; boundary=b")]
    scope = {"type": "http", "method": "POST", "path": "/predict", "query_string": b"",
             "headers": headers}  # fmt: skip
    asyncio.run(guarded(scope, stalled, send))
    assert sent[0]["status"] == 408


def test_small_bombs_and_foreign_formats_are_refused(guarded: TestClient) -> None:
    from pydicom import dcmread

    from pneumonia.data.renderings import dicom_bytes

    ds = dcmread(io.BytesIO(dicom_bytes(np.zeros((4, 4), np.uint16), "MONOCHROME2", 16)))
    ds.Rows = ds.Columns = 7000
    big = io.BytesIO()
    ds.save_as(big, enforce_file_format=True)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    gif = io.BytesIO()
    Image.new("L", (8, 8)).save(gif, "GIF")
    cases = [
        ("deflated.dcm", deflated_dicom(8192), 413, "inflates to over"),
        ("big.dcm", big.getvalue(), 413, "7000x7000"),
        ("rgba.png", oversized_png(7070, color_type=6), 413, "7070x7070"),
        ("a.eps", eps, 415, "JPEG, PNG, DICOM, TIFF, BMP"),
        ("a.gif", gif.getvalue(), 415, "a GIF file"),
    ]
    for name, data, status, words in cases:
        started = time.perf_counter()
        response = guarded.post("/predict", files={"files": (name, data)}, headers=AUTH)
        assert response.status_code == status and words in response.json()["error"], name
        assert "Ghostscript" not in response.text and " at 0x" not in response.text
        assert time.perf_counter() - started < 2, name  # refused from the header, not decoded


def test_explain_reports_what_predict_reports(tiny_run: TinyRun, exported: Path) -> None:
    app = create_app(load_bundle(exported, "onnx"))  # /predict on ONNX Runtime, CAM on PyTorch
    with TestClient(app) as client:
        data = png_bytes(64)
        answer = client.post("/predict", files={"files": ("x.png", data)}).json()["results"][0]
        overlay = client.post("/explain", files={"file": ("x.png", data)})
    assert overlay.status_code == 200
    assert float(overlay.headers["x-probability"]) == pytest.approx(answer["probability"], abs=1e-6)
    assert overlay.headers["x-label"] == answer["label"]
    assert overlay.headers["x-in-distribution"] == str(answer["in_distribution"]).lower()


def test_headers_that_never_finish_arriving_close_the_connection(tiny_run: TinyRun) -> None:
    import uvicorn

    app = create_app(load_bundle(tiny_run.bundle))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                            http=header_deadline_protocol(0.5), server_header=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")  # never ends
            conn.settimeout(10)
            started = time.monotonic()
            assert conn.recv(1024) == b""  # closed by the server, not by the 10 s timeout
            assert time.monotonic() - started < 10
        with socket.create_connection(("127.0.0.1", port)) as conn:  # a whole request: answered
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            conn.settimeout(10)
            reply = conn.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200") and b"server: uvicorn" not in reply.lower()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_file_names_are_shown_trimmed_and_without_control_characters() -> None:
    from pneumonia.serving.uploads import shown_name

    assert shown_name("../../etc/passwd") == "passwd"
    assert shown_name("C:\\scans\\x.png") == "x.png"
    assert shown_name("a\x1b[31mred\n.png") == "a?[31mred?.png"
    assert shown_name(None) == "upload" and len(shown_name("n" * 500)) == 120
