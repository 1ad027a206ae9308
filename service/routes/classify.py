"""POST /classify and /classify/batch: labels, scores and an action for moderation queues."""

from fastapi import APIRouter

from service.classifier import Verdict
from service.dependencies import ClassifierDep, SettingsDep, checked_batch, checked_text
from service.errors import model_errors
from service.schemas import (
    BatchRequest,
    BatchResponse,
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
    Scores,
)

router = APIRouter(tags=["classify"])
ERRORS = {code: {"model": ErrorBody} for code in (400, 413, 422, 503)}


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS)
def classify(body: ClassifyRequest, classifier: ClassifierDep, settings: SettingsDep):
    text = checked_text(body.text, settings)
    with model_errors():
        return response(classifier.classify(text))


@router.post("/classify/batch", response_model=BatchResponse, responses=ERRORS)
def classify_batch(body: BatchRequest, classifier: ClassifierDep, settings: SettingsDep):
    texts = checked_batch(body.texts, settings, "texts")
    with model_errors():
        return BatchResponse(results=[response(classifier.classify(t)) for t in texts])


def response(verdict: Verdict) -> ClassifyResponse:
    c = verdict.classification
    n = verdict.normalization
    return ClassifyResponse(
        label=c.label,
        category=c.category,
        severity=c.severity,
        confidence=c.confidence,
        action=verdict.action,
        scores=Scores(label=c.label_scores, category=c.category_scores, severity=c.severity_scores),
        normalized=n.normalized,
        spans=list(n.spans),
        candidates=list(n.candidates),
        model=verdict.model,
        latency_ms=verdict.latency_ms,
    )
