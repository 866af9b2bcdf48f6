"""export and serve as a user types them (the server itself: tests/serving/test_serve.py)."""

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import TinyRun, unguarded_copy
from pneumonia.cli import app
from pneumonia.serving import serve as serve_module

runner = CliRunner()


def invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_export_then_predict_on_onnx(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_run.bundle, bundle)
    assert invoke("export", bundle).exit_code == 2  # no format named
    result = invoke("export", bundle, "--onnx")
    assert result.exit_code == 0, result.output
    assert "max |P_onnx - P_torch|" in result.output and (bundle / "model.onnx").is_file()
    again = invoke("export", bundle, "--onnx")
    assert again.exit_code == 1 and "--force" in again.output

    image = next((tiny_run.data / "chest_xray" / "test" / "NORMAL").iterdir())
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        result = invoke("predict", bundle, image, "--backend", backend, "--out", out)
        assert result.exit_code == 0, result.output
        rows[backend] = json.loads((out / "predictions.json").read_text())["predictions"][0]
    assert rows["onnx"]["probability"] == pytest.approx(rows["torch"]["probability"], abs=1e-4)


def test_serve_wraps_the_service(
    tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(serve_module, "serve", lambda *args: calls.append(args))
    monkeypatch.chdir(tmp_path)  # the log's default path is relative: logs/predictions.sqlite
    result = invoke("serve", tiny_run.bundle, "--port", 8123)
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/" in result.output and calls[0][1:] == ("127.0.0.1", 8123)
    client = TestClient(calls[0][0], base_url="http://127.0.0.1:8123")  # type: ignore[arg-type]
    health = client.get("/health").json()
    assert health["model_version"].startswith("cnn_small@")
    assert health["prediction_log"] == "writing" and "path" not in str(health)
    assert client.get("/status").json()["prediction_log"]["path"] == "logs/predictions.sqlite"
    assert (tmp_path / "logs" / "predictions.sqlite").is_file()
    elsewhere = TestClient(calls[0][0], base_url="http://attacker.example")  # type: ignore[arg-type]
    assert elsewhere.get("/health").status_code == 400  # DNS rebinding: not a loopback name
    result = invoke("serve", tiny_run.bundle, "--no-log")
    assert result.exit_code == 0 and "prediction log: off" in result.output
    quiet = TestClient(calls[1][0], base_url="http://localhost")  # type: ignore[arg-type]
    assert quiet.get("/health").json()["prediction_log"] == "off"
    result = invoke("serve", tiny_run.bundle, "--backend", "onnx")
    assert result.exit_code == 1 and "pneumonia export" in result.output and len(calls) == 2


def test_serve_logs_to_postgresql_and_monitor_reads_it(
    tiny_run: TinyRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    """`serve --log postgresql://...` writes rows that `monitor postgresql://...` reads; a
    URL is never taken for a folder, a scheme it does not know is one line."""
    from pneumonia.monitoring.predlog import read_log

    image = next((tiny_run.data / "chest_xray" / "test" / "NORMAL").iterdir())

    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(serve_module, "serve", lambda *args: calls.append(args))
    monkeypatch.chdir(tmp_path)
    url = postgres_url.replace("pneumonia@", "pneumonia:hidden@", 1)  # trust: any password
    result = invoke("serve", tiny_run.bundle, "--log", url)
    assert result.exit_code == 0, result.output
    assert "prediction log: postgresql" in result.output and "hidden" not in result.output
    with TestClient(calls[0][0], base_url="http://localhost:8000") as client:  # type: ignore[arg-type]
        for _ in range(3):
            client.post("/predict", files={"files": (image.name, image.read_bytes())})
    assert len(read_log(postgres_url)) == 3 and list(tmp_path.iterdir()) == []
    result = invoke("monitor", postgres_url, "--bundle", tiny_run.bundle, "--out", tmp_path / "m")
    report = json.loads((tmp_path / "m" / "monitor.json").read_text())
    assert result.exit_code in (0, 3) and report["volume"]["predictions"] == 3
    result = runner.invoke(app, ["serve", str(tiny_run.bundle), "--log", "mysql://u@h/db"])
    assert result.exit_code == 1 and "a SQLite file path or a postgresql://" in result.output


def test_guard_command_on_a_bundle_without_one(tiny_run: TinyRun, tmp_path: Path) -> None:
    folder = unguarded_copy(tiny_run.bundle, tmp_path / "b")
    image = next((tiny_run.data / "chest_xray" / "test" / "NORMAL").iterdir())
    result = invoke("predict", folder, image, "--out", tmp_path / "p")
    assert result.exit_code == 0 and "has no out-of-distribution guard" in result.output
    assert "no guard" in result.output
    result = invoke("guard", folder, "--views", 1)
    assert result.exit_code == 0, result.output
    assert "guard: threshold" in result.output and "validation X-rays" in result.output
    assert "noise" in result.output and (folder / "guard.safetensors").is_file()
    assert invoke("guard", folder).exit_code == 1  # already guarded: --force to fit again
