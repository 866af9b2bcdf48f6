"""`pneumonia serve | export`: deployment, thin wrappers over `pneumonia.serve` and `.export`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pneumonia.cli.common import BackendOpt, ForceOpt, WorkersOpt, console, user_errors


@user_errors
def serve_command(
    bundle: Annotated[
        Path | None, typer.Argument(help="Model bundle folder (default: the shipped model).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    backend: BackendOpt = "auto",
    max_batch: Annotated[
        int, typer.Option(min=1, max=256, help="Images per network call across requests.")
    ] = 16,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, max=1000, help="How long a request waits for company.")
    ] = 2.0,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Requests that may wait; beyond, 503 + Retry-After.")
    ] = 64,
    threads: Annotated[
        int | None, typer.Option(min=1, help="ONNX Runtime threads (default: all cores).")
    ] = None,
) -> None:
    """Serve a bundle over HTTP: a web page at /, POST /predict and /explain, /docs."""
    from pneumonia.batching import Batching
    from pneumonia.bundle import load_bundle
    from pneumonia.serve import create_app, model_version, serve

    loaded = load_bundle(bundle, backend, threads)  # a missing or altered ONNX file fails here
    app = create_app(loaded, batching=Batching(max_batch, max_wait_ms, max_queue))
    console.print(
        f"serving {model_version(loaded)} ({loaded.backend}) on http://{host}:{port}/ "
        "(Ctrl+C stops)"
    )
    serve(app, host, port)


@user_errors
def export_command(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder to export.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Write model.onnx into the bundle.")] = False,
    int8: Annotated[
        bool,
        typer.Option("--int8", help="Also an int8 copy, kept only if it passes its parity rule."),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Split manifest: train images calibrate, val judges."),
    ] = None,
    calibration_images: Annotated[int, typer.Option(min=8)] = 256,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Export a bundle's network (ONNX, dynamic batch) and check parity with PyTorch; with
    --int8, quantize it and keep the copy only if it answers like the float model."""
    from pneumonia.bundle import ONNX, load_bundle, read_meta
    from pneumonia.export import PARITY_LIMIT, export_onnx

    if not (onnx or int8):
        raise typer.BadParameter("say which format: --onnx, --int8 (needs model.onnx), or both")
    if onnx or ONNX not in read_meta(bundle)[1].files:
        result = export_onnx(load_bundle(bundle), force)
        console.print(
            f"ONNX model: {result['path']} (opset {result['opset']}, dynamic batch)\n"
            f"parity on {result['images']} images: max |P_onnx - P_torch| = "
            f"{result['max_abs_diff_probability']:.2e} (limit {PARITY_LIMIT:g}), max logit "
            f"difference {result['max_abs_diff_logit']:.2e}"
        )
    if int8:
        from pneumonia.quantize import quantize_bundle

        if data is None:
            raise typer.BadParameter("--int8 needs --data MANIFEST (train calibrates, val judges)")
        q = quantize_bundle(
            load_bundle(bundle, "onnx"),
            data,
            images=calibration_images,
            workers=workers,
            force=force,
        )
        verdict = "kept: model.int8.onnx" if q["passed"] else "NOT kept"
        console.print(
            f"int8 on {q['judged_on']}: ROC-AUC {q['roc_auc_float']:.4f} -> "
            f"{q['roc_auc_int8']:.4f}, same labels {q['same_labels']:.4f} ({q['rule']}): "
            f"{verdict}"
        )
    console.print("predict, evaluate and serve use the fastest kept model (--backend auto)")


COMMANDS: dict[str, Callable[..., None]] = {"serve": serve_command, "export": export_command}
