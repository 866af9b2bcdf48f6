"""The web service through FastAPI's TestClient: every route, every bad input."""

import hashlib
import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.exc import OperationalError

from conftest import TinyRun, band, unguarded_copy
from pneumonia.data.synthetic import oversized_png, save_dicom, synthetic_xray
from pneumonia.inference.loading import load_bundle
from pneumonia.monitoring.predlog import read_log
from pneumonia.serving import serve as serve_module
from pneumonia.serving.serve import Limits, create_app, model_version


def png_bytes(mode: str = "L", size: tuple[int, int] = (60, 48)) -> bytes:
    gray = synthetic_xray("PNEUMONIA", size[1], size[0], np.random.default_rng(0))
    buffer = io.BytesIO()
    Image.fromarray(gray).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(tiny_run: TinyRun) -> TestClient:
    app = create_app(load_bundle(tiny_run.bundle), Limits(max_bytes=200_000, max_files=3))
    return TestClient(app, raise_server_exceptions=False)


def test_predict_one_image(client: TestClient, tiny_run: TinyRun) -> None:
    response = client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")})
    assert response.status_code == 200
    body = response.json()
    bundle = load_bundle(tiny_run.bundle)
    assert body["model_version"] == model_version(bundle) and body["threshold"] == bundle.threshold
    [result] = body["results"]
    assert 0 <= result["probability"] <= 1
    assert result["label"] == (
        "PNEUMONIA" if result["probability"] >= bundle.threshold else "NORMAL"
    )


def test_many_images_with_alpha_and_a_bad_one(client: TestClient) -> None:
    files = [
        ("files", ("rgba.png", png_bytes("RGBA"), "image/png")),
        ("files", ("notes.jpeg", b"this is text", "image/jpeg")),
        ("files", ("gray.png", png_bytes("L"), "image/png")),
    ]
    response = client.post("/predict", files=files)
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [r["filename"] for r in rows] == ["rgba.png", "notes.jpeg", "gray.png"]
    assert "not an image" in rows[1]["error"] and "probability" not in rows[1]
    assert rows[0]["probability"] == pytest.approx(rows[2]["probability"], abs=1e-6)


@pytest.mark.parametrize(
    ("name", "content", "status", "words"),
    [
        ("empty.png", b"", 415, "empty"),
        ("notes.jpeg", b"a text file", 415, "not an image"),
        ("cut.png", "TRUNCATED", 415, "truncated"),
        ("huge.png", "HUGE", 413, "decompression bomb"),
        ("large.png", "LARGE", 413, "8000x8000 = 64,000,000 pixels, over the 25,000,000 limit"),
        ("big.png", b"\x00" * 200_001, 413, "200,000-byte limit"),
        ("report.dcm", "DICOM_NO_PIXELS", 415, "no pixel data"),
        ("junk.dcm", b"oops", 415, "not a DICOM file"),
    ],
)
def test_bad_uploads_get_json_errors_and_the_service_stays_up(
    client: TestClient, tmp_path: Path, name: str, content: object, status: int, words: str
) -> None:
    if content == "TRUNCATED":
        content = png_bytes(size=(200, 200))[:400]
    elif content == "HUGE":
        content = oversized_png()
    elif content == "LARGE":
        content = oversized_png(8000)
    elif content == "DICOM_NO_PIXELS":
        content = save_dicom(
            np.zeros((8, 8), np.uint16), tmp_path / name, with_pixels=False
        ).read_bytes()
    for route, field in (("/predict", "files"), ("/explain", "file")):
        response = client.post(route, files={field: (name, content, "application/octet-stream")})
        assert response.status_code == status, (route, response.text)
        assert words in response.json()["error"] and name in response.json()["error"]
    assert (
        client.post("/predict", files={"files": ("ok.png", png_bytes(), "image/png")}).status_code
        == 200
    )


def test_malformed_requests_are_422(client: TestClient) -> None:
    assert client.post("/predict").status_code == 422
    assert client.post("/predict", data={"files": "not a file"}).status_code == 422
    response = client.post(
        "/explain?method=scorecam", files={"file": ("x.png", png_bytes(), "image/png")}
    )
    assert response.status_code == 422 and "error" in response.json()
    too_many = [("files", (f"{i}.png", png_bytes(), "image/png")) for i in range(4)]
    assert client.post("/predict", files=too_many).status_code == 413


def test_explain_returns_a_png_overlay(client: TestClient, tmp_path: Path) -> None:
    dicom = save_dicom(np.tile(np.arange(64, dtype=np.uint16) * 60, (40, 1)), tmp_path / "a.dcm")
    for name, content in (("x.png", png_bytes()), ("a.dcm", dicom.read_bytes())):
        response = client.post(
            "/explain?method=gradcam%2B%2B", files={"file": (name, content, "x")}
        )
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        picture = Image.open(io.BytesIO(response.content))
        assert picture.width == 2 * (60 if name == "x.png" else 64)
        assert 0 <= float(response.headers["x-probability"]) <= 1


def test_health_model_page_and_openapi(client: TestClient, tiny_run: TinyRun) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_version"].startswith("cnn_small@")
    model = client.get("/model").json()
    assert model["labels"] == ["NORMAL", "PNEUMONIA"] and "# Model card" in model["card"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/explain", "/health", "/model"} <= set(paths)
    assert client.get("/nowhere").json()["error"] == "Not Found"


def test_an_unexpected_failure_is_a_json_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(serve_module, "score_squares", broken)
    response = client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")})
    assert response.status_code == 500 and "still up" in response.json()["error"]
    assert "Traceback" not in response.text
    monkeypatch.undo()
    assert (
        client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")}).status_code
        == 200
    )


def test_onnx_backend_answers_like_torch(client: TestClient, exported: Path) -> None:
    onnx_client = TestClient(create_app(load_bundle(exported, "onnx")))
    upload = {"files": ("x.png", png_bytes(), "image/png")}
    on_onnx = onnx_client.post("/predict", files=upload).json()["results"][0]["probability"]
    on_torch = client.post("/predict", files=upload).json()["results"][0]["probability"]
    assert on_onnx == pytest.approx(on_torch, abs=1e-4)
    assert onnx_client.get("/model").json()["backend"] == "onnx"


def test_answers_carry_the_guard_and_are_logged(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_run.bundle)
    assert bundle.guard is not None  # training fits it
    app = create_app(bundle, log_path=tmp_path / "log.sqlite")
    with TestClient(app) as client:
        files = [
            ("files", ("a.png", png_bytes(), "image/png")),
            ("files", ("b.txt", b"x", "text/plain")),
        ]
        body = client.post("/predict", files=files).json()
        assert (
            body["guard"]["active"] is True and body["guard"]["threshold"] == bundle.guard.threshold
        )
        assert "layout check" in body["guard"]["score"]  # training fits one: the reader is told
        good = body["results"][0]
        assert good["in_distribution"] == (good["ood_score"] <= bundle.guard.threshold)
        assert client.get("/status").json()["prediction_log"]["written"] == 1  # not the bad one
    [row] = read_log(tmp_path / "log.sqlite")
    assert row.sha256 == hashlib.sha256(png_bytes()).hexdigest() and (row.width, row.height) == (
        60,
        48,
    )
    assert row.probability == good["probability"] and row.ood_score == good["ood_score"]
    assert row.model == model_version(bundle) and row.backend == "torch" and row.latency_ms > 0
    assert 0 < row.brightness < 1 and 0 < row.contrast < 1
    assert row.subtype is None and row.subtype_probability is None  # no subtype head
    assert row.borderline is None  # the bundle records no band


def test_a_dicom_header_never_reaches_the_log(tiny_run: TinyRun, tmp_path: Path) -> None:
    dcm = save_dicom(np.full((40, 50), 900, np.uint16), tmp_path / "x.dcm")
    app = create_app(load_bundle(tiny_run.bundle), log_path=tmp_path / "log.sqlite")
    with TestClient(app) as client:
        assert (
            client.post("/predict", files={"files": ("x.dcm", dcm.read_bytes())}).status_code == 200
        )
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("log.sqlite*"))
    assert len(read_log(tmp_path / "log.sqlite")) == 1
    for secret in (b"SECRET-ID-4711", b"Doe^Jane", b"20200101", b"x.dcm"):
        assert secret not in raw


def test_the_service_answers_while_the_log_cannot_be_written(
    tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(load_bundle(tiny_run.bundle), log_path=tmp_path / "log.sqlite")
    full = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    def fail() -> None:
        raise full  # what SQLite raises when the disk is full

    log = app.state.service.log
    with TestClient(app) as client:
        monkeypatch.setattr(log._engine, "begin", fail)
        for _ in range(3):
            response = client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")})
            assert response.status_code == 200 and "probability" in response.json()["results"][0]
        assert client.get("/health").json()["prediction_log"] == "failing"
        status = client.get("/status").json()
        assert status["status"] == "ok" and status["prediction_log"]["lost"] == 3
        assert status["prediction_log"]["error"] == "database or disk is full"
        monkeypatch.undo()  # space freed
        client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")})
    assert len(read_log(tmp_path / "log.sqlite")) == 1


def test_replicas_log_to_one_postgresql_database(tiny_run: TinyRun, postgres_url: str) -> None:
    bundle = load_bundle(tiny_run.bundle)
    replicas = [create_app(bundle, log_path=postgres_url) for _ in range(2)]
    for app in replicas:
        with TestClient(app) as client:
            client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")})
            assert client.get("/status").json()["prediction_log"]["written"] == 1
    rows = read_log(postgres_url)
    assert len(rows) == 2 and {r.model for r in rows} == {model_version(bundle)}


def test_a_log_server_that_is_down_does_not_stop_the_service(tiny_run: TinyRun) -> None:
    app = create_app(load_bundle(tiny_run.bundle), log_path="postgresql://u:pw@127.0.0.1:1/db")
    with TestClient(app) as client:
        response = client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")})
        assert response.status_code == 200
        log = client.get("/status").json()["prediction_log"]
        assert log["lost"] == 1 and log["error"] and "pw" not in log["path"]


def test_a_bundle_without_a_guard_says_so(tiny_run: TinyRun, tmp_path: Path) -> None:
    folder = unguarded_copy(tiny_run.bundle, tmp_path / "b")
    with TestClient(create_app(load_bundle(folder))) as client:
        body = client.post("/predict", files={"files": ("x.png", png_bytes(), "image/png")}).json()
    assert body["guard"]["active"] is False and "no guard" in body["guard"]["reason"]
    assert (
        body["results"][0]["in_distribution"] is None
        and 0 <= body["results"][0]["probability"] <= 1
    )


def test_answers_say_borderline_where_the_bundle_records_a_band(
    client: TestClient, tiny_run: TinyRun, tmp_path: Path
) -> None:
    import math
    import shutil

    files = {"files": ("x.png", png_bytes(), "image/png")}
    plain = client.post("/predict", files=files).json()
    assert plain["borderline"]["active"] is False and plain["results"][0]["borderline"] is None
    p, t = plain["results"][0]["probability"], plain["threshold"]
    gap = abs(math.log(p / (1 - p)) - math.log(t / (1 - t)))
    folder = band(shutil.copytree(tiny_run.bundle, tmp_path / "banded"), gap + 0.01)
    with TestClient(create_app(load_bundle(folder), log_path=tmp_path / "log.sqlite")) as banded:
        body = banded.post("/predict", files=files).json()
        cam = banded.post("/explain", files={"file": ("x.png", png_bytes(), "image/png")})
    [row] = read_log(tmp_path / "log.sqlite")  # the log keeps the verdict, and the backend
    assert row.borderline is True and row.backend == "torch"
    assert (
        body["results"][0]["borderline"] is True
        and body["results"][0]["label"] == (plain["results"][0]["label"])
    )
    assert body["borderline"]["low"] <= p < body["borderline"]["high"]
    assert "9 held-out pairs" in body["borderline"]["meaning"]
    assert cam.headers["x-borderline"] == "true"
