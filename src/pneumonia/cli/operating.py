"""`pneumonia threshold`: re-tune a bundle's operating point on labelled validation data, or
adapt it to a site from the site's unlabelled images; thin wrappers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pneumonia.cli.common import (
    DefaultBundleArg,
    WorkersOpt,
    command_line,
    console,
    scoring_options,
    user_errors,
)
from pneumonia.cli.model import metrics_table
from pneumonia.core.card import curve_cell
from pneumonia.core.options import Scoring


@user_errors
@scoring_options(track=False)
def threshold_command(
    scoring: Scoring,
    bundle: DefaultBundleArg = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Labelled validation data: manifest, folder, .npz, CSV."),
    ] = None,
    unlabelled: Annotated[
        list[str] | None,
        typer.Option(
            "--unlabelled",
            help="A site's unlabelled images (folder, files or globs; repeat): adapt the "
            "threshold to the site's prevalence, estimated without labels. Needs --out.",
        ),
    ] = None,
    audit: Annotated[
        Path | None,
        typer.Option(
            help="A label audit's label_issues.csv: its flagged images stay out of the fit."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Validation split (never test).")] = "val",
    rule: Annotated[
        str, typer.Option(help="target_sensitivity | youden | cost | fixed.")
    ] = "target_sensitivity",
    target_sensitivity: Annotated[
        float | None,
        typer.Option(
            min=0.5, max=1.0, help="Default: 0.99, or with --unlabelled the bundle's own target."
        ),
    ] = None,
    cost_ratio: Annotated[float, typer.Option(help="A missed pneumonia / a false alarm.")] = 10.0,
    fixed: Annotated[float, typer.Option(help="Threshold for --rule fixed.")] = 0.5,
    calibrate: Annotated[bool, typer.Option(help="Fit temperature scaling first.")] = True,
    view: Annotated[
        list[str] | None,
        typer.Option("--view", help="A shift whose view joins the clean one (repeat; see stress)."),
    ] = None,
    pool: Annotated[str, typer.Option(help="pooled | worst, over the views.")] = "pooled",
    smooth: Annotated[
        bool, typer.Option(help="Harrell-Davis quantile for target_sensitivity (the default rule).")
    ] = True,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write a new bundle.")] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Rewrite BUNDLE's model.json.")
    ] = False,
) -> None:
    """Re-tune a bundle's calibration and threshold on labelled validation data (--data), or
    adapt its threshold to a site from the site's unlabelled images (--unlabelled)."""
    from pneumonia.inference.loading import load_bundle

    if (data is None) == (not unlabelled):
        raise typer.BadParameter("give labelled --data or a site's --unlabelled images (one)")
    if in_place and bundle is None:
        raise typer.BadParameter("--in-place rewrites a bundle you name; the shipped one is not")
    if unlabelled:
        if out is None:
            raise typer.BadParameter("--unlabelled writes a new site bundle: add --out FOLDER")
        _site(load_bundle(bundle), unlabelled, out, target_sensitivity, scoring)
        return
    assert data is not None
    settings = dict(rule=rule, target_sensitivity=target_sensitivity or 0.99, fixed=fixed,
                    cost_ratio=cost_ratio, calibrate=calibrate, views=view or [], pool=pool,
                    smooth=smooth)  # fmt: skip
    _labelled(load_bundle(bundle), data, split, settings, (out, in_place), scoring, audit)


def _labelled(
    bundle: Any,
    data: Path,
    split: str,
    settings: dict[str, Any],
    target: tuple[Path | None, bool],
    scoring: Scoring,
    audit: Path | None,
) -> None:
    """`threshold --data`: the operating point fitted again on labelled validation data."""
    from pydantic import ValidationError

    from pneumonia.core.config import OperatingConfig
    from pneumonia.core.errors import ConfigError
    from pneumonia.evaluation.tune import retune

    try:
        cfg = OperatingConfig(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid option {first['loc'][0]}: {first['msg']}") from None
    result = retune(bundle, data, split, cfg, *target, scoring, audit)
    t, c, v = result["operating_point"], result["calibration"], result["validation"]
    console.print(
        f"threshold {t.value:.4g} (rule {t.rule}, was {t.detail['previous']['value']:.4g})"
    )
    if t.detail.get("left_out"):
        console.print(f"fitted without {t.detail['left_out']} validation images the audit flags")
    if c is not None:
        console.print(
            f"temperature {c.temperature:.3f}: ECE {c.ece_before:.4f} -> {c.ece_after:.4f}, "
            f"Brier {c.brier_before:.4f} -> {c.brier_after:.4f}"
        )
    console.print(metrics_table(f"On {v['data']} ({v['n']} images)", v))
    console.print(f"bundle: {result['bundle']}")


def _site(
    bundle: Any, inputs: list[str], out: Path, target: float | None, scoring: Scoring
) -> None:
    """`threshold --unlabelled`: the site's prevalence, curve and threshold, without labels."""
    from pneumonia.evaluation.site import adapt_to_site

    result = adapt_to_site(bundle, inputs, out, target, scoring.n_boot, scoring.workers)
    fit, counts = result["fit"], result["counts"]
    low, high = fit.prevalence_interval
    console.print(
        f"site: {fit.n} usable images of {counts['images']} ({counts['unreadable']} unreadable, "
        f"{counts['flagged']} flagged by the guard)\n"
        f"prevalence of PNEUMONIA: {fit.prevalence:.3f} (95% bootstrap {low:.3f}-{high:.3f}); "
        f"validation: {fit.validation_prevalence:.3f}, which the same estimator puts at "
        f"{result['validation_estimate'] or float('nan'):.3f}\n"
        f"threshold {fit.threshold:.4g} (was {result['previous']:.4g}; 95% bootstrap "
        f"{fit.threshold_interval[0]:.4g}-{fit.threshold_interval[1]:.4g}): expected "
        f"sensitivity {fit.expected_sensitivity:.4f}, aimed at {fit.aim:.4f} (the target plus "
        "the estimator's bias on validation)\n"
        "the threshold assumes only the prevalence moved (calibrated posteriors); the curve's "
        "specificity allows the NORMAL films to differ; check both on labelled cases when you "
        "have them",
        highlight=False,
    )
    console.print(curve_table(result["curve"], result["target"]))
    console.print(f"site bundle: {result['bundle']}")


def curve_table(curve: list[dict[str, Any]], stored_target: float) -> Table:
    """The site's estimated operating curve: per target, threshold and expected rates with
    their 95% intervals; the row the site bundle stores is marked."""
    table = Table(
        title="Estimated for this site, without labels (choose with --target-sensitivity)",
        caption="sensitivity: validation's PNEUMONIA films at the threshold; specificity: "
        "from this batch's own calls, over every prevalence it allows (its NORMAL films may "
        "look unlike validation's); 'cannot tell': bounds wider than 0.25; 95% intervals",
    )
    for col in ("target", "threshold", "expected sensitivity", "expected specificity", ""):
        table.add_column(col, justify="right")
    for row in curve:
        table.add_row(
            f"{row['target']:.2f}",
            curve_cell(row, "threshold", 4),
            curve_cell(row, "sensitivity", 3),
            curve_cell(row, "specificity", 3),
            "stored" if abs(row["target"] - stored_target) < 1e-12 else "",
        )
    return table


@user_errors
def recontract_command(
    bundle: Annotated[Path | None, typer.Argument(help="Bundle (default: the shipped model).")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="The split manifest the bundle was trained on.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new bundle's folder.")],
    resize: Annotated[
        str | None, typer.Option(help="stretch | pad | crop (default: the bundle's).")
    ] = None,
    render: Annotated[
        str | None,
        typer.Option(
            help="SIDE:QUALITY[:BLUR]: render every image as the training copies were first "
            "(224:75 for the Kaggle copies), with BLUR a Gaussian sigma in pixels of that "
            "square after it; 'none' for no render step (default: the bundle's)."
        ),
    ] = None,
    workers: WorkersOpt = None,
) -> None:
    """The same weights under another input contract: calibration, threshold, guard and the
    int8 model fitted or judged again under it."""
    from pneumonia.core.bundle import read_meta
    from pneumonia.core.errors import ConfigError
    from pneumonia.core.preprocess import RESIZE_MODES, Render
    from pneumonia.training.recontract import recontract

    _, meta = read_meta(bundle)
    update: dict[str, Any] = {}
    if resize is not None:
        if resize not in RESIZE_MODES:
            raise ConfigError(f"--resize {resize!r}: choose from {', '.join(RESIZE_MODES)}")
        update["resize"] = resize
    if render is not None:
        update["render"] = None if render == "none" else _render(render, Render)
    contract = meta.preprocessing.model_copy(update=update)
    if contract == meta.preprocessing:
        raise ConfigError("the contract would not change; pass --resize or --render")
    args: list[object] = [a for a in (bundle, "--data", data, "--out", out) if a is not None]
    args += [f"--resize={resize}"] if resize is not None else []
    args += [f"--render={render}"] if render is not None else []
    result = recontract(bundle, contract, data, out, command_line("recontract", *args), workers)
    t = result["threshold"]
    console.print(f"contract: {contract.describe()}")
    console.print(
        f"threshold {t.value:.4g} (rule {t.rule}, was {t.detail['previous']['value']:.4g})"
    )
    if result["guard"] is not None:
        console.print(f"guard fitted again: {100 * result['guard'].validation['flagged']:.1f}% "
                      "of validation flagged")  # fmt: skip
    if result["int8"] is not None:
        kept = "kept" if result["int8"]["passed"] else "dropped (fails its parity rule)"
        console.print(f"int8 model judged again: {kept}")
    console.print(f"bundle: {result['bundle']}")


def _render(text: str, render: Any) -> Any:
    from pneumonia.core.errors import ConfigError

    side, _, rest = text.partition(":")
    quality, _, blur = rest.partition(":")
    try:
        if not (side.isdigit() and quality.isdigit()):
            raise ValueError(text)
        return render(side=int(side), quality=int(quality), blur=float(blur or 0))
    except ValueError as exc:  # pydantic's ValidationError is one too
        raise ConfigError(
            f"--render {text!r}: expected SIDE:QUALITY[:BLUR], e.g. 224:75 or 224:75:0.8 "
            "(quality 1-100, blur 0-8), or none"
        ) from exc


COMMANDS: dict[str, Callable[..., None]] = {
    "threshold": threshold_command,
    "recontract": recontract_command,
}
