"""The `pneumonia` command: a thin typer wrapper over the package's functions."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from pneumonia import LABELS, __version__
from pneumonia.config import Config, dump_config, load_config
from pneumonia.errors import PneumoniaError

app = typer.Typer(
    help="Train, evaluate, explain and serve pediatric chest X-ray pneumonia classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Check, split, cache and download datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (see configs/default.yaml).")
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Config overrides, e.g. data.seed=3 preprocess.resize=crop."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Worker processes (default: all cores).")
]


def user_errors(fn: F) -> F:
    """Print a `PneumoniaError` as one red line and exit 1 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PneumoniaError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    if value:
        console.print(f"pneumonia {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )


def _config(config: Path | None, overrides: list[str] | None, *extra: str) -> Config:
    return load_config(config, [*(overrides or []), *extra])


def _counts_table(title: str, counts: dict[str, dict[str, int]]) -> Table:
    table = Table(title=title)
    table.add_column("split")
    for lab in LABELS:
        table.add_column(lab, justify="right")
    table.add_column("total", justify="right")
    table.add_column(f"% {LABELS[1]}", justify="right")
    for split, c in counts.items():
        total = sum(c.values())
        pct = f"{100 * c[LABELS[1]] / total:.1f}" if total else "-"
        table.add_row(split or "(no split)", *(str(c[lab]) for lab in LABELS), str(total), pct)
    return table


def _print_list(title: str, lines: list[str], limit: int = 20) -> None:
    if not lines:
        return
    console.print(f"[bold yellow]{title}[/] ({len(lines)})")
    for line in lines[:limit]:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    if len(lines) > limit:
        console.print(f"  ... and {len(lines) - limit} more (see the JSON report)")


@data_app.command("check")
@user_errors
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset folder, MedMNIST .npz or path,label CSV.")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/data-check"),
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Sanity report: counts, balance, sizes, modes, unreadable files, duplicates, leaks."""
    from pneumonia.check import build_report, write_report
    from pneumonia.errors import DataError
    from pneumonia.outputs import fresh_dir

    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    out_dir = fresh_dir(out, force)
    report = build_report(root, workers)
    path = write_report(report, out_dir)
    dump_config(load_config(), out_dir / "config.yaml")
    console.print(f"layout: {report['layout']}   images: {report['images']}")
    console.print(_counts_table("Images per split and class", report["counts"]))
    for key, s in report["sizes"].items():
        console.print(f"{key}: {s['min']}..{s['max']} px (median {s['median']})", highlight=False)
    console.print("modes: " + ", ".join(f"{m} {n}" for m, n in report["modes"].items()))
    _print_list(
        "Unreadable images, excluded", [f"{u['path']}: {u['reason']}" for u in report["unreadable"]]
    )
    dups = report["duplicates"]
    _print_list(
        "Exact duplicates (same content)",
        [f"{'ACROSS SPLITS ' if d['cross_split'] else ''}{' = '.join(d['paths'])}" for d in dups],
    )
    _print_list(
        "Patients in more than one split",
        [f"{p['patient']}: {', '.join(p['splits'])}" for p in report["patients_across_splits"]],
    )
    problems = report["problems"]
    _print_list("Problems", [f"{p['severity']}: {p['path']}: {p['message']}" for p in problems])
    console.print(f"report: {path} (figures beside it)")
    if any(p["severity"] == "error" for p in problems):
        raise typer.Exit(1)


@data_app.command("split")
@user_errors
def data_split(
    root: Annotated[Path, typer.Argument(help="Dataset folder, MedMNIST .npz or path,label CSV.")],
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option(help="Manifest CSV (default: data.manifest).")] = None,
    keep_val: Annotated[
        bool, typer.Option("--keep-val", help="Keep the dataset's own val/ as validation.")
    ] = False,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write a split manifest: validation carved from training, grouped by patient."""
    from pneumonia.split import make_manifest, summarize, write_manifest

    cfg = _config(config, overrides, *(["data.official_val=keep"] if keep_val else []))
    target = out or cfg.data.manifest
    rows, problems = make_manifest(
        root, cfg.data.val_fraction, cfg.data.seed, cfg.data.official_val, workers
    )
    written = write_manifest(rows, target, force)
    dump_config(cfg, target.with_suffix(".config.yaml"))
    console.print(_counts_table("Manifest", summarize(rows)))
    patients = {s: {r.patient for r in rows if r.split == s} for s in ("train", "val")}
    console.print(
        f"patients: train {len(patients['train'])}, val {len(patients['val'])}, "
        f"in both {len(patients['train'] & patients['val'])}"
    )
    _print_list("Problems", [f"{p.path}: {p.message}" for p in problems])
    console.print(f"manifest: {target} ({'written' if written else 'unchanged, identical'})")


@data_app.command("prepare")
@user_errors
def data_prepare(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest CSV (default: data.manifest).")
    ] = None,
    workers: WorkersOpt = None,
) -> None:
    """Decode every image once into the cache (grayscale, resized per the contract)."""
    from pneumonia.cache import prepare_cache
    from pneumonia.split import read_manifest

    cfg = _config(config, overrides)
    rows = read_manifest(manifest or cfg.data.manifest)
    summary = prepare_cache(rows, cfg.data.cache_dir, cfg.preprocess, workers)
    dump_config(cfg, summary.cache_dir / "prepare.config.yaml")
    _print_list("Failed, excluded", [f"{p.path}: {p.message}" for p in summary.failed])
    console.print(
        f"cache: {summary.cache_dir}  built {summary.built}, reused {summary.reused}, "
        f"failed {len(summary.failed)}"
    )


@data_app.command("download")
@user_errors
def data_download(
    dest: Annotated[Path, typer.Option(help="Folder to download into.")] = Path("data/kaggle"),
) -> None:
    """Fetch the Kaggle chest X-ray dataset with kagglehub (needs network)."""
    from pneumonia.download import download

    path = download(dest)
    console.print(f"dataset: {path}\nnext: pneumonia data check {path}")


def main() -> None:
    """Entry point: run the app; an unexpected error is one line unless PNEUMONIA_DEBUG=1."""
    try:
        app()
    except Exception as exc:  # a bug, not bad input: keep it short but say how to see more
        if os.environ.get("PNEUMONIA_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}", highlight=False)
        err.print("set PNEUMONIA_DEBUG=1 to see the traceback, and please report it")
        sys.exit(2)
