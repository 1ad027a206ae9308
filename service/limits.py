"""Request limits as middleware: body size (before parsing), a per-key rate limit and a
deadline per request. Each answers in the shared error shape."""

import asyncio
import contextlib
import logging
import math
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import is_public
from service.errors import error_response

logger = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` mid-body; FastAPI passes HTTP exceptions on to the handlers."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit} bytes")


class BodySizeLimit:
    """413 for a declared ``Content-Length`` over the limit before the app runs, and for a
    streamed body as soon as the bytes received pass it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            await error_response(413, error.detail)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)


class RateLimit:
    """A token bucket per API key (or per client address without keys): ``per_minute``
    requests a minute on average, up to ``burst`` at once; over it, 429 with ``Retry-After``.

    Counts are per process: with N workers or replicas a key may make up to N times as many.
    """

    _MAX_BUCKETS = 100_000  # forget idle clients beyond this, so memory stays bounded

    def __init__(self, app: ASGIApp, per_minute: float, burst: int) -> None:
        self.app = app
        self.rate = per_minute / 60
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("state", {}).get("api_key_id") or (scope.get("client") or ("-",))[0]
        wait = self._take(client, time.monotonic())
        if wait > 0:
            retry_after = str(max(1, math.ceil(wait)))
            message = f"over the rate limit of {self.rate * 60:g} requests a minute"
            await error_response(429, message, headers={"Retry-After": retry_after})(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)

    def _take(self, client: str, now: float) -> float:
        """Take a token for ``client``; 0 when granted, else the seconds until one is due."""
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= self._MAX_BUCKETS and client not in self._buckets:
            self._buckets.clear()
        self._buckets[client] = (tokens - 1, now)
        return 0.0


class RequestTimeout:
    """504 when the app has not started answering within ``seconds``.

    Model work runs in a thread that cannot be interrupted, so a late request is answered at
    the deadline and its work finishes in the background, its answer discarded.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        abandoned = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if abandoned:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded))
        done, _ = await asyncio.wait({task}, timeout=self.seconds)
        if done or started:
            await task  # finished, or already answering: let it complete (and re-raise)
            return
        abandoned = True
        task.add_done_callback(_log_late_failure)
        message = f"the request took longer than {self.seconds:g}s"
        await error_response(504, message, "timeout")(scope, receive, send)


def _log_late_failure(task: asyncio.Task) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if (exc := task.exception()) is not None:
            logger.warning("abandoned request failed: %r", exc)
