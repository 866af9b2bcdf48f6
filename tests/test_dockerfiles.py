"""The Dockerfiles, checked without a container engine (CI has none; docs/deployment.md says
how the images were built and run): their layers, their install steps replayed as wheel
builds, the api image's command on the shipped model, and every documented `docker run`."""

import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pneumonia.cli import app
from pneumonia.serving import serve as serve_module

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


@pytest.mark.slow
@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_the_source_layer_builds_the_source_not_the_placeholder(path: Path, tmp_path: Path) -> None:
    """Replays the two install steps, building wheels instead of installing: the first
    step's placeholder package must leave nothing behind that the second build reuses."""
    runs = [arg for op, arg in instructions(path) if op == "RUN" and "pip install" in arg]
    pip = f"{sys.executable} -m pip wheel --quiet --no-deps --no-build-isolation -w wheels"

    def replay(command: str) -> None:
        command = re.sub(r"(pip uninstall|python -c|chmod|useradd|chown) [^&]*", "true", command)
        command = re.sub(r"pip install [^&]*?\"?\.(\[\w+\])?\"?(?= |$)", pip + " .", command)
        subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)

    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    replay(runs[0])
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    replay(runs[1])
    (wheel,) = (tmp_path / "wheels").glob("pneumonia-*.whl")
    init = zipfile.ZipFile(wheel).read("pneumonia/__init__.py").decode()
    assert "__version__" in init  # a stale build/ gave the image an empty __init__.py


def test_api_image_serves_the_shipped_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    steps = dict(instructions(ROOT / "dockerfiles" / "api.Dockerfile"))
    assert json.loads(steps["ENTRYPOINT"]) == ["pneumonia"] and steps["EXPOSE"] == "8000"
    command = json.loads(steps["CMD"])
    assert command[0] == "serve" and "0.0.0.0" in command and "/health" in steps["HEALTHCHECK"]
    log_path = command[command.index("--log") + 1]
    assert Path(log_path).parent.as_posix() in json.loads(steps["VOLUME"])  # the log outlives
    command[command.index("--log") + 1] = str(tmp_path / "predictions.sqlite")  # not /app here
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(serve_module, "serve", lambda *args: calls.append(args))
    monkeypatch.delenv("PNEUMONIA_API_TOKEN", raising=False)
    refused = CliRunner().invoke(app, command)  # on every interface, without a token
    assert refused.exit_code == 1 and "PNEUMONIA_API_TOKEN" in refused.output and not calls
    token = "a-token-from-an-env-file-0123456789"
    monkeypatch.setenv("PNEUMONIA_API_TOKEN", token)  # as `docker run --env-file api.env`
    result = CliRunner().invoke(app, command)  # the image's command, on the shipped model
    assert result.exit_code == 0, result.output
    client = TestClient(calls[0][0])  # type: ignore[arg-type]
    health = client.get("/health").json()
    assert health["model_version"].startswith("efficientnet_lite0@")
    assert health["backend"] == "onnx"  # the float model (no int8 copy passed); no PyTorch
    assert calls[0][1:] == ("0.0.0.0", 8000)
    assert client.get("/status").status_code == 401
    status = client.get("/status", headers={"Authorization": f"Bearer {token}"}).json()
    assert status["prediction_log"]["path"] == str(tmp_path / "predictions.sqlite")


def test_the_api_image_is_the_inference_only_install() -> None:
    def first_install(name: str) -> str:
        steps = instructions(ROOT / "dockerfiles" / name)
        return next(arg for op, arg in steps if op == "RUN" and "pip install" in arg)

    assert "[" not in first_install("api.Dockerfile")  # no extras: ONNX Runtime, no PyTorch
    assert '".[train]"' in first_install("train.Dockerfile")


def documented_runs() -> list[tuple[str, list[str]]]:
    """(image, arguments) of every `docker run` shown in the deployment page and in the
    Dockerfiles' own comments, including runs through a shell function that wraps one."""
    texts = [(ROOT / "docs" / "deployment.md").read_text(), *(p.read_text() for p in DOCKERFILES)]
    lines = [
        ln.lstrip("# ") for text in texts for ln in re.sub(r"\\\n[#\s]*", " ", text).splitlines()
    ]
    runs: list[tuple[str, list[str]]] = []
    wrappers: dict[str, str] = {}
    for line in lines:
        tokens = shlex.split(line, comments=True) if "docker run" in line else []
        image = next((t for t in tokens if t in ("pneumonia-api", "pneumonia-train")), None)
        if image is None:
            continue
        after = [t.removesuffix(";") for t in tokens[tokens.index(image) + 1 :]]
        args = list(itertools.takewhile(lambda t: t not in {"", "}"}, after))
        if args == ["$@"]:
            wrappers[tokens[0].removesuffix("()")] = image
        else:
            runs.append((image, args))
    for line in lines:
        for part in line.split("&&"):
            words = part.split()
            if words and words[0] in wrappers:
                tokens = shlex.split(part, comments=True)
                runs.append((wrappers[tokens[0]], tokens[1:]))
    return runs


def test_documented_docker_runs_are_commands_of_the_entrypoint() -> None:
    runs = documented_runs()
    assert {image for image, _ in runs} == {"pneumonia-api", "pneumonia-train"}
    assert ("pneumonia-train", ["train"]) in runs
    for image, args in runs:
        if args:  # the entrypoint is `pneumonia`: what follows the image is its command
            result = CliRunner().invoke(app, [*args, "--help"])
            assert result.exit_code == 0, f"{image} {shlex.join(args)}: {result.output}"


def test_data_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv/", "work/", "runs/", "reports/", "mlruns.db"} <= set(ignored)
    assert "**/*.egg-info/" in ignored  # an editable install's src/pneumonia.egg-info too


def test_the_compose_file_runs_two_replicas_on_one_postgresql_log(
    monkeypatch: pytest.MonkeyPatch, postgres_server: str, tmp_path: Path
) -> None:
    """compose.yaml: two api replicas built from the api image, each logging to the `db`
    service's database (kept on a volume), started once it is healthy, their token and the
    database password in secret files (on no command line, in no environment value); the
    replicas' command and environment, with `db` pointed at the test server, serve and log
    there and answer only with the token."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    replicas = [name for name, s in services.items() if s.get("command", [""])[0] == "serve"]
    assert replicas == ["api1", "api2"]
    assert set(services) == {"db", "api1", "api2", "orthanc", "node"}
    ports = [services[r]["ports"][0] for r in replicas]
    assert all(p.startswith("127.0.0.1:") for p in ports) and len(set(ports)) == 2
    db = services["db"]
    volume = db["volumes"][0].split(":")
    assert volume[0] in compose["volumes"] and volume[1] == "/var/lib/postgresql/data"
    assert "pg_isready" in db["healthcheck"]["test"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "POSTGRES_PASSWORD" not in db["environment"]
    assert set(compose["secrets"]) == {"api_token", "db_password"}
    text = (ROOT / "compose.yaml").read_text()
    assert "password@" not in text.replace("user:password@", "") and "TOKEN=" not in text
    for name in replicas:
        service = services[name]
        env = service["environment"]
        assert service["build"]["dockerfile"] == "dockerfiles/api.Dockerfile"
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        assert set(service["secrets"]) == {"api_token", "db_password"}
        assert env["PNEUMONIA_TOKEN_FILE"] == "/run/secrets/api_token"
        assert env["PNEUMONIA_LOG_PASSWORD_FILE"] == "/run/secrets/db_password"
        assert (
            env["PNEUMONIA_LOG"]
            == f"postgresql://pneumonia@db:5432/{db['environment']['POSTGRES_DB']}"
        )
    # the replicas' command and environment, here against the test server instead of `db`
    token = "compose-token-0123456789abcdef"
    (tmp_path / "api_token").write_text(token + "\n")
    (tmp_path / "db_password").write_text("unused-with-trust-auth\n")
    env = services["api1"]["environment"]
    monkeypatch.setenv("PNEUMONIA_TOKEN_FILE", str(tmp_path / "api_token"))
    monkeypatch.setenv("PNEUMONIA_LOG", postgres_server)
    monkeypatch.setenv("PNEUMONIA_LOG_PASSWORD_FILE", str(tmp_path / "db_password"))
    monkeypatch.delenv("PNEUMONIA_API_TOKEN", raising=False)
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(serve_module, "serve", lambda *args: calls.append(args))
    result = CliRunner().invoke(app, [str(c) for c in services["api1"]["command"]])
    assert result.exit_code == 0, result.output
    assert "unused-with-trust-auth" not in result.output and token not in result.output
    with TestClient(calls[0][0]) as client:  # type: ignore[arg-type]
        assert client.get("/status").status_code == 401
        log = client.get("/status", headers={"Authorization": f"Bearer {token}"}).json()
    assert log["prediction_log"]["error"] is None
    assert log["prediction_log"]["path"].startswith("postgresql")
    assert env["PNEUMONIA_LOG"].startswith("postgresql://pneumonia@db")


LOCAL_ONLY = {"Name", "StorageDirectory", "IndexDirectory", "RemoteAccessAllowed",
              "DicomModalities", "LuaScripts"}  # fmt: skip


def test_the_compose_files_orthanc_routes_to_its_dicom_node() -> None:
    """compose.yaml's PACS side: Orthanc built from deploy/orthanc, whose config names the
    `node` service as the modality its Lua route sends CR/DX to, and the node sending its
    results back to Orthanc's DICOM port, accepting Orthanc alone (tests/pacs runs this
    Orthanc configuration against a real node)."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    config = json.loads((ROOT / "deploy" / "orthanc" / "orthanc.json").read_text())
    command = [str(c) for c in services["node"]["command"]]
    assert services["orthanc"]["build"]["context"] == "deploy/orthanc"
    assert all(p.startswith("127.0.0.1:") for p in services["orthanc"]["ports"])
    aet, host, port = config["DicomModalities"]["pneumonia"]
    assert (host, str(port)) == ("node", command[command.index("--port") + 1])
    assert command[command.index("--ae-title") + 1] == aet
    assert command[command.index("--allow") + 1] == config["DicomAet"]
    assert (
        command[command.index("--store-to") + 1]
        == f"{config['DicomAet']}@orthanc:{config['DicomPort']}"
    )
    assert "/modalities/pneumonia/store" in (ROOT / "deploy" / "orthanc" / "route.lua").read_text()
    local = json.loads((ROOT / "deploy" / "orthanc" / "local.json").read_text())
    assert local["DicomModalities"]["pneumonia"] == [aet, "127.0.0.1", int(port)]  # the host's
    assert local["RemoteAccessAllowed"] is False and local["StorageDirectory"].startswith(
        "../../work/"
    )
    assert {k: v for k, v in local.items() if k not in LOCAL_ONLY} == {
        k: v for k, v in config.items() if k not in LOCAL_ONLY
    }  # the same Orthanc otherwise
