"""The HTTP API and the web page of ``bgcut serve`` (FastAPI on uvicorn: ``pip install 'bgcut[serve]'``).

Per request: the upload is read with a size limit, decoded and resized for the model in a
worker thread (never on the event loop), batched with other requests on the one model
(``batcher.py``), then rendered and encoded in a worker thread with the same functions as
the command line (``postprocess.render``, ``writer.encode``). Every failure is a 4xx or 5xx
with a one-line JSON body ``{"error": "..."}``. No request names a path: ``bg`` is a colour
only, and nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import hmac
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..config import (
    FORMATS,
    OutputOptions,
    PostOptions,
    parse_blur,
    parse_colour,
    shown_value,
)
from ..errors import DeviceMemoryError, ImageError, ImageTooLargeError, UsageError
from ..images import Decoded, image_size, open_image
from ..models import list_models
from ..pipeline.infer import Predictor
from ..pipeline.postprocess import Background, render
from ..pipeline.target import load_background
from ..pipeline.writer import encode
from .admission import CalledOff, Full, Job, MemoryBudget, TooLarge
from .batcher import Batcher, Busy
from .options import SERVE_BYTES_PER_PIXEL, ServeOptions
from .stopping import AnswerWhenStopped

RETRY_AFTER_S = 1


class Refused(Exception):
    """One request's failure: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


@dataclass
class Settings:
    """One request's cut-out options, checked by the same options objects as the command line's."""

    out: OutputOptions
    post: PostOptions
    bg: Background | None


OUTPUT_PARAMS = ("format", "bg", "margin")
POST_DEFAULTS = PostOptions()
# Every PostOptions field is a parameter of the same name; its default's type says how to read it.
POST_PARAMS = {f.name: getattr(POST_DEFAULTS, f.name) for f in fields(PostOptions)}


def _post_value(name: str, text: str, default: object) -> object:
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, (int, float)):
        try:
            return type(default)(text)
        except ValueError:
            raise Refused(400, f"{name} {text!r}: expected a number") from None
    return text


def _settings(items: list[tuple[str, str]]) -> Settings:
    """A request's query parameters (each name and value, as sent) -> its options, or a 400."""
    known = {*OUTPUT_PARAMS, *POST_PARAMS}
    params = dict(items)
    unknown = sorted(set(params) - known)
    if unknown:
        raise Refused(400, f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(known))}")
    if len(params) < len(items):  # ?format=png-alpha&format=mask: which one was meant is a guess
        twice = sorted(name for name, count in Counter(name for name, _ in items).items() if count > 1)
        raise Refused(400, f"parameter {twice[0]!r} given more than once")
    bg = params.get("bg")
    try:
        blur = parse_blur(bg, "bg") if bg else None
        colour = parse_colour(bg, "bg") if bg and blur is None else None
    except UsageError as e:
        raise Refused(400, str(e)) from None
    if bg and colour is None and blur is None:  # never a path: a request must not make the server read a file
        raise Refused(
            400, f"bg {shown_value(bg)}: expected a colour (white, #00ff00, 0,255,0, rgb(0,255,0)) or blur[:SIGMA]"
        )
    if params.get("refine") == "matting":
        raise Refused(400, "refine 'matting' takes seconds per image: not offered by the server")
    given = {name: _post_value(name, params[name], default) for name, default in POST_PARAMS.items() if name in params}
    out_defaults = OutputOptions()
    try:
        out = OutputOptions(
            format=params.get("format", out_defaults.format), margin=params.get("margin", out_defaults.margin)
        )
        post = PostOptions(**given)  # type: ignore[arg-type]
    except UsageError as e:
        raise Refused(400, str(e).removeprefix("--")) from None  # "threshold 2.0: must be ..."
    # Only a colour or blur gets here (never a path), which load_background makes ready as the CLI's.
    return Settings(out, post, load_background(bg) if bg else None)


def _refused(e: ImageError) -> Refused:
    """An upload's image error as the server answers it."""
    if isinstance(e, ImageTooLargeError):
        pixels = e.width * e.height
        return Refused(413, f"{e.width}x{e.height} = {pixels} pixels is over the server's limit of {e.limit}")
    return Refused(400, str(e))


def _cost(data: bytes, max_pixels: int) -> int:
    """The bytes this upload's image will hold at its peak, from its header: what admission counts."""
    try:
        w, h = image_size(data, max_pixels)
    except ImageError as e:
        raise _refused(e) from None
    return w * h * SERVE_BYTES_PER_PIXEL


def _decode(data: bytes, max_pixels: int) -> Decoded:
    try:
        return open_image(data, max_pixels)  # the pixel limit is checked on the header, before decoding
    except ImageError as e:
        raise _refused(e) from None


FORM_OVERHEAD = 64 * 1024  # a multipart body's boundaries, headers and small fields, beyond the image


def _counted(request: Request, most: int) -> Request:
    """The same request, whose body stops with a 413 once more than ``most`` bytes have arrived."""
    received = 0

    async def receive() -> dict:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > most:
                raise Refused(413, f"upload is over the limit of {most - FORM_OVERHEAD} bytes")
        return message

    return Request(request.scope, receive)


async def _body(request: Request, limit: int) -> bytes:
    """The image: the ``image`` field of a multipart form, or the raw body; at most ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise Refused(413, f"upload of {int(declared)} bytes is over the limit of {limit}")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        # The form parser spools file parts to disk with no limit of its own, and a chunked body
        # has no Content-Length to refuse up front: count the bytes as they arrive instead.
        form = await _counted(request, limit + FORM_OVERHEAD).form(max_files=1, max_fields=16)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise Refused(400, "multipart upload without an 'image' file field")
        data = await upload.read(limit + 1)
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"upload is over the limit of {limit} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > limit:
        raise Refused(413, f"upload is over the limit of {limit} bytes")
    if not data:
        raise Refused(400, "empty upload: send the image as the body, or as the 'image' field of a form")
    return data


def create_app(opts: ServeOptions, predictor: Predictor) -> FastAPI:
    """The application around one loaded model. ``bgcut serve`` runs it with uvicorn."""
    limit = int(opts.max_upload_mb * 1024 * 1024)
    max_batch = opts.max_batch or predictor.batch_size

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = Batcher(predictor, max_batch, opts.max_wait_ms / 1000, opts.max_queue)
        app.state.budget = MemoryBudget(opts.memory_bytes, opts.max_queue)
        try:
            yield
        finally:
            app.state.batcher.close()

    app = FastAPI(
        title="bgcut",
        summary="Cut the background out of images: one model, requests batched together.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def host_check(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette's middleware signature
        host = request.headers.get("host", "")
        if not opts.host_allowed(host):
            return JSONResponse(
                {"error": f"Host {shown_value(host)} is not one this server answers: see --allowed-hosts"},
                status_code=400,
            )
        return await call_next(request)

    def check_token(request: Request) -> None:
        if opts.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {opts.token}".encode()):
            raise Refused(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")

    @app.exception_handler(Refused)
    async def refused(_request: Request, e: Refused) -> JSONResponse:
        return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first['msg']}" if where else first["msg"]}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health(request: Request) -> dict[str, object]:
        """Liveness for anyone; with the token (when the server has one), also the model, and the
        queue and batching so far: a stranger learns no more than that the server is up."""
        if opts.token is not None:
            try:
                check_token(request)
            except Refused:
                return {"status": "ok"}
        batcher: Batcher = request.app.state.batcher
        budget: MemoryBudget = request.app.state.budget
        stats = batcher.stats
        return {
            "status": "ok",
            "model": predictor.model_name,
            "device": str(predictor.device),
            "waiting": batcher.waiting,
            "max_queue": opts.max_queue,
            "max_batch": max_batch,
            "batches": stats.batches,
            "requests": stats.requests,
            "mean_batch": round(stats.mean_batch, 3),
            "memory_in_flight_mb": round(budget.used / 2**20, 1),
            "memory_peak_mb": round(budget.peak / 2**20, 1),
            "max_memory_mb": opts.max_memory_mb,
            "waiting_for_memory": budget.waiting,
        }

    @app.get("/models")
    async def models(request: Request) -> dict[str, object]:
        """The registered models, and the one this server runs."""
        check_token(request)
        return {"serving": predictor.model_name, "models": list_models(), "formats": list(FORMATS)}

    @app.post(
        "/remove",
        responses={200: {"content": {f.media_type: {} for f in FORMATS.values()}, "description": "The cut-out."}},
        response_class=Response,
    )
    async def remove(request: Request) -> Response:
        """Cut out one uploaded image (raw body, or the ``image`` field of a multipart form).

        Query parameters are the command line's options: ``format`` (png-alpha, mask, crop, webp,
        jpg), ``bg`` (a colour, or ``blur[:SIGMA]``), ``threshold``, ``binary``, ``keep``, ``fill_holes``, ``erode``,
        ``dilate``, ``feather``, ``margin``, ``refine`` (none, guided), ``refine_eps``,
        ``decontaminate``.
        """
        check_token(request)
        settings = _settings(request.query_params.multi_items())
        try:
            data = await _body(request, limit)
        except ClientDisconnect:
            # Nobody is left to answer: one line in the server's log, not an ASGI traceback.
            _log(f"{_client(request)} went away during its upload")
            return Response(status_code=400)
        return await _answer(request, data, settings, time.monotonic() + opts.max_seconds)

    async def _answer(request: Request, data: bytes, settings: Settings, deadline: float) -> Response:
        """Admit the request by its memory, run its stages as a job, and answer within the deadline."""
        cost = await run_in_threadpool(_cost, data, opts.max_pixels)
        budget: MemoryBudget = request.app.state.budget
        try:
            await budget.admit(cost, timeout=max(0.0, deadline - time.monotonic()))
        except TooLarge:
            raise Refused(
                413, f"the image needs about {cost >> 20} MB, over the server's --max-memory-mb {opts.max_memory_mb}"
            ) from None
        except (Full, TimeoutError):
            raise Refused(
                503, "busy: too much work in flight, try again shortly", {"Retry-After": str(RETRY_AFTER_S)}
            ) from None
        job = Job()
        work = asyncio.create_task(_work(request, job, data, settings))
        # The bytes are given back when the work has stopped, not when the answer goes out: a stage
        # still running in a thread still holds its image.
        work.add_done_callback(lambda task: _finished(task, budget, cost))
        went_away = asyncio.create_task(_disconnected(request))
        try:
            done, _ = await asyncio.wait(
                {work, went_away}, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            went_away.cancel()
            if not work.done():
                job.call_off()  # the deadline, the client, or the server stopping: its next stage does not run
        if work in done:
            body, media_type = work.result()
            return Response(body, media_type=media_type)
        if went_away in done:
            _log(f"{_client(request)} went away; its remaining work is dropped")
            return Response(status_code=499)  # nobody reads it
        raise Refused(504, f"not done within the server's --max-seconds {opts.max_seconds:g}; its work is dropped")

    async def _work(request: Request, job: Job, data: bytes, settings: Settings) -> tuple[bytes, str]:
        decoded = await run_in_threadpool(job.run, _decode, data, opts.max_pixels)
        model_input = await run_in_threadpool(job.run, predictor.prepare, decoded.rgb)
        batcher: Batcher = request.app.state.batcher
        try:
            future = batcher.submit(model_input, decoded.rgb.shape[:2], job)
        except Busy:
            raise Refused(
                503, "busy: the queue is full, try again shortly", {"Retry-After": str(RETRY_AFTER_S)}
            ) from None
        del model_input
        try:
            mask = await asyncio.wrap_future(future)
        except DeviceMemoryError as e:
            raise Refused(413, f"too large for the model's device: {e}") from None
        return await run_in_threadpool(job.run, _render, decoded, mask, settings, predictor.size)

    app.add_middleware(AnswerWhenStopped)  # added last, so outermost: it sees every cancellation
    return app


def _log(line: str) -> None:
    print(f"bgcut serve: {line}", file=sys.stderr, flush=True)


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "a client"


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away (the upload has been read: nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _finished(task: asyncio.Task, budget: MemoryBudget, cost: int) -> None:
    asyncio.ensure_future(budget.release(cost))
    if not task.cancelled():
        error = task.exception()  # retrieved here too: a job nobody waits for must not log as unhandled
        if error is not None and not isinstance(error, (CalledOff, Refused)):
            _log(f"a dropped request failed: {type(error).__name__}: {error}")


def _render(decoded: Decoded, mask: np.ndarray, settings: Settings, model_size: int) -> tuple[bytes, str]:
    result = render(decoded.rgb, decoded.alpha, mask, settings.post, settings.out, settings.bg, model_size)
    if not result.images:
        raise Refused(422, "no foreground found: nothing to crop")
    ext = settings.out.extension
    return encode(result.images[0][1], ext, settings.out.png), settings.out.spec.media_type
