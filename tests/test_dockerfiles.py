"""The Dockerfiles, read as text: this machine has no Docker engine to build them (see
docs/deployment.md), so the tests check what can be checked without one."""

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pneumonia import serve as serve_module
from pneumonia.cli import app

ROOT = Path(__file__).parents[1]
DOCKERFILES = sorted((ROOT / "dockerfiles").glob("*.Dockerfile"))


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_both_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == ["api.Dockerfile", "train.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_dependencies_are_a_cached_layer_before_the_source(path: Path) -> None:
    steps = instructions(path)
    base = next(arg for op, arg in steps if op == "FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base)  # pinned, same Python as CI
    copies = [i for i, (op, arg) in enumerate(steps) if op == "COPY"]
    first_copy = steps[copies[0]][1]
    assert first_copy.split()[:-1] == ["pyproject.toml", "README.md"]
    deps = next(i for i, (op, arg) in enumerate(steps) if op == "RUN" and "pip install" in arg)
    source = next(i for i, (op, arg) in enumerate(steps) if op == "COPY" and arg.startswith("src"))
    assert copies[0] < deps < source
    assert any(op == "USER" and arg != "root" for op, arg in steps[source:])


def test_api_image_serves_the_shipped_model(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = dict(instructions(ROOT / "dockerfiles" / "api.Dockerfile"))
    assert json.loads(steps["ENTRYPOINT"]) == ["pneumonia"] and steps["EXPOSE"] == "8000"
    command = json.loads(steps["CMD"])
    assert command[0] == "serve" and "0.0.0.0" in command and "/health" in steps["HEALTHCHECK"]
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(serve_module, "serve", lambda *args: calls.append(args))
    result = CliRunner().invoke(app, command)  # the image's command, on the shipped model
    assert result.exit_code == 0, result.output
    health = TestClient(calls[0][0]).get("/health").json()  # type: ignore[arg-type]
    assert health["model_version"].startswith("efficientnet_lite0@")
    assert calls[0][1:] == ("0.0.0.0", 8000)


def test_data_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", "work/", "runs/", "reports/", "mlruns.db"} <= set(ignored)
