"""One error shape for every failure: ``{"error": {"type": ..., "message": ...}}``."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.gate import BusyError
from service.scoring import InputTooLongError
from service.validation import too_long_for_model

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "not_ready",
    504: "timeout",
}


class ApiError(Exception):
    """An error the API reports to the client as is."""

    def __init__(
        self, status: int, message: str, type_: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _TYPES.get(status, "error")
        self.headers = headers


def error_response(
    status: int, message: str, type_: str | None = None, headers: dict | None = None
) -> JSONResponse:
    body = {"error": {"type": type_ or _TYPES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


@contextmanager
def model_errors(field: str = "text") -> Iterator[None]:
    """Turn the model path's expected failures into API errors (busy -> 503, too long -> 422
    naming ``field``, the request field the text came from)."""
    try:
        yield
    except BusyError as exc:
        raise ApiError(503, str(exc), "busy", {"Retry-After": str(exc.retry_after)}) from exc
    except InputTooLongError as exc:
        problem = too_long_for_model(exc, field)
        raise ApiError(422, problem.message, problem.type) from exc


def install_error_handlers(app: FastAPI) -> None:
    """Re-shape FastAPI's and Starlette's own errors into the shared error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "request body is not valid JSON", "invalid_json")
        return error_response(422, "; ".join(_describe(e) for e in errors))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal error", "internal_error")


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    if where == "body" and error.get("type") in ("model_attributes_type", "dict_type"):
        return "body: must be a JSON object sent with content-type application/json"
    return f"{where}: {error.get('msg', 'invalid value')}"
