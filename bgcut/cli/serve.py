"""``bgcut serve``: the HTTP API and web page (``pip install 'bgcut[serve]'``)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..collector import imports_uncollected
from ..config import RunOptions
from ..serve.options import ServeOptions
from ._common import DeviceOpt, ModelOpt, WeightsOpt, ranged, reported_errors

SERVE, RUN = ServeOptions(), RunOptions()
INSTALL_HINT = "bgcut serve needs its extra: pip install 'bgcut[serve]'"


def serve_cli(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface; mind --token).")
    ] = SERVE.host,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            "-p",
            help=ranged("Port to listen on.", ServeOptions, "port"),
        ),
    ] = SERVE.port,
    model: ModelOpt = RUN.model,
    weights: WeightsOpt = RUN.weights,
    device: DeviceOpt = RUN.device,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch",
            help=ranged(
                "Requests run together in one forward pass (default: as bgcut remove).", ServeOptions, "max_batch"
            ),
        ),
    ] = SERVE.max_batch,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms",
            help=ranged("How long a request waits for others to batch with.", ServeOptions, "max_wait_ms"),
        ),
    ] = SERVE.max_wait_ms,
    max_queue: Annotated[
        int,
        typer.Option(
            "--max-queue",
            help=ranged("Requests waiting for the model; more get 503 with Retry-After.", ServeOptions, "max_queue"),
        ),
    ] = SERVE.max_queue,
    max_upload_mb: Annotated[
        float,
        typer.Option(
            "--max-upload-mb",
            help=ranged("Largest upload.", ServeOptions, "max_upload_mb"),
        ),
    ] = SERVE.max_upload_mb,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            help=ranged("Largest image, in pixels.", ServeOptions, "max_pixels"),
        ),
    ] = SERVE.max_pixels,
    max_memory_mb: Annotated[
        int,
        typer.Option(
            "--max-memory-mb",
            help=ranged(
                "Memory for the images in flight (40 bytes per pixel each); more wait, then get 503.",
                ServeOptions,
                "max_memory_mb",
            ),
        ),
    ] = SERVE.max_memory_mb,
    max_seconds: Annotated[
        float,
        typer.Option(
            "--max-seconds",
            help=ranged(
                "One request's time limit once uploaded: 503 while waiting, 504 once running.",
                ServeOptions,
                "max_seconds",
            ),
        ),
    ] = SERVE.max_seconds,
    grace_seconds: Annotated[
        float,
        typer.Option(
            "--grace-seconds",
            help=ranged("On SIGTERM, how long requests in flight may take to finish.", ServeOptions, "grace_seconds"),
        ),
    ] = SERVE.grace_seconds,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            "--allowed-hosts",
            help="Comma-separated Host header names answered (default: the --host address and localhost; any for 0.0.0.0); * for any.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="BGCUT_TOKEN", help="Require 'Authorization: Bearer TOKEN' on API calls."),
    ] = SERVE.token,
) -> None:
    """Serve the HTTP API and a web page: POST /remove, GET /models, GET /health, docs at /docs.

    Example: bgcut serve --port 8000, then open http://127.0.0.1:8000/ or
    curl -F image=@photo.jpg 'http://127.0.0.1:8000/remove?format=png-alpha' > cut.png
    """
    with reported_errors():
        opts = ServeOptions(
            host=host,
            port=port,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            max_upload_mb=max_upload_mb,
            max_pixels=max_pixels,
            max_memory_mb=max_memory_mb,
            max_seconds=max_seconds,
            grace_seconds=grace_seconds,
            token=token,
            allowed_hosts=tuple(h.strip() for h in allowed_hosts.split(",") if h.strip()) if allowed_hosts else None,
        )
        with imports_uncollected():
            from ..pipeline.infer import Predictor  # outside the try: a torch that fails is not the extra's hint

            try:
                import uvicorn

                from ..serve.app import create_app
            except ImportError:
                from ..errors import UsageError

                raise UsageError(INSTALL_HINT) from None
        run = RunOptions(model=model, weights=weights, device=device, batch_size=opts.max_batch)
        predictor = Predictor.from_options(run, pad=False)
        app = create_app(opts, predictor)
    if opts.exposed and opts.token is None:
        typer.echo(
            f"bgcut: warning: listening on {opts.host} with no --token: anyone who can reach this machine "
            "can use the server; set --token (or BGCUT_TOKEN)",
            err=True,
        )
    typer.echo(f"bgcut serve: {predictor.model_name} on {predictor.device}, http://{opts.host}:{opts.port}/", err=True)
    # SIGTERM: uvicorn stops accepting, waits up to the grace period for the requests in flight,
    # then cancels them; each cancelled request calls its job off, so only the stage running ends,
    # and is answered 503 (serve/stopping.py).
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning", timeout_graceful_shutdown=opts.grace_seconds)
