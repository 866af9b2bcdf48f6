"""Shared fixtures: synthetic datasets made in the test, and the real data when it is present."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# CLI output is read by the tests: a wide console, so temporary paths of any length are never
# wrapped or cut (rich reads COLUMNS when the CLI's consoles are created, at import)
os.environ["COLUMNS"] = "240"

from pneumonia.core.config import Config, load_config
from pneumonia.data.cache import prepare_cache
from pneumonia.data.split import Row, make_manifest, write_manifest
from pneumonia.data.synthetic import make_dataset
from pneumonia.inference.loading import load_bundle
from pneumonia.training.train import train

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PNEUMONIA_SHARED", REPO.parent / "shared"))
SHARED_TRAIN = SHARED / "data" / "chest_xray"


@pytest.fixture
def shared_chest_xray() -> Path:
    """The shared Kaggle training split; the test is skipped when it is absent."""
    if not (SHARED_TRAIN / "train").is_dir():
        pytest.skip(f"{SHARED_TRAIN} is absent")
    return SHARED_TRAIN


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll `condition` until it holds; fail, saying so, when `seconds` pass first (tests wait
    on events this way instead of sleeping a guessed time)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {seconds} s"
        time.sleep(0.005)


def tiny_config(tmp: Path, *overrides: str) -> Config:
    """The real default config, shrunk: small CNN, 32-pixel images, a few CPU batches."""
    return load_config(
        None,
        [
            f"data.manifest={tmp / 'manifest.csv'}",
            f"data.cache_dir={tmp / 'cache'}",
            "data.batch_size=16",
            "data.num_workers=0",
            "data.val_fraction=0.25",
            "preprocess.image_size=32",
            "model.name=cnn_small",
            "model.pretrained=false",
            "train.epochs=2",
            "train.freeze_epochs=0",
            "train.frozen_stages=0",
            "operating.rule=youden",
            "train.progress=false",
            f"train.out_dir={tmp / 'runs'}",
            "train.run_name=tiny",
            "tracking.enabled=false",
            "audit.file=null",  # no label audit; the tests of the audit make their own
            "train.export_onnx=false",  # a PyTorch bundle; the tests of the export make their own
            # the guard of earlier sessions' tiny runs (tests/training/test_guard_fit.py
            # fits one with rendered views): tests of site adaptation read its flag rate
            "guard.rendered_views=false",
            *overrides,
        ],
    )


def paired_config(tmp: Path, *overrides: str) -> Config:
    """`tiny_config` with `data.pairs` (other renderings in `tmp/originals`, see
    `write_originals`) and the consistency term on."""
    return tiny_config(
        tmp,
        f"data.pairs.originals={tmp / 'originals'}",
        "data.pairs.batch_size=4",
        "train.consistency=1.0",
        *overrides,
    )


def write_originals(rows: list[Row], folder: Path, change: float = 0.5) -> list[Row]:
    """Each row's image, twice as large and at another gamma, under its label and name: the
    other rendering `data.pairs` pairs with the cached copy."""
    from PIL import Image

    for r in rows:
        with Image.open(r.path) as img:
            gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
        big = Image.fromarray((255 * gray**change).round().astype(np.uint8))
        big = big.resize((2 * big.width, 2 * big.height), Image.Resampling.BICUBIC)
        (folder / r.label).mkdir(parents=True, exist_ok=True)
        big.save(folder / r.label / Path(r.path).name, quality=95)
    return rows


def prepare_tiny(tmp: Path, cfg: Config, seed: int = 0, subtypes: bool = False) -> Path:
    """A synthetic Kaggle-layout dataset, split and cached as `cfg` says; returns its root.
    With `subtypes`, PNEUMONIA images show the subtype their names give."""
    per = {"train": {"NORMAL": 24, "PNEUMONIA": 40}, "test": {"NORMAL": 8, "PNEUMONIA": 8}}
    root = make_dataset(
        tmp / "data", "kaggle", per, size_range=(32, 48), seed=seed, subtypes=subtypes
    )
    rows, _ = make_manifest(root, cfg.data.val_fraction, cfg.data.seed, workers=1, show=False)
    write_manifest(rows, cfg.data.manifest, force=True)
    prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, workers=1, show=False)
    return root


@dataclass
class TinyRun:
    """A model trained once per test session on synthetic data."""

    cfg: Config
    data: Path
    summary: dict[str, Any]

    @property
    def bundle(self) -> Path:
        return Path(self.summary["bundle"])


@pytest.fixture(scope="session", autouse=True)
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Runs that track without naming a store land in a temporary one, never in the repo."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlruns.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """Read-only: copy its bundle before changing it."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    cfg = tiny_config(tmp)
    root = prepare_tiny(tmp, cfg)
    return TinyRun(cfg, root, train(cfg, command="pytest"))


@pytest.fixture
def exported(tiny_run: TinyRun, tmp_path: Path) -> Path:
    """A copy of the tiny bundle with its model.onnx, for the test to change as it likes."""
    from pneumonia.modeling.export import export_onnx

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_run.bundle, folder)
    export_onnx(load_bundle(folder))
    return folder


def unguarded_copy(bundle: Path, folder: Path) -> Path:
    """A copy of `bundle` as bundles were before the out-of-distribution guard existed."""
    shutil.copytree(bundle, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["guard"] = None
    del meta["files"]["guard.safetensors"]
    (folder / "guard.safetensors").unlink()
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def band(folder: Path, logit: float = 1.0) -> Path:
    """`folder`'s bundle given a borderline band of `logit` (as `pneumonia pairs --record`
    would record one), in place."""
    meta = json.loads((folder / "model.json").read_text())
    meta["borderline"] = {
        "logit": logit, "quantile": 0.95, "pairs": 9, "renderings": ["original"],
        "measured_on": "test",
    }  # fmt: skip
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (initdb, pg_ctl), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Any:
    """A PostgreSQL server for the prediction log's tests: $PNEUMONIA_TEST_POSTGRES (a URL, as
    the GitHub workflow's service container gives), else a throwaway cluster started here
    from Debian's `postgresql` package (which `.ci/run` installs); skipped, with the reason,
    when neither is there."""
    given = os.environ.get("PNEUMONIA_TEST_POSTGRES")
    if given:
        yield given
        return
    import socket
    import subprocess
    import tempfile

    programs = _postgres_bin()
    if programs is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql, or set "
                    "PNEUMONIA_TEST_POSTGRES=postgresql://user@host/db")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="pneumonia-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as Debian's user
        as_user = ["runuser", "-u", "postgres", "--"]
        try:
            shutil.chown(root, "postgres")
        except LookupError:
            pytest.skip("PostgreSQL's server runs as the user postgres, and there is none")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    steps = [
        [str(programs / "initdb"), "-D", str(data), "-A", "trust", "-U", "pneumonia", "--no-sync"],
        [str(programs / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
         f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
    ]  # fmt: skip
    for step in steps:
        try:
            done = subprocess.run([*as_user, *step], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"PostgreSQL could not start: {exc}")
        if done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()
            pytest.skip(f"PostgreSQL could not start: {reason[-1] if reason else step[0]}")
    yield f"postgresql://pneumonia@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate",
                    "stop"], capture_output=True, timeout=60)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Any:
    """A fresh, empty database on the test server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
