"""The application factory, ``service.app:create_app``, which ``python -m service`` serves."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from algospeak import __version__
from service.auth import ApiKeyAuth, load_keys
from service.classifier import build_classifier
from service.engine import ModelError
from service.errors import install_error_handlers
from service.limits import BodySizeLimit, RateLimit, RequestTimeout
from service.observability import REQUEST_ID_HEADER, RequestContext, configure_logging
from service.policy import PolicyHolder
from service.policy_reload import policy_reloads
from service.routes import admin, classify, health, metrics, moderations, normalize, playground
from service.schemas import ErrorBody
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; what it serves is loaded in the lifespan and freed after it.

    A missing or broken model does not stop the service: /normalize keeps working, and the
    model's endpoints and /readyz answer 503 saying what is wrong and what to run. A bad
    policy file (ALGOSPEAK_POLICY_PATH) does stop it: it raises PolicyError naming the problem.
    """
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Model routes wait in threads; with fewer threads than queue places, requests would
        # queue unseen (and untimed) for a thread instead of in the model's gate.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, settings.queue_size + 8)
        policy = PolicyHolder(settings)
        app.state.policy = policy
        lexicon = policy.rules.normalizer.lexicon
        logger.info("lexicon %s loaded: %d codes", lexicon.version, len(lexicon.codes))
        try:
            app.state.classifier = build_classifier(settings, policy)
        except ModelError as exc:
            app.state.model_error = str(exc)
            logger.warning("serving without a model: %s", exc)
        async with policy_reloads(policy, settings.policy_check_s):
            yield
        classifier, app.state.classifier, app.state.policy = app.state.classifier, None, None
        if classifier is not None:
            classifier.engine.close()

    app = FastAPI(
        title="Algospeak moderation",
        version=__version__,
        lifespan=lifespan,
        responses={500: {"model": ErrorBody}},
    )
    app.state.settings = settings
    app.state.policy = None
    app.state.classifier = None
    app.state.model_error = None
    install_error_handlers(app)
    for module in (health, metrics, normalize, classify, moderations, admin, playground):
        app.include_router(module.router)
    add_middleware(app, settings)
    return app


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """The request path, outermost first: request id, logs and metrics; CORS (only when
    origins are configured); body size; deadline; API key; rate limit; then the routes."""
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimit, per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst
        )
    if keys := load_keys(settings.api_keys, settings.api_keys_file):
        app.add_middleware(ApiKeyAuth, keys=keys)
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
        )
    app.add_middleware(RequestContext)  # added last: the outermost
