"""`pneumonia serve | export`: deployment, thin wrappers over `pneumonia.serve` and `.export`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pneumonia.cli.common import BackendOpt, ForceOpt, console, user_errors


@user_errors
def serve_command(
    bundle: Annotated[
        Path | None, typer.Argument(help="Model bundle folder (default: the shipped model).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    backend: BackendOpt = "torch",
) -> None:
    """Serve a bundle over HTTP: a web page at /, POST /predict and /explain, /docs."""
    from pneumonia.bundle import load_bundle
    from pneumonia.serve import create_app, model_version, serve

    loaded = load_bundle(bundle)
    app = create_app(loaded, backend=backend)  # a missing or altered ONNX file fails here
    console.print(
        f"serving {model_version(loaded)} ({backend}) on http://{host}:{port}/ (Ctrl+C stops)"
    )
    serve(app, host, port)


@user_errors
def export_command(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder to export.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Write model.onnx into the bundle.")] = False,
    force: ForceOpt = False,
) -> None:
    """Export a bundle's network (ONNX, dynamic batch) and check parity with PyTorch."""
    from pneumonia.bundle import load_bundle
    from pneumonia.export import PARITY_LIMIT, export_onnx

    if not onnx:
        raise typer.BadParameter("say which format: --onnx (the only one so far)")
    result = export_onnx(load_bundle(bundle), force)
    console.print(
        f"ONNX model: {result['path']} (opset {result['opset']}, dynamic batch)\n"
        f"parity on {result['images']} images: max |P_onnx - P_torch| = "
        f"{result['max_abs_diff_probability']:.2e} (limit {PARITY_LIMIT:g}), max logit "
        f"difference {result['max_abs_diff_logit']:.2e}\n"
        f"use it with: pneumonia predict {bundle} IMAGES --backend onnx"
    )


COMMANDS: dict[str, Callable[..., None]] = {"serve": serve_command, "export": export_command}
