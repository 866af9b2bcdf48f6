"""`pneumonia compare | report | explain | stress | pairs`: looking into models, thin wrappers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pneumonia.cli.common import (
    BackendOpt,
    DataOpt,
    DefaultBundleArg,
    ForceOpt,
    OutOpt,
    WorkersOpt,
    command_line,
    console,
    fmt,
    guard_cell,
    print_list,
    say_backend,
    say_guard,
    scoring_options,
    split_bundle,
    user_errors,
)
from pneumonia.core.meta import MIN_BAND_PAIRS
from pneumonia.core.options import Scoring


@user_errors
@scoring_options(tta=False, track=False)
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders or bundles to compare.")],
    data: DataOpt,
    scoring: Scoring,
    split: Annotated[str, typer.Option(help="Split to score every model on.")] = "val",
    out: OutOpt = Path("reports/compare"),
    force: ForceOpt = False,
) -> None:
    """Several models side by side on the same images: markdown, CSV and overlaid ROC."""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.evaluation.compare import compare

    out_dir = fresh_dir(out, force)
    result = compare(runs, data, split, out_dir, scoring)
    table = Table(title=f"{result['data']}: {result['n']} images")
    for col in ("model", "params", "train", "img/s", "ROC-AUC", "threshold", "sens", "spec"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in result["models"]:
        minutes = "n/a" if r["train_time_s"] is None else f"{r['train_time_s'] / 60:.1f} min"
        table.add_row(
            r["model"],
            f"{r['parameters'] / 1e6:.2f} M",
            minutes,
            f"{r['infer_images_per_s']:.0f}",
            fmt(r["roc_auc"]),
            f"{r['threshold']:.3g}",
            fmt(r["sensitivity"]),
            fmt(r["specificity"]),
        )
    console.print(table)
    console.print(f"comparison: {out_dir / 'comparison.md'} (CSV, JSON, roc.png beside it)")


@user_errors
@scoring_options()
def report_command(
    data: DataOpt,
    scoring: Scoring,
    bundle: DefaultBundleArg = None,
    split: Annotated[str, typer.Option(help="Split to report on (train, val or test).")] = "test",
    out: OutOpt = Path("reports/report"),
    thumbnails: Annotated[
        bool, typer.Option(help="Embed the error gallery's images (off: names only).")
    ] = True,
    shifts: Annotated[
        bool, typer.Option("--stress", help="Also run the shift suite (see `stress`).")
    ] = False,
    force: ForceOpt = False,
) -> None:
    """One self-contained HTML page: data, curves, metrics with CIs, shifts, errors, card."""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.evaluation.report import report
    from pneumonia.inference.loading import load_bundle

    loaded = load_bundle(bundle)
    out_dir = fresh_dir(out, force)
    command = command_line(
        "report",
        *([bundle] if bundle else []),
        "--data",
        data,
        "--split",
        split,
        *(["--stress"] if shifts else []),
    )
    page = report(loaded, data, split, out_dir, scoring, command, thumbnails, shifts)
    console.print(f"report: {page} (open it in a browser; it needs no network)")


@user_errors
def explain_command(
    inputs: Annotated[
        list[str], typer.Argument(help="[BUNDLE] then image files, folders or globs.")
    ],
    method: Annotated[
        str, typer.Option(help="gradcam | gradcam++ | scorecam (slow: one pass per channel).")
    ] = "gradcam",
    out: OutOpt = Path("reports/explain"),
    force: ForceOpt = False,
) -> None:
    """Grad-CAM overlays on the original images, with probability and label: a qualitative aid."""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.inference.loading import load_bundle
    from pneumonia.inference.predictions import expand_inputs
    from pneumonia.serving.explain import CAVEAT, METHODS, explain_paths

    if method not in METHODS:
        raise typer.BadParameter(f"--method must be one of {', '.join(METHODS)}")
    bundle_path, patterns = split_bundle(inputs)
    if not patterns:
        raise typer.BadParameter("give at least one image, folder or glob after the bundle")
    bundle = load_bundle(bundle_path)
    paths = expand_inputs(patterns)
    out_dir = fresh_dir(out, force)
    results = explain_paths(bundle, paths, out_dir, method)
    table = Table(title=f"{method} on {bundle.meta.architecture.name}: {CAVEAT}")
    for col in ("image", "P(PNEUMONIA)", "label", "chest X-ray?", "overlay"):
        table.add_column(col, overflow="fold")
    for path, expl, written in results:
        if expl is None:
            table.add_row(path, "-", f"[red]error: {written}[/]", "", "")
        else:
            cells = (f"{expl.probability:.3f}", expl.label, guard_cell(expl), written)
            table.add_row(path, *cells)
    console.print(table)
    say_guard(bundle, [expl for _, expl, _ in results if expl is not None])
    if all(expl is None for _, expl, _ in results):
        raise typer.Exit(1)


ShiftOpt = Annotated[
    list[str] | None,
    typer.Option("--shift", help="Only this shift (repeat for more; default: the whole suite)."),
]


def stress_table(result: dict[str, Any]) -> Table:
    """The suite's results, one row per shift, changes from clean beside each number."""
    table = Table(title=f"Shift suite on {result['data']} (threshold {result['threshold']:.3g})")
    for col in ("shift", "group", "ROC-AUC (95% CI)", "d AUC", "sensitivity", "specificity"):
        table.add_column(col, justify="left" if col in ("shift", "group") else "right")
    for r in result["shifts"]:
        low, high = r["roc_auc_ci"]
        ci = "" if low != low else f" ({low:.3f}-{high:.3f})"  # NaN when no bootstrap
        name = r["shift"] + ("" if r["scored"] else " [dim](to refuse)[/]")
        table.add_row(
            name,
            r["group"],
            f"{fmt(r['roc_auc'])}{ci}",
            f"{r['delta_roc_auc']:+.4f}",
            f"{fmt(r['sensitivity'])} ({r['delta_sensitivity']:+.3f})",
            f"{fmt(r['specificity'])} ({r['delta_specificity']:+.3f})",
        )
    return table


@user_errors
@scoring_options(bootstrap=200, tta=False, track=False)
def stress_command(
    data: DataOpt,
    scoring: Scoring,
    bundle: DefaultBundleArg = None,
    split: Annotated[str, typer.Option(help="Split to shift (validation: val).")] = "val",
    out: OutOpt = Path("reports/stress"),
    shift: ShiftOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the random parts (noise, markers).")] = 0,
    backend: BackendOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Shift suite: ROC-AUC and sens/spec at the threshold under realistic acquisition shifts."""
    from pneumonia.core.errors import DataError
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.data.shifts import resolve
    from pneumonia.evaluation.stress import stress
    from pneumonia.inference.loading import load_bundle

    try:
        resolve(shift)  # an unknown name fails before the output folder is made
    except ValueError as exc:
        raise DataError(str(exc)) from None
    loaded = load_bundle(bundle, backend)
    say_backend(loaded)
    out_dir = fresh_dir(out, force)
    result = stress(loaded, data, split, out_dir, seed, shift, scoring)
    console.print(stress_table(result))
    worst = result["worst"]
    for key in ("roc_auc", "sensitivity", "specificity"):
        if key in worst:
            w = worst[key]
            console.print(
                f"worst {key}: {w['value']:.4f} under {w['shift']} ({w['change']:+.4f} from clean)"
            )
    print_list(
        "Unreadable, excluded", [f"{u['path']}: {u['reason']}" for u in result["unreadable"]]
    )
    console.print(f"report: {out_dir / 'stress.json'} (stress.csv, stress.png, shifts.png)")


def pairs_table(result: dict[str, Any]) -> Table:
    """Per rendering: how far its answers are from the copies' (|dp|, flips, guard), and
    sensitivity/specificity at the stored threshold on it and on the copies."""
    title = (
        f"{result['pairs']} originals ({result['patients']} patients) against their copies, "
        f"threshold {result['threshold']:.3g}"
    )
    table = Table(title=title)
    columns = ("rendering", "mean |dp|", "p95", "max", "flips", "guard changes", "flagged")
    for col in (*columns, "sens", "spec"):
        table.add_column(col, justify="left" if col == "rendering" else "right")
    for name, r in result["renderings"].items():
        flagged = "-" if r["flagged"] is None else f"{r['flagged']} (copies {r['flagged_copy']})"
        rates = [
            f"{fmt(r['rendering'][k])} (copies {fmt(r['copy'][k])})"
            for k in ("sensitivity", "specificity")
        ]
        table.add_row(
            name,
            f"{r['mean_dp']:.4f}",
            f"{r['p95_dp']:.3f}",
            f"{r['max_dp']:.3f}",
            str(r["flips"]),
            "-" if r["guard_changes"] is None else str(r["guard_changes"]),
            flagged,
            *rates,
        )
    return table


@user_errors
def pairs_command(
    originals: Annotated[
        Path, typer.Option(help="Originals: NORMAL/ and PNEUMONIA/ folders of full-size files.")
    ],
    copies: Annotated[Path, typer.Option(help="Their copies, found by file name (any layout).")],
    bundle: DefaultBundleArg = None,
    rendering: Annotated[
        list[str] | None,
        typer.Option(help="Only this rendering of the originals (repeat; default: all)."),
    ] = None,
    only: Annotated[
        Path | None,
        typer.Option("--only", help="Only the originals named in this file (one name a line)."),
    ] = None,
    out: OutOpt = Path("reports/pairs"),
    which: Annotated[
        str | None,
        typer.Option(
            "--record",
            help="Keep the result in BUNDLE's model.json and card, saying which originals "
            "these are (e.g. 'training patients, never trained on as originals').",
        ),
    ] = None,
    band_min_pairs: Annotated[
        int,
        typer.Option(
            min=2,
            help="With --record, keep the borderline band only when it rests on at least "
            f"this many pairs (at {MIN_BAND_PAIRS}, its 0.95 quantile rests on 5 images or more).",
        ),
    ] = MIN_BAND_PAIRS,
    backend: BackendOpt = "auto",
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Originals against their copies: does the answer move with the file (DICOM, PNG, ...)?"""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.data.discover import name_list
    from pneumonia.data.renderings import chosen
    from pneumonia.evaluation.pairs import pairs_report
    from pneumonia.inference.loading import load_bundle

    chosen(rendering)  # an unknown name is refused before the output folder is made
    names = name_list(only) if only is not None else None
    loaded = load_bundle(bundle, backend)
    say_backend(loaded)
    out_dir = fresh_dir(out, force)
    result = pairs_report(loaded, originals, copies, out_dir, rendering, names, workers)
    console.print(pairs_table(result))
    band = result["borderline"]
    console.print(
        f"borderline band: {band['logit']:.2f} in logit either side of the threshold; "
        f"{band['quantile']:.0%} of the {band['pairs']} pairs moved less under every rendering "
        f"({band['at_or_above']} at or above it)"
    )
    if (kept := result["recorded_band"]) is not None:
        console.print(
            f"the bundle's own band ({kept['logit']:.2f}): {kept['covered']} of {kept['pairs']} "
            f"pairs moved less under every rendering; {kept['flips_within']} of the "
            f"{kept['flips']} label changes had both answers within it"
        )
    print_list("Originals without one copy of the same name", result["unmatched"])
    print_list(
        "Unreadable, excluded", [f"{u['path']}: {u['reason']}" for u in result["unreadable"]]
    )
    console.print(f"report: {out_dir / 'pairs.json'} (pairs.csv: one row per pair and rendering)")
    if which is not None:
        from pneumonia.evaluation.pairs import band_left_out, record_pairs

        args = ["pairs", loaded.path, "--originals", originals, "--copies", copies]
        args += [] if only is None else ["--only", only]
        args += [] if band_min_pairs == MIN_BAND_PAIRS else ["--band-min-pairs", band_min_pairs]
        written = record_pairs(loaded.path, result, which, command_line(*args), band_min_pairs)
        console.print(f"recorded in {written} and its model card")
        if (why := band_left_out(result, band_min_pairs)) is not None:
            console.print(f"no borderline band kept: {why}")


COMMANDS: dict[str, Callable[..., None]] = {
    "stress": stress_command,
    "pairs": pairs_command,
    "compare": compare_command,
    "report": report_command,
    "explain": explain_command,
}
