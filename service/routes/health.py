"""Liveness, readiness and what the service is running."""

from fastapi import APIRouter

from algospeak import __version__
from service.dependencies import NormalizerDep, SettingsDep
from service.schemas import Health, Info, LexiconInfo

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get("/readyz", response_model=Health, responses={503: {"description": "Not ready yet"}})
def readyz(_: NormalizerDep) -> Health:
    """Everything the service serves is loaded."""
    return Health(status="ready")


@router.get("/info", response_model=Info)
def info(normalizer: NormalizerDep, settings: SettingsDep) -> Info:
    lexicon = normalizer.lexicon
    return Info(
        version=__version__,
        lexicon=LexiconInfo(
            version=lexicon.version,
            sha256=lexicon.sha256,
            codes=len(lexicon.codes),
            terms=len(lexicon.terms),
            by_category=lexicon.size_by_category(),
        ),
        max_text_chars=settings.max_text_chars,
    )
