"""POST /classify and /classify/batch: labels, scores and an action for moderation queues."""

from fastapi import APIRouter

from service.classifier import Verdict
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
    text = checked_text(body.text, settings)
    with model_errors("text"):
        verdict = classifier.classify(text, reason=body.explain == "reason")
    return _response(verdict, body.explain)


@router.post("/classify/batch", response_model=BatchResponse, responses=ERRORS)
def classify_batch(body: BatchRequest, classifier: ClassifierDep, settings: SettingsDep):
    texts = checked_batch(body.texts, settings, "texts")
    prepared = []
    for i, text in enumerate(texts):
        with model_errors(f"texts[{i}]"):
            prepared.append(classifier.prepare(text))
    with model_errors("texts"):  # the texts are scored together, as the model's batch allows
        verdicts = classifier.decide(prepared, reason=body.explain == "reason")
    return BatchResponse(results=[_response(verdict, body.explain) for verdict in verdicts])


def _response(verdict: Verdict, explain: Explain) -> ClassifyResponse:
    explanation = explain_verdict(verdict) if explain else None
    return ClassifyResponse.from_verdict(verdict, explanation)
