"""Shared pieces of the command line: consoles, option types, error handling, tables."""

from __future__ import annotations

import errno
import functools
import inspect
import os
import shlex
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pneumonia.core import LABELS
from pneumonia.core.config import Config, load_config
from pneumonia.core.errors import PneumoniaError

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
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
DataOpt = Annotated[
    Path, typer.Option("--data", "-d", help="Dataset folder, .npz, CSV, or split manifest.")
]
DefaultBundleArg = Annotated[
    Path | None, typer.Argument(help="Model bundle folder (default: the shipped model).")
]
BootstrapOpt = Annotated[
    int, typer.Option(min=0, help="Bootstrap resamples for the intervals (0: none).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
TtaOpt = Annotated[
    bool, typer.Option("--tta", help="Mean over 5 shifted views (test-time augmentation).")
]
TrackOpt = Annotated[
    bool, typer.Option("--track/--no-track", help="Log this run to MLflow (tracking).")
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow store; default $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db.",
    ),
]
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="auto (ONNX Runtime when the bundle has a verified model.onnx, its int8 copy if "
        "that passed its parity check with the bundle's guard, else PyTorch) | "
        "onnx | int8 | torch.",
    ),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Worker processes (default: all cores).")
]


def scoring_options(
    bootstrap: int = 1000, tta: bool = True, track: bool = True
) -> Callable[[F], F]:
    """The options `evaluate`, `report`, `compare`, `stress` and `threshold` share, declared
    once: the decorated command takes `scoring: Scoring` instead of `--workers`,
    `--bootstrap` (default `bootstrap`; 0: the command has none), `--tta`, `--track` and
    `--tracking-uri` (the last three where asked), which typer then shows as its own."""
    from pneumonia.core.config import TrackingConfig
    from pneumonia.core.options import Scoring

    added: dict[str, tuple[Any, Any]] = {"workers": (WorkersOpt, None)}
    if bootstrap:
        added["bootstrap"] = (BootstrapOpt, bootstrap)
    if tta:
        added["tta"] = (TtaOpt, False)
    if track:
        added |= {"track": (TrackOpt, True), "tracking_uri": (TrackingUriOpt, None)}

    def decorate(command: F) -> F:
        hints = typing.get_type_hints(command, include_extras=True)  # in the command's module
        signature = inspect.signature(command)
        kept = [
            p.replace(annotation=hints[p.name])
            for p in signature.parameters.values()
            if p.name != "scoring"
        ]
        extra = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind
            )
            for name, (kind, default) in added.items()
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            tracking = None
            if track:
                enabled, uri = kwargs.pop("track"), kwargs.pop("tracking_uri")
                tracking = TrackingConfig(enabled=enabled, uri=uri)
            scoring = Scoring(
                workers=kwargs.pop("workers"),
                n_boot=kwargs.pop("bootstrap") if bootstrap else 0,
                tta=kwargs.pop("tta") if tta else False,
                tracking=tracking,
            )
            return command(*args, scoring=scoring, **kwargs)

        annotations = {k: v for k, v in hints.items() if k != "scoring"}
        run.__annotations__ = {**annotations, **{n: kind for n, (kind, _) in added.items()}}
        run.__signature__ = signature.replace(parameters=[*kept, *extra])  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


# Packages of the `train` extra, absent from an inference-only install.
TRAINING_ONLY = {
    "torch",
    "torchvision",
    "lightning",
    "timm",
    "pytorch_grad_cam",
    "onnx",
    "mlflow",
    "kagglehub",
}

# Errors of the machine, not of the code: said in one line, with what to do about them.
MACHINE_ERRORS = {
    errno.EACCES: "permission denied for user id {uid}; make it readable (and writable, for "
    "outputs) by that user, or run as its owner",
    errno.EPERM: "operation not permitted for user id {uid}",
    errno.ENOSPC: "no space left on the device; free some and run again",
    errno.EROFS: "read-only file system; write the outputs somewhere writable",
}


def user_errors(fn: F) -> F:
    """Print a `PneumoniaError`, or an error of the machine (permissions, a full disk), as one
    red line and exit 1 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PneumoniaError as exc:
            message = str(exc)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] not in TRAINING_ONLY:
                raise
            message = (
                f"this command needs {exc.name.split('.')[0]}, part of the training install "
                "(this one is inference-only: predict, evaluate and serve on ONNX Runtime); "
                "pip install 'pneumonia[train]'"
            )
        except OSError as exc:
            if exc.errno not in MACHINE_ERRORS:
                raise
            reason = MACHINE_ERRORS[exc.errno].format(uid=os.getuid())
            message = f"{exc.filename}: {reason}" if exc.filename else reason
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def resolve_config(config: Path | None, overrides: list[str] | None, *extra: str) -> Config:
    """Defaults <- `--config` file <- overrides <- `extra` (flags turned into overrides)."""
    return load_config(config, [*(overrides or []), *extra])


def counts_table(title: str, counts: dict[str, dict[str, int]]) -> Table:
    """Images per split and class, with the share of PNEUMONIA."""
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


def print_list(title: str, lines: list[str], limit: int = 20) -> None:
    """A titled, truncated list (the rest is in the JSON output)."""
    if not lines:
        return
    console.print(f"[bold yellow]{title}[/] ({len(lines)})")
    for line in lines[:limit]:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    if len(lines) > limit:
        console.print(f"  ... and {len(lines) - limit} more (see the JSON report)")


def command_line(*args: object) -> str:
    """The command as a user would type it, quoted for a shell."""
    return shlex.join(["pneumonia", *(str(a) for a in args)])


def fmt(value: float | None) -> str:
    """A metric with 4 decimals, or n/a."""
    return "n/a" if value is None else f"{value:.4f}"


def say_backend(bundle: Any) -> None:
    """One line on stderr: which runtime answers for the bundle."""
    what = {
        "onnx": "ONNX Runtime (model.onnx, verified)",
        "int8": "ONNX Runtime, int8 (model.int8.onnx, verified, passed its parity check)",
    }.get(bundle.backend, "PyTorch")
    err.print(f"backend: {what}", highlight=False)


def split_bundle(items: list[str]) -> tuple[str | None, list[str]]:
    """`[BUNDLE] PATHS...` -> (bundle folder or None for the default, the rest)."""
    first = Path(items[0])
    if first.is_dir() and (first / "model.json").is_file():
        return items[0], items[1:]
    return None, items


def guard_cell(p: Any) -> str:
    """The guard's verdict on one prediction, for a table."""
    if p.in_distribution is None:
        return "-" if p.probability is None else "no guard"
    if p.in_distribution:
        return f"yes ({p.ood_score:.2f})"
    return f"[bold yellow]NO ({p.ood_score:.2f}): do not trust[/]"


def say_guard(bundle: Any, predictions: list[Any]) -> None:
    """A line about images the guard flagged, or about a bundle that has no guard."""
    if bundle.guard is None:
        err.print(
            f"note: {bundle.path} has no out-of-distribution guard, so nothing says whether an "
            f"input is a chest X-ray at all; add one with `pneumonia guard {bundle.path}`",
            highlight=False,
            soft_wrap=True,
        )
        return
    flagged = sum(p.in_distribution is False for p in predictions)
    if flagged:
        err.print(
            f"[bold yellow]{flagged} image(s) do not look like the pediatric frontal chest "
            f"X-rays this model learned from[/] (guard score above {bundle.guard.threshold:.3g}); "
            "their probabilities are not to be trusted",
            highlight=False,
            soft_wrap=True,
        )


def say_borderline(bundle: Any, predictions: list[Any]) -> None:
    """A line about borderline answers, where the bundle records a band."""
    band = bundle.meta.borderline
    count = sum(bool(p.borderline) for p in predictions)
    if band is None or not count:
        return
    low, high = band.limits(bundle.threshold)
    err.print(
        f"[yellow]{count} answer(s) are borderline[/] (P in [{low:.3g}, {high:.3g})): another "
        "file of the same X-ray (its original, a DICOM export, a copy) could change the label; "
        "review them",
        highlight=False,
        soft_wrap=True,
    )
