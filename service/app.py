"""The application factory: ``uvicorn --factory service.app:create_app``."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from algospeak import Normalizer, __version__, load_lexicon
from service.classifier import Classifier, Thresholds
from service.engine import Engine, ModelError
from service.errors import install_error_handlers
from service.gate import Gate
from service.routes import classify, health, moderations, normalize
from service.schemas import ErrorBody
from service.settings import Settings

logger = logging.getLogger(__name__)

FETCH_HINT = (
    "build the default model with `make model` (about 20 minutes on a laptop CPU), or set "
    "ALGOSPEAK_MODEL_PATH to a GGUF (e.g. the base `make base` prints)"
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app; what it serves is loaded in the lifespan and freed after it.

    A missing or broken model does not stop the service: /normalize keeps working, and the
    model's endpoints and /readyz answer 503 saying what is wrong and what to run.
    """
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lexicon = load_lexicon(settings.lexicon_path)
        app.state.normalizer = Normalizer(lexicon)
        logger.info("lexicon %s loaded: %d codes", lexicon.version, len(lexicon.codes))
        engine = load_engine(app, settings)
        if engine is not None:
            app.state.classifier = Classifier(
                app.state.normalizer,
                engine,
                Gate(settings.queue_size, settings.queue_timeout_s),
                Thresholds(
                    settings.review_threshold,
                    settings.block_threshold,
                    settings.category_thresholds,
                ),
            )
        yield
        app.state.classifier = None
        app.state.normalizer = None
        if engine is not None:
            engine.close()

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
    for module in (health, normalize, classify, moderations):
        app.include_router(module.router)
    return app


def load_engine(app: FastAPI, settings: Settings) -> Engine | None:
    """The engine for the configured model, or None with the reason kept for /readyz."""
    path = settings.model_path
    try:
        if not path.is_file():
            raise ModelError(f"model file {path} not found: {FETCH_HINT}")
        return Engine(
            path,
            threads=settings.threads,
            context=settings.context_size,
            lora_path=settings.lora_path,
        )
    except ModelError as exc:
        message = str(exc) if "not found" in str(exc) else f"{exc}; {FETCH_HINT}"
        app.state.model_error = message
        logger.warning("serving without a model: %s", message)
        return None
