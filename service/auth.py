"""API keys: with any configured, every request but the public paths must carry one.

A key is accepted from ``Authorization: Bearer <key>`` (what the ``openai`` client sends) or
``X-API-Key: <key>``. Keys are compared in constant time, and only a short hash of the key
(``api_key_id``) is kept for logs and rate limiting.
"""

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_response

# Probes, the scraper and the playground's static page (it carries no data; every call it
# makes is authenticated) answer without a key.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
# The admin API takes admin keys, not API keys, and checks them itself (service/routes/admin.py).
ADMIN_PREFIX = "/admin/"


def load_keys(keys: tuple[str, ...], keys_file: Path | None) -> tuple[str, ...]:
    """The configured keys: ``keys`` plus the file's non-empty, non-comment lines."""
    from_file = []
    if keys_file is not None:
        lines = keys_file.read_text(encoding="utf-8").splitlines()
        from_file = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return tuple(dict.fromkeys([*keys, *from_file]))


def key_id(key: str) -> str:
    """A short, stable, non-reversible name for a key, safe to log."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_admin(path: str) -> bool:
    return path.startswith(ADMIN_PREFIX)


class ApiKeyAuth:
    """Middleware answering 401 (shared error shape) to requests without a valid key."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self._keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]) or is_admin(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = presented_key(Headers(scope=scope))
        if presented is None or not self._accepts(presented):
            message = (
                "the API key is not valid"
                if presented is not None
                else "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
            response = error_response(401, message, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key_id"] = key_id(presented)
        await self.app(scope, receive, send)

    def _accepts(self, presented: str) -> bool:
        return key_matches(presented, self._keys)


def key_matches(presented: str, keys: Iterable[bytes]) -> bool:
    """Whether ``presented`` is one of ``keys``, compared in constant time."""
    candidate = presented.encode()
    # Compare against every key, so the time taken says nothing about which one matched.
    matches = [hmac.compare_digest(candidate, key) for key in keys]
    return any(matches)


def presented_key(headers: Headers) -> str | None:
    """The key a request carries (``Authorization: Bearer`` first, then ``X-API-Key``)."""
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key", "").strip() or None
