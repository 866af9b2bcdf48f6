"""`pneumonia serve | export | guard | monitor`: deployment and operation, thin wrappers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pneumonia.cli.common import BackendOpt, ForceOpt, OutOpt, WorkersOpt, console, user_errors
from pneumonia.core.config import GuardConfig

GUARD_DEFAULTS = GuardConfig()  # `pneumonia guard` fits what training fits by default


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
        int | None,
        typer.Option(
            min=1, help="ONNX Runtime calls at once, one thread each (default: one per core)."
        ),
    ] = None,
    log: Annotated[
        str,
        typer.Option(
            envvar="PNEUMONIA_LOG",
            help="Prediction log, appended to (read by `monitor`): a SQLite file, or a "
            "postgresql://user@host/db URL that several replicas share (its password from "
            "$PNEUMONIA_LOG_PASSWORD_FILE, so that no command line shows it).",
        ),
    ] = "logs/predictions.sqlite",
    no_log: Annotated[bool, typer.Option("--no-log", help="Keep no prediction log.")] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            envvar="PNEUMONIA_TOKEN_FILE",
            help="API tokens, one a line (with or instead of $PNEUMONIA_API_TOKEN); then every "
            "route but /health needs Authorization: Bearer <token>.",
        ),
    ] = None,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous",
            help="Serve a non-loopback --host without a token (behind a proxy that authenticates).",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host header to answer (repeat; default on loopback: localhost names only).",
        ),
    ] = None,
    max_files: Annotated[int, typer.Option(min=1, max=256, help="Files per request.")] = 8,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Decoded pixels per image, judged from its header.")
    ] = 25_000_000,
) -> None:
    """Serve a bundle over HTTP: a web page at /, POST /predict and /explain; every prediction
    is logged (no pixels, no file names) for `pneumonia monitor`."""
    from pneumonia.inference.loading import load_bundle
    from pneumonia.serving.batching import Batching
    from pneumonia.serving.security import Door, Tokens, allowed_hosts, check_exposure, is_loopback
    from pneumonia.serving.serve import create_app, model_version, serve
    from pneumonia.serving.uploads import Limits

    tokens = Tokens.load(token_file)
    check_exposure(host, tokens, allow_anonymous)
    limits = Limits(max_files=max_files, max_pixels=max_pixels)
    door = Door(
        tokens=tokens,
        anonymous=not tokens.values,
        allowed_hosts=allowed_hosts(host, allowed_host or []),
        max_body_bytes=limits.max_body_bytes,
    )
    loaded = load_bundle(bundle, backend, threads)  # a missing or altered ONNX file fails here
    batching = Batching(max_batch, max_wait_ms, max_queue)
    app = create_app(loaded, limits, batching, None if no_log else log, door)
    where = "off" if no_log else app.state.service.log.where
    who = f"{len(tokens.values)} token(s)" if tokens.values else "anyone (no token)"
    if not tokens.values and not is_loopback(host):
        who += ", --allow-anonymous"
    console.print(
        f"serving {model_version(loaded)} ({loaded.backend}) on http://{host}:{port}/ "
        f"(Ctrl+C stops); answers {who}; prediction log: {where}"
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
    from pneumonia.core.bundle import ONNX, read_meta
    from pneumonia.inference.loading import load_bundle
    from pneumonia.modeling.export import PARITY_LIMIT, export_onnx

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
        from pneumonia.core.card import int8_summary
        from pneumonia.training.quantize import quantize_bundle

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
        console.print(f"int8 {verdict}. {int8_summary(q)}", highlight=False)
    console.print("predict, evaluate and serve use the fastest kept model (--backend auto)")


@user_errors
def guard_command(
    bundle: Annotated[Path, typer.Argument(help="Model bundle folder to guard.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Split manifest (default: the one it trained on)."),
    ] = None,
    views: Annotated[
        int, typer.Option(min=0, max=16, help="Augmented copies of each training image.")
    ] = GUARD_DEFAULTS.augmented_views,
    max_flag_rate: Annotated[
        float, typer.Option(min=0.001, max=0.5, help="Share of validation X-rays it may flag.")
    ] = GUARD_DEFAULTS.max_flag_rate,
    force: ForceOpt = False,
) -> None:
    """Fit the out-of-distribution guard of a bundle made without one (training fits it)."""
    from pneumonia.training.guard_fit import guard_bundle

    cfg = GuardConfig(augmented_views=views, max_flag_rate=max_flag_rate)
    record = guard_bundle(bundle, data, cfg, force)
    flagged = record.validation["corpus_flagged"]
    console.print(
        f"guard: threshold {record.threshold:.4g} on {record.features} features; flags "
        f"{100 * record.validation['flagged']:.1f}% of {record.validation['images']} "
        "validation X-rays and, of the generated corpus: "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in flagged.items())
    )


@user_errors
def monitor_command(
    logs: Annotated[
        list[str],
        typer.Argument(
            help="The service's prediction log: a SQLite file, several (one per replica, "
            "merged), or a postgresql:// URL.",
            show_default=False,
        ),
    ],
    bundle: Annotated[
        Path | None, typer.Option("--bundle", "-b", help="The served bundle (default: shipped).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Window start: an ISO date or time, or 7d / 12h ago.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end (exclusive), same forms.")] = None,
    out: OutOpt = Path("reports/monitor"),
    force: ForceOpt = False,
) -> None:
    """Drift report of a prediction log against the bundle's validation reference; exits 3
    when an alert rule trips (for cron jobs and CI)."""
    from pneumonia.core.outputs import fresh_dir
    from pneumonia.monitoring.monitor import monitor

    result = monitor(logs, bundle, fresh_dir(out, force), since, until)
    table = Table(
        title=f"{result['volume']['predictions']} predictions by {result['model_version']}"
    )
    for col in ("rule", "value", "alerts when", "status"):
        table.add_column(col, overflow="fold")
    for r in result["rules"]:
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        status = (
            "[bold red]ALERT[/]" if r["tripped"] else "not judged" if r["value"] is None else "ok"
        )
        table.add_row(r["rule"], value, r["limit"], status)
    console.print(table)
    for r in result["alerts"]:
        if "command" in r:
            console.print(f"[bold]{r['rule']}[/]: {r['command']}", highlight=False, soft_wrap=True)
    console.print(f"report: {out / 'monitor.html'} and monitor.json")
    if result["alerts"]:
        raise typer.Exit(3)


COMMANDS: dict[str, Callable[..., None]] = {
    "monitor": monitor_command,
    "serve": serve_command,
    "export": export_command,
    "guard": guard_command,
}
