"""`pneumonia data ...`: check, split, prepare and download datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pneumonia.cli.common import (
    ConfigOpt,
    ForceOpt,
    OverridesArg,
    WorkersOpt,
    console,
    counts_table,
    print_list,
    resolve_config,
    user_errors,
)
from pneumonia.core.config import dump_config, load_config

ManifestOpt = Annotated[Path | None, typer.Option(help="Manifest CSV (default: data.manifest).")]
data_app = typer.Typer(help="Check, split, cache and download datasets.", no_args_is_help=True)


@data_app.command("check")
@user_errors
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset folder, MedMNIST .npz or path,label CSV.")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/data-check"),
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Sanity report: counts, balance, sizes, modes, unreadable files, duplicates, leaks."""
    from pneumonia.core.errors import DataError
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.data.check import build_report, write_report

    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    out_dir = fresh_dir(out, force)
    report = build_report(root, workers)
    path = write_report(report, out_dir)
    dump_config(load_config(), out_dir / "config.yaml")
    console.print(f"layout: {report['layout']}   images: {report['images']}")
    console.print(counts_table("Images per split and class", report["counts"]))
    for key, s in report["sizes"].items():
        console.print(f"{key}: {s['min']}..{s['max']} px (median {s['median']})", highlight=False)
    console.print("modes: " + ", ".join(f"{m} {n}" for m, n in report["modes"].items()))
    print_list(
        "Unreadable images, excluded", [f"{u['path']}: {u['reason']}" for u in report["unreadable"]]
    )
    dups = report["duplicates"]
    print_list(
        "Exact duplicates (same content)",
        [f"{'ACROSS SPLITS ' if d['cross_split'] else ''}{' = '.join(d['paths'])}" for d in dups],
    )
    print_list(
        "Patients in more than one split",
        [f"{p['patient']}: {', '.join(p['splits'])}" for p in report["patients_across_splits"]],
    )
    problems = report["problems"]
    print_list("Problems", [f"{p['severity']}: {p['path']}: {p['message']}" for p in problems])
    console.print(f"report: {path} (figures beside it)")
    if any(p["severity"] == "error" for p in problems):
        raise typer.Exit(1)


@data_app.command("split")
@user_errors
def data_split(
    root: Annotated[Path, typer.Argument(help="Dataset folder, MedMNIST .npz or path,label CSV.")],
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    out: ManifestOpt = None,
    keep_val: Annotated[
        bool, typer.Option("--keep-val", help="Keep the dataset's own val/ as validation.")
    ] = False,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write a split manifest: validation carved from training, grouped by patient."""
    from pneumonia.data.split import make_manifest, summarize, write_manifest

    cfg = resolve_config(config, overrides, *(["data.official_val=keep"] if keep_val else []))
    target = out or cfg.data.manifest
    rows, problems = make_manifest(
        root, cfg.data.val_fraction, cfg.data.seed, cfg.data.official_val, workers
    )
    written = write_manifest(rows, target, force)
    dump_config(cfg, target.with_suffix(".config.yaml"))
    console.print(counts_table("Manifest", summarize(rows)))
    patients = {s: {r.patient for r in rows if r.split == s} for s in ("train", "val")}
    console.print(
        f"patients: train {len(patients['train'])}, val {len(patients['val'])}, "
        f"in both {len(patients['train'] & patients['val'])}"
    )
    print_list("Problems", [f"{p.path}: {p.message}" for p in problems])
    console.print(f"manifest: {target} ({'written' if written else 'unchanged, identical'})")


@data_app.command("prepare")
@user_errors
def data_prepare(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    manifest: ManifestOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Decode every image once into the cache (grayscale, resized per the contract)."""
    from pneumonia.data.cache import prepare_cache
    from pneumonia.data.split import read_manifest

    cfg = resolve_config(config, overrides)
    rows = read_manifest(manifest or cfg.data.manifest)
    summary = prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, workers)
    dump_config(cfg, summary.cache_dir / "prepare.config.yaml")
    print_list("Failed, excluded", [f"{p.path}: {p.message}" for p in summary.failed])
    console.print(
        f"cache: {summary.cache_dir}  built {summary.built}, reused {summary.reused}, "
        f"failed {len(summary.failed)}"
    )


@data_app.command("audit")
@user_errors
def data_audit(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    manifest: ManifestOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for the audit.")] = Path("work/audit"),
    backbone: Annotated[
        str, typer.Option(help="ImageNet-pretrained registry model whose features are used.")
    ] = "efficientnet_lite0",
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-fitting folds.")] = 5,
    force: ForceOpt = False,
) -> None:
    """Likely label errors (confident learning on out-of-fold probabilities): a ranked CSV,
    counts per class and an HTML gallery. Train with audit.file=OUT/label_issues.csv to
    leave them out of the threshold fit (audit.leave_out)."""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.evaluation.audit import AuditSettings, run_audit

    cfg = resolve_config(config, overrides)
    out_dir = fresh_dir(out, force)
    settings = AuditSettings(backbone=backbone, folds=folds)
    table, summary = run_audit(
        manifest or cfg.data.manifest, cfg.data.cache_dir, cfg.preprocess, out_dir, settings
    )
    console.print(f"{summary['method']}; out-of-fold ROC-AUC {summary['out_of_fold_roc_auc']}")
    table_out = Table(title="Likely label errors")
    for column in ("split", "label", "images", "flagged"):
        table_out.add_column(column, justify="left" if column in ("split", "label") else "right")
    for split, by_label in summary["counts"].items():
        for label, c in by_label.items():
            table_out.add_row(split, label, str(c["images"]), str(c["issues"]))
    console.print(table_out)
    console.print(
        f"{summary['issues']} of {summary['images']} images flagged\n"
        f"ranked list: {table}\ngallery: {out_dir / 'index.html'}"
    )


@data_app.command("download")
@user_errors
def data_download(
    dest: Annotated[Path, typer.Option(help="Folder to download into.")] = Path("data/kaggle"),
) -> None:
    """Fetch the Kaggle chest X-ray dataset with kagglehub (needs network)."""
    from pneumonia.data.download import download

    path = download(dest)
    console.print(f"dataset: {path}\nnext: pneumonia data check {path}")
