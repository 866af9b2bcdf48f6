"""The `pneumonia` command: a thin typer wrapper over the package's functions."""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from rich.logging import RichHandler

from pneumonia.cli import insight, model, operating, pacs, service
from pneumonia.cli.common import console, err
from pneumonia.cli.data import data_app
from pneumonia.core import __version__

app = typer.Typer(
    help="Train, evaluate, explain and serve pediatric chest X-ray pneumonia classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(data_app, name="data")
for _name, _command in {
    **model.COMMANDS,
    **operating.COMMANDS,
    **insight.COMMANDS,
    **service.COMMANDS,
    **pacs.COMMANDS,
}.items():
    app.command(_name)(_command)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"pneumonia {__version__}")
        raise typer.Exit()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    # Lightning prints through its own handler; route it through ours, once, and quieter.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(level)


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
    _setup_logging(verbose)


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
