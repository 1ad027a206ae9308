"""POST /classify and /classify/batch: labels, scores and an action for moderation queues."""

from fastapi import APIRouter

from service.classifier import Classifier
from service.dependencies import ClassifierDep, SettingsDep, checked_batch, checked_text
from service.errors import model_errors
from service.explain import explain as explain_verdict
from service.schemas import (
    BatchRequest,
    BatchResponse,
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
    Explain,
)

router = APIRouter(tags=["classify"])
ERRORS = {code: {"model": ErrorBody} for code in (400, 413, 422, 503)}


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS)
def classify(body: ClassifyRequest, classifier: ClassifierDep, settings: SettingsDep):
    return _response(classifier, checked_text(body.text, settings), body.explain, "text")


@router.post("/classify/batch", response_model=BatchResponse, responses=ERRORS)
def classify_batch(body: BatchRequest, classifier: ClassifierDep, settings: SettingsDep):
    texts = checked_batch(body.texts, settings, "texts")
    results = [_response(classifier, t, body.explain, f"texts[{i}]") for i, t in enumerate(texts)]
    return BatchResponse(results=results)


def _response(classifier: Classifier, text: str, explain: Explain, field: str) -> ClassifyResponse:
    with model_errors(field):
        verdict = classifier.classify(text, reason=explain == "reason")
    explanation = explain_verdict(verdict) if explain else None
    return ClassifyResponse.from_verdict(verdict, explanation)
