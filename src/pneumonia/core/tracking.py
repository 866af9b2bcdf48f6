"""Experiment tracking: every `train` and `evaluate` run goes to MLflow.

The default store is a local SQLite file, `sqlite:///mlruns.db` in the working directory, with
run artifacts in `mlartifacts/` beside it; `tracking.uri` or `MLFLOW_TRACKING_URI` points
elsewhere, and `tracking.enabled=false` turns tracking off. Browse the runs with
`mlflow ui --backend-store-uri sqlite:///mlruns.db`.

Training logs through Lightning's `MLFlowLogger` (`pneumonia.training.loop.training_logger`:
the flattened config as params, the per-epoch metrics as Lightning logs them); the run's
figures, tables and bundle follow as artifacts. A store that cannot be opened stops a run
before it starts; a failure while uploading artifacts afterwards is logged and never loses
the finished run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pneumonia.core.config import TrackingConfig
from pneumonia.core.errors import PneumoniaError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
DEFAULT_URI = "sqlite:///mlruns.db"
RunHandle = tuple[str, str]  # (tracking URI, MLflow run id)


warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.")


class TrackingError(PneumoniaError):
    """The MLflow tracking store cannot be used."""


def tracking_uri(cfg: TrackingConfig) -> str:
    """`tracking.uri`, else `$MLFLOW_TRACKING_URI`, else the local SQLite file."""
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def artifact_location(uri: str) -> str | None:
    """For a SQLite store, `mlartifacts/` beside the database file (MLflow's own default is
    relative to wherever the process runs); other stores choose for themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    return (db.resolve().parent / "mlartifacts").as_uri()


def _fail(uri: str, exc: Exception) -> TrackingError:
    return TrackingError(
        f"MLflow tracking store {uri} cannot be used ({type(exc).__name__}: {exc}); fix "
        "tracking.uri / MLFLOW_TRACKING_URI, or turn tracking off with tracking.enabled=false"
    )


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"lr": 1e-3}}` -> `{"train.lr": 1e-3}`."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def client(uri: str) -> MlflowClient:
    """An MLflow client for `uri`; MLflow's own INFO chatter is kept out of our logs."""
    from mlflow import MlflowClient

    if not log.isEnabledFor(logging.DEBUG):
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(uri)


def log_outputs(
    handle: RunHandle | None,
    metrics: Mapping[str, float | None],
    files: Iterable[Path] = (),
    folders: Mapping[str, Path] | None = None,
) -> None:
    """Final metrics and output files of a finished run; failures are logged, not raised."""
    if handle is None:
        return
    from mlflow.entities import Metric

    uri, run_id = handle
    store = client(uri)
    now = int(time.time() * 1000)
    try:
        values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
        store.log_batch(run_id, metrics=values)
        for path in files:
            if path.is_file():
                store.log_artifact(run_id, str(path))
        for name, folder in (folders or {}).items():
            store.log_artifacts(run_id, str(folder), artifact_path=name)
    except Exception as exc:  # the run's own outputs are on disk already
        log.warning("tracking: could not log outputs to MLflow run %s (%s)", run_id, exc)


def start_run(
    cfg: TrackingConfig, run_name: str, command: str, params: Mapping[str, Any]
) -> RunHandle | None:
    """Open an MLflow run with its params: (uri, run_id), or None when tracking is off."""
    if not cfg.enabled:
        return None
    if importlib.util.find_spec("mlflow") is None:  # the inference-only install
        log.warning(
            "tracking: MLflow is not installed, so this run is not tracked (outputs are on "
            "disk as usual); pip install 'pneumonia[train]', or pass --no-track"
        )
        return None
    from mlflow.entities import Param

    uri = tracking_uri(cfg)
    try:
        store = client(uri)
        found = store.get_experiment_by_name(cfg.experiment)
        experiment = (
            found.experiment_id
            if found
            else store.create_experiment(cfg.experiment, artifact_location(uri))
        )
        tags = {"pneumonia.command": command}
        run_id = store.create_run(experiment, run_name=run_name, tags=tags).info.run_id
        values = [Param(k, str(v)) for k, v in flatten(params).items()]
        store.log_batch(run_id, params=values)
    except Exception as exc:  # any store problem, before the work starts
        raise _fail(uri, exc) from exc
    log.info("tracking: MLflow run %s in %s", run_id, uri)
    return uri, run_id


def end_run(handle: RunHandle | None, ok: bool) -> None:
    """Mark a run from `start_run` finished or failed."""
    if handle is None:
        return
    try:
        client(handle[0]).set_terminated(handle[1], "FINISHED" if ok else "FAILED")
    except Exception as exc:
        log.warning("tracking: could not close MLflow run %s (%s)", handle[1], exc)
