"""POST /classify and /classify/batch: labels, scores and an action for moderation queues."""

from fastapi import APIRouter

from service.dependencies import ClassifierDep, SettingsDep, checked_batch, checked_text
from service.errors import model_errors
from service.schemas import (
    BatchRequest,
    BatchResponse,
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
)

router = APIRouter(tags=["classify"])
ERRORS = {code: {"model": ErrorBody} for code in (400, 413, 422, 503)}


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS)
def classify(body: ClassifyRequest, classifier: ClassifierDep, settings: SettingsDep):
    text = checked_text(body.text, settings)
    with model_errors():
        return ClassifyResponse.from_verdict(classifier.classify(text))


@router.post("/classify/batch", response_model=BatchResponse, responses=ERRORS)
def classify_batch(body: BatchRequest, classifier: ClassifierDep, settings: SettingsDep):
    texts = checked_batch(body.texts, settings, "texts")
    with model_errors():
        results = [ClassifyResponse.from_verdict(classifier.classify(t)) for t in texts]
        return BatchResponse(results=results)
