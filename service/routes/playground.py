"""GET /: the playground page, where a moderator pastes a text and sees what the service makes
of it. Plain HTML, CSS and JS shipped with the package; nothing is fetched from elsewhere."""

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from service.errors import ApiError

router = APIRouter(tags=["playground"], include_in_schema=False)

# The page loads only its own script and stylesheet and talks only to this service.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ASSETS = {
    "playground.css": "text/css; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
}


@cache
def _read(name: str) -> bytes:
    return files("service").joinpath("static", name).read_bytes()


@router.get("/", response_class=HTMLResponse)
def playground() -> HTMLResponse:
    """The playground page, public even when the API needs keys (the page asks for one)."""
    return HTMLResponse(_read("playground.html"), headers=SECURITY_HEADERS)


@router.get("/static/{name}")
def asset(name: str) -> Response:
    """The page's stylesheet and script; any other name is 404."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, f"no static file {name!r}")
    return Response(_read(name), media_type=media_type, headers=SECURITY_HEADERS)
