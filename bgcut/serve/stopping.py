"""Answer the requests that the server's stop cuts short, instead of logging each as a traceback.

When ``--grace-seconds`` runs out after SIGTERM, uvicorn cancels every request still running.
A cancelled request that reaches uvicorn as ``CancelledError`` is logged as "Exception in ASGI
application" with a traceback, and whether a request gets that far before the process exits is
a race (it showed up in CI, under load). This outermost ASGI layer turns the cancellation into
a plain 503 for the client, with the server's one-line JSON error, and ends the request
normally: uvicorn then has nothing to log, and the client learns why it got no cut-out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

STOPPING = "the server is stopping: this request's work was dropped at the end of its --grace-seconds"


class AnswerWhenStopped:
    """ASGI middleware: a cancelled HTTP request is answered 503 (if nothing was sent yet) and ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled here: later awaits in this task must not see it again
            if not started:
                await _answer_stopping(send)


async def _answer_stopping(send: Send) -> None:
    body = json.dumps({"error": STOPPING}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    try:
        await send({"type": "http.response.start", "status": 503, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
    except (OSError, RuntimeError):
        pass  # the connection is already gone: nobody is left to tell
