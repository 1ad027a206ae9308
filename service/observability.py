"""Logs and request accounting: JSON log lines carrying the request id, one access line and
the request metrics per request.

Texts are never logged here; the classifier logs their sha256 and length unless the
settings ask for the texts themselves.
"""

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics

REQUEST_ID_HEADER = "X-Request-ID"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_access = logging.getLogger("service.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id when there is
    one, and the ``fields`` dict a caller passed in ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := request_id.get():
            entry["request_id"] = rid
        entry |= getattr(record, "fields", {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


JsonFormatter.converter = time.gmtime


def configure_logging(level: str, fmt: str) -> None:
    """Route every logger (uvicorn's included) to one stderr handler in ``fmt`` (json|text).

    Replaces only the handler it installed before, so test runners' capture handlers stay.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_algospeak", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._algospeak = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


class RequestContext:
    """Outermost middleware: gives each request an id (the client's ``X-Request-ID`` when it
    is a plain token, else a new one), echoes it in the response, logs one access line and
    records the request's metrics under its route template (not its raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = (
            dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        )
        rid = given if _ACCEPTED_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.REQUESTS.labels(route, scope["method"], str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route).observe(seconds)
            _access.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                        "client": (scope.get("client") or ("-",))[0],
                        "key": scope.get("state", {}).get("api_key_id"),
                    }
                },
            )
            request_id.reset(token)
