"""`pneumonia dicom-node`: the DICOM node, a thin wrapper over `pneumonia.pacs.node`."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pneumonia.cli.common import BackendOpt, console, user_errors


@user_errors
def dicom_node_command(
    bundle: Annotated[
        Path | None, typer.Argument(help="Model bundle folder (default: the shipped model).")
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="DICOM port to listen on.")] = 11112,
    ae_title: Annotated[str, typer.Option(help="This node's AE title.")] = "PNEUMONIA",
    allow: Annotated[
        list[str] | None,
        typer.Option(help="A calling AE title to accept (repeat); every other is rejected."),
    ] = None,
    store_to: Annotated[
        list[str] | None,
        typer.Option(help="Send results by C-STORE to AET@HOST:PORT (repeat for several)."),
    ] = None,
    stow_to: Annotated[
        list[str] | None,
        typer.Option(help="Send results by STOW-RS to a DICOMweb URL (repeat for several)."),
    ] = None,
    log: Annotated[
        str | None,
        typer.Option(
            envvar="PNEUMONIA_LOG",
            help="Prediction log and the node's journal: a SQLite file or a postgresql:// URL, "
            "as for `serve` (default: a journal in the spool, no prediction log).",
        ),
    ] = None,
    spool: Annotated[
        Path, typer.Option(help="Where results wait until their destination has them.")
    ] = Path("dicom-spool"),
    capture: Annotated[
        bool, typer.Option(help="Also send the Grad-CAM overlay as a Secondary Capture.")
    ] = True,
    age_range: Annotated[
        str, typer.Option(help="Patient ages answered, in years (LOW-HIGH, HIGH excluded).")
    ] = "1-6",
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: all).")] = "127.0.0.1",
    backend: BackendOpt = "auto",
) -> None:
    """Receive chest films over DICOM (a Storage SCP), answer each frontal CR/DX film of a child
    with a DICOM SR (and a Grad-CAM capture) sent back to --store-to / --stow-to."""
    from pneumonia.data.dicom_rules import AgeRange
    from pneumonia.inference.loading import load_bundle
    from pneumonia.pacs.node import Node, NodeOptions
    from pneumonia.pacs.outbox import Destination

    destinations = tuple(Destination.parse(d) for d in [*(store_to or []), *(stow_to or [])])
    options = NodeOptions(
        allow=tuple(allow or ()), destinations=destinations, spool=spool, ae_title=ae_title,
        host=host, port=port, log=log, capture=capture, ages=AgeRange.parse(age_range),
    )  # fmt: skip
    if not destinations:
        console.print("[yellow]no --store-to or --stow-to: answers are journalled, sent nowhere")
    node = Node(load_bundle(bundle, backend), options)
    for name in ("highdicom", "pynetdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)
    node.start()
    console.print(
        f"DICOM node {ae_title} on {host}:{port} answering {', '.join(options.allow)}; "
        f"results to {', '.join(d.text for d in destinations) or 'nowhere'}; "
        f"journal: {node.journal.where} (Ctrl+C stops)"
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()


COMMANDS: dict[str, Callable[..., None]] = {"dicom-node": dicom_node_command}
