"""The application factory: ``uvicorn --factory service.app:create_app``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from algospeak import Normalizer, __version__, load_lexicon
from service.auth import ApiKeyAuth, load_keys
from service.classifier import build_classifier
from service.engine import ModelError
from service.errors import install_error_handlers
from service.limits import BodySizeLimit, RateLimit, RequestTimeout
from service.observability import REQUEST_ID_HEADER, RequestContext, configure_logging
from service.routes import classify, health, metrics, moderations, normalize, playground
from service.schemas import ErrorBody
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; what it serves is loaded in the lifespan and freed after it.

    A missing or broken model does not stop the service: /normalize keeps working, and the
    model's endpoints and /readyz answer 503 saying what is wrong and what to run.
    """
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lexicon = load_lexicon(settings.lexicon_path)
        app.state.normalizer = Normalizer(lexicon)
        logger.info("lexicon %s loaded: %d codes", lexicon.version, len(lexicon.codes))
        try:
            app.state.classifier = build_classifier(settings, app.state.normalizer)
        except ModelError as exc:
            app.state.model_error = str(exc)
            logger.warning("serving without a model: %s", exc)
        yield
        classifier, app.state.classifier, app.state.normalizer = app.state.classifier, None, None
        if classifier is not None:
            classifier.engine.close()

    app = FastAPI(
        title="Algospeak moderation",
        version=__version__,
        lifespan=lifespan,
        responses={500: {"model": ErrorBody}},
    )
    app.state.settings = settings
    app.state.normalizer = None
    app.state.classifier = None
    app.state.model_error = None
    install_error_handlers(app)
    for module in (health, metrics, normalize, classify, moderations, playground):
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
