"""`pneumonia train | evaluate | predict | ensemble | subtype | models | demo`: thin wrappers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pneumonia.cli.common import (
    BackendOpt,
    ConfigOpt,
    DataOpt,
    DefaultBundleArg,
    ForceOpt,
    OutOpt,
    OverridesArg,
    TtaOpt,
    WorkersOpt,
    command_line,
    console,
    fmt,
    guard_cell,
    print_list,
    resolve_config,
    say_backend,
    say_borderline,
    say_guard,
    scoring_options,
    split_bundle,
    user_errors,
)
from pneumonia.core.options import Scoring

BundleArg = Annotated[Path, typer.Argument(help="Model bundle folder (model.json + weights).")]


def metrics_table(
    title: str, metrics: dict[str, Any], intervals: dict[str, Any] | None = None
) -> Table:
    from pneumonia.evaluation.metrics import HEADLINE

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    boot = (intervals or {}).get("bootstrap", {})
    exact = (intervals or {}).get("clopper_pearson", {})
    if boot:
        table.add_column("95% CI (bootstrap)", justify="right")
        table.add_column("95% CI (exact)", justify="right")
    for key in HEADLINE:
        row = [key, fmt(metrics.get(key))]
        if boot:
            for source in (boot, exact):
                low, high = source.get(key, (None, None))
                row.append("" if low is None else f"{fmt(low)} - {fmt(high)}")
        table.add_row(*row)
    return table


@user_errors
def train_command(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    resume: Annotated[
        Path | None, typer.Option(help="Run folder to continue from its last checkpoint.")
    ] = None,
    force: ForceOpt = False,
    folds: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Cross-fit K models on folds of the training split and ship their ensemble, "
            "its threshold fitted on their out-of-fold predictions.",
        ),
    ] = None,
) -> None:
    """Train a model from the split manifest and cache; writes a run folder with a bundle."""
    from pneumonia.training.train import train

    if resume is not None and (overrides or config or folds):
        raise typer.BadParameter("--resume continues a run with its own config.yaml; drop the rest")
    cfg = resolve_config(config, overrides)
    given = [*(overrides or []), *(["--config", config] if config else [])]
    command = command_line("train", *given, *(["--resume", resume] if resume else []))
    if folds is not None:
        _train_folds(cfg, folds, force, command_line("train", *given, "--folds", folds))
        return
    summary = train(cfg, resume=resume, force=force, command=command)
    if "validation" not in summary:  # a DDP worker process: the first process reports
        return
    console.print(metrics_table("Validation (best epoch)", summary["validation"]))
    console.print(
        f"best epoch {summary['best_epoch']} of {summary['epochs_run']}, "
        f"{summary['duration_s']:.0f} s on {summary['device']}"
    )
    console.print(f"run: {summary['run_dir']}\nbundle: {summary['bundle']}")
    runs_on = "ONNX Runtime (model.onnx)" if summary["onnx"] else "PyTorch (not exported)"
    console.print(f"inference backend: {runs_on}; {_guard_line(summary['guard'])}")
    if summary.get("mlflow_run"):
        console.print(f"MLflow run: {summary['mlflow_run']}")


def _train_folds(cfg: Any, folds: int, force: bool, command: str) -> None:
    from pneumonia.training.crossfit import train_folds

    summary = train_folds(cfg, folds, force, command)
    fitted = summary["out_of_fold"]["out_of_fold"]
    console.print(
        f"{folds} cross-fitted models; threshold {summary['threshold']:.4g} fitted on their "
        f"out-of-fold predictions ({fitted['images']} images, {fitted['positives']} PNEUMONIA)"
    )
    held_out = summary["validation"]
    console.print(metrics_table(f"Held-out validation ({held_out['n']} images)", held_out))
    console.print(f"run: {summary['run_dir']}\nbundle: {summary['bundle']}")
    runs_on = "ONNX Runtime (model.onnx)" if summary["onnx"] else "PyTorch (not exported)"
    console.print(f"inference backend: {runs_on}; {_guard_line(summary.get('guard'))}")


def _guard_line(guard: dict[str, Any] | None) -> str:
    if guard is None:
        return "no out-of-distribution guard (guard.enabled=false)"
    flagged = guard["validation"]["flagged"]
    return f"out-of-distribution guard fitted ({100 * flagged:.1f}% of validation flagged)"


@user_errors
@scoring_options()
def evaluate_command(
    data: DataOpt,
    scoring: Scoring,
    bundle: DefaultBundleArg = None,
    split: Annotated[str, typer.Option(help="Split to score (train, val or test).")] = "test",
    out: OutOpt = Path("reports/evaluate"),
    backend: BackendOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Metrics with 95% intervals at the bundle's threshold; JSON, CSV and figures."""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.evaluation.evaluate import evaluate
    from pneumonia.inference.loading import load_bundle

    loaded = load_bundle(bundle, backend)
    say_backend(loaded)
    out_dir = fresh_dir(out, force)
    result = evaluate(loaded, data, split, out_dir, scoring)
    m = result["metrics"]
    console.print(
        f"data: {result['data']}  images: {m['n']}  "
        f"threshold: {m['threshold']:.3g} (rule: {result['threshold_rule']})",
        highlight=False,
    )
    console.print(metrics_table("Evaluation", m, result["intervals"]))
    cal = result["calibration"]
    console.print(f"calibration: ECE {cal['ece']:.4f}, Brier {cal['brier']:.4f}")
    cm = m["confusion_matrix"]
    console.print(f"confusion: TN {cm['tn']}  FP {cm['fp']}  FN {cm['fn']}  TP {cm['tp']}")
    if result["subtype"]:
        from pneumonia.evaluation.subtype import headline_line

        console.print(f"subtype (bacterial vs viral): {headline_line(result['subtype'])}")
    if (near := result["borderline"]) is not None:
        console.print(
            f"borderline (P in [{near['low']:.3g}, {near['high']:.3g})): {near['answers']} "
            f"answers ({near['share']:.1%}); of them {near['missed_within']} of the "
            f"{near['missed']} missed pneumonias and {near['false_alarms_within']} of the "
            f"{near['false_alarms']} false alarms",
            highlight=False,
        )
    print_list(
        "Unreadable, excluded", [f"{u['path']}: {u['reason']}" for u in result["unreadable"]]
    )
    console.print(f"report: {out_dir / 'metrics.json'} (figures beside it)")
    if result.get("mlflow_run"):
        console.print(f"MLflow run: {result['mlflow_run']}")


@user_errors
def predict_command(
    inputs: Annotated[
        list[str], typer.Argument(help="[BUNDLE] then image files, folders or globs.")
    ],
    out: OutOpt = Path("reports/predict"),
    show: Annotated[
        bool, typer.Option("--show", help="Also save each image with its prediction on it.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per network call (4 was fastest on 2 cores).")
    ] = 4,
    tta: TtaOpt = False,
    backend: BackendOpt = "auto",
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """P(PNEUMONIA) and label for images; without a BUNDLE the shipped default model. A
    DICOMweb study or series URL (http://host/dicom-web/studies/UID, or .../series/UID
    below it) is read from the archive, its instances chosen by the DICOM node's header rules."""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.data.dicomweb import instances, is_dicomweb, parse
    from pneumonia.inference.loading import load_bundle
    from pneumonia.inference.predictions import expand_inputs, predict_datasets, predict_paths
    from pneumonia.serving.predict import annotate_all, write_tables

    bundle_path, patterns = split_bundle(inputs)
    if not patterns:
        raise typer.BadParameter("give at least one image, folder or glob after the bundle")
    urls = [p for p in patterns if is_dicomweb(p)]
    for url in urls:
        parse(url)  # a malformed URL fails before the model loads
    bundle = load_bundle(bundle_path, backend)
    say_backend(bundle)
    files = [p for p in patterns if not is_dicomweb(p)]
    paths = expand_inputs(files) if files else []
    out_dir = fresh_dir(out, force)
    predictions = predict_paths(bundle, paths, batch_size, workers, tta=tta) if paths else []
    for url in urls:
        predictions += predict_datasets(bundle, instances(url), batch_size, tta)
    table = Table(title=f"{bundle.meta.architecture.name}, threshold {bundle.threshold:.3g}")
    table.add_column("image", overflow="fold")
    table.add_column("P(PNEUMONIA)", justify="right")
    table.add_column("label")
    table.add_column("chest X-ray?", overflow="fold")
    subtype = bundle.meta.subtype is not None
    if subtype:
        table.add_column("subtype (P viral)")
    for p in predictions:
        prob = "-" if p.probability is None else f"{p.probability:.3f}"
        label = p.label or f"[red]error: {p.error}[/]"
        cells = [p.path, prob, f"{label} [yellow](borderline)[/]" if p.borderline else label]
        cells.append(guard_cell(p))
        if subtype:
            viral = p.subtype_probability
            cells.append("-" if viral is None else f"{p.subtype or '-'} ({viral:.3f})")
        table.add_row(*cells)
    console.print(table)
    say_guard(bundle, predictions)
    say_borderline(bundle, predictions)
    csv_path, _ = write_tables(predictions, bundle, out_dir)
    if show:  # files only: an archive's instances are not kept
        shown = annotate_all(predictions[: len(paths)], bundle.threshold, out_dir / "images")
        console.print(f"images with predictions: {out_dir / 'images'} ({len(shown)})")
    console.print(f"predictions: {csv_path} and predictions.json")
    if all(p.probability is None for p in predictions):
        raise typer.Exit(1)


@user_errors
def ensemble_command(
    members: Annotated[
        list[Path], typer.Argument(help="Member bundles or training run folders (two or more).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the ensemble bundle.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Validation data (default: the members' manifest)."),
    ] = None,
    split: Annotated[str, typer.Option(help="Validation split (never test).")] = "val",
    rule: Annotated[
        str, typer.Option(help="target_sensitivity | youden | cost | fixed.")
    ] = "target_sensitivity",
    target_sensitivity: Annotated[float, typer.Option(min=0.5, max=1.0)] = 0.99,
    onnx: Annotated[
        bool, typer.Option(help="Export the verified model.onnx, as training does.")
    ] = True,
    guard: Annotated[
        bool, typer.Option(help="Fit the out-of-distribution guard on it, as training does.")
    ] = True,
    workers: WorkersOpt = None,
) -> None:
    """Combine bundles into one ensemble bundle: the mean of their calibrated logits, with its
    own calibration and threshold fitted on validation, its ONNX model and its guard."""
    from pydantic import ValidationError

    from pneumonia.core.config import OperatingConfig
    from pneumonia.core.errors import ConfigError
    from pneumonia.training.ensembling import build_ensemble

    try:
        cfg = OperatingConfig(rule=rule, target_sensitivity=target_sensitivity)
    except ValidationError as exc:
        raise ConfigError(f"invalid --rule {rule!r}: {exc.errors()[0]['msg']}") from None
    command = " ".join(["pneumonia ensemble", *map(str, members), "--out", str(out)])
    result = build_ensemble(
        members, out, data, split, cfg, workers, command=command, onnx=onnx, guard=guard
    )
    v = result["validation"]
    console.print(f"ensemble of {len(members)}: {out}, threshold {result['threshold']:.4g}")
    fitted = result.get("guard")
    console.print(
        f"ONNX model: {'verified' if result['onnx'] else 'none'}; out-of-distribution guard: "
        + (f"threshold {fitted['threshold']:.3g}" if fitted else "none")
    )
    console.print(metrics_table(f"On {v['data']} ({v['n']} images)", v))


@user_errors
def subtype_command(
    bundle: BundleArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the bundle.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Split manifest (default: the bundle's own)."),
    ] = None,
    int8: Annotated[bool, typer.Option(help="Add the int8 copy where it passes parity.")] = True,
) -> None:
    """Add the subtype output, P(viral | pneumonia), to a one-output bundle: a logistic
    regression on its frozen features, fitted on the training split; the screening output,
    threshold and guard stay as they are."""
    from pneumonia.core.bundle import read_meta
    from pneumonia.evaluation.subtype import headline_line
    from pneumonia.training.subtype_head import add_subtype_head

    command = command_line("subtype", bundle, "--out", out, *(["--data", data] if data else []))
    result = add_subtype_head(bundle, out, data, int8=int8, command=command)
    oof = result["out_of_fold"]
    low, high = oof["interval"]
    console.print(
        f"subtype head fitted on {result['images']} training images ({result['viral']} viral), "
        f"C = {result['c']:g}: {out}"
    )
    console.print(
        f"out-of-fold ROC-AUC {oof['roc_auc']:.3f} ({low:.3f}-{high:.3f}) on {oof['n']} "
        "training and validation images"
    )
    record = read_meta(out)[1].subtype
    if record is not None:
        console.print(f"validation: {headline_line(record.validation)}")


@user_errors
def models_command() -> None:
    """List the model registry."""
    from pneumonia.modeling.models import REGISTRY

    table = Table(title="Models (pneumonia.modeling.models.create_model)")
    for col in ("name", "pretrained weights", "native size", "description"):
        table.add_column(col)
    for name, spec in sorted(REGISTRY.items()):
        weights = "no" if spec.timm_name is None else "yes (local only)"
        size = str(spec.native_size) if spec.native_size else "any"
        table.add_row(name, weights, size, spec.description)
    console.print(table)


@user_errors
def demo_command(
    workdir: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = Path(
        "demo"
    ),
    force: ForceOpt = False,
) -> None:
    """Run split -> prepare -> audit -> train -> evaluate -> predict on SYNTHETIC data, offline."""
    from pneumonia.demo import run_demo

    console.print(
        "[bold yellow]DEMO ON SYNTHETIC DATA:[/] the images are drawn shapes, not X-rays; "
        "the numbers below show the pipeline works, not how a model does on patients."
    )
    result = run_demo(workdir, force, say=lambda msg: console.print(msg, highlight=False))
    console.print(metrics_table("Synthetic test split", result["evaluate"]["metrics"]))
    for p in result["predict"][:5]:
        console.print(f"  {Path(p.path).name}: {p.label} (P={p.probability:.3f})", highlight=False)
    console.print(
        f"everything is in {workdir}/: manifest.csv, cache/, runs/demo/ (bundle, curves), "
        f"evaluate/, predict/, mlruns.db (browse it: mlflow ui --backend-store-uri "
        f"sqlite:///{workdir.resolve() / 'mlruns.db'})."
        "\nnext, on real data: pneumonia data split DIR && "
        "pneumonia data prepare && pneumonia train"
    )


COMMANDS: dict[str, Callable[..., None]] = {
    "train": train_command,
    "evaluate": evaluate_command,
    "predict": predict_command,
    "ensemble": ensemble_command,
    "subtype": subtype_command,
    "models": models_command,
    "demo": demo_command,
}
