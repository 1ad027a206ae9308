"""The application factory: ``uvicorn --factory service.app:create_app``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from algospeak import Normalizer, __version__, load_lexicon
from service.errors import install_error_handlers
from service.routes import health, normalize
from service.schemas import ErrorBody
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; what it serves is loaded in the lifespan and freed after it."""
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lexicon = load_lexicon(settings.lexicon_path)
        app.state.normalizer = Normalizer(lexicon)
        logger.info("lexicon %s loaded: %d codes", lexicon.version, len(lexicon.codes))
        yield
        app.state.normalizer = None

    app = FastAPI(
        title="Algospeak moderation",
        version=__version__,
        lifespan=lifespan,
        responses={500: {"model": ErrorBody}},
    )
    app.state.settings = settings
    app.state.normalizer = None
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(normalize.router)
    return app
