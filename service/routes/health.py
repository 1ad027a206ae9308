"""Liveness, readiness and what the service is running."""

from fastapi import APIRouter, Request

from algospeak import __version__
from service.dependencies import ClassifierDep, NormalizerDep, PolicyDep, SettingsDep
from service.schemas import ErrorBody, Health, Info, LexiconInfo, PolicyInfo

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorBody}})
def readyz(_: NormalizerDep, __: ClassifierDep) -> Health:
    """Everything the service serves is loaded; otherwise 503 saying what is missing."""
    return Health(status="ready")


@router.get("/info", response_model=Info)
def info(request: Request, policy: PolicyDep, settings: SettingsDep) -> Info:
    rules = policy.rules
    lexicon = rules.normalizer.lexicon
    classifier = request.app.state.classifier
    model = classifier.engine.info if classifier is not None else None
    return Info(
        version=__version__,
        lexicon=LexiconInfo(
            version=lexicon.version,
            sha256=lexicon.sha256,
            codes=len(lexicon.codes),
            terms=len(lexicon.terms),
            by_category=lexicon.size_by_category(),
        ),
        model=model,
        model_error=request.app.state.model_error,
        policy=PolicyInfo.from_rules(rules, policy.error),
        max_text_chars=settings.max_text_chars,
        max_batch=settings.max_batch,
    )
