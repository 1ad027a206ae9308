"""POST /v1/moderations: OpenAI's moderation API, so the official client works unchanged."""

import uuid

from fastapi import APIRouter

from service.classifier import Verdict
from service.dependencies import ClassifierDep, SettingsDep, checked_batch
from service.errors import model_errors
from service.schemas import ErrorBody, ModerationRequest, ModerationResponse, ModerationResult

router = APIRouter(prefix="/v1", tags=["openai"])

# Our categories in OpenAI's names; OpenAI's other categories are always reported unflagged.
OPENAI_CATEGORY = {
    "self_harm": "self-harm",
    "hate": "hate",
    "sexual": "sexual",
    "child_safety": "sexual/minors",
    "violence": "violence",
    "harassment": "harassment",
    "drugs": "illicit",
}
OPENAI_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


@router.post(
    "/moderations",
    response_model=ModerationResponse,
    responses={code: {"model": ErrorBody} for code in (400, 413, 422, 503)},
)
def moderations(body: ModerationRequest, classifier: ClassifierDep, settings: SettingsDep):
    texts = [body.input] if isinstance(body.input, str) else body.input
    texts = checked_batch(texts, settings, "input")
    prepared = []
    for i, text in enumerate(texts):
        with model_errors(f"input[{i}]" if isinstance(body.input, list) else "input"):
            prepared.append(classifier.prepare(text))
    with model_errors("input"):  # the texts are scored together, as the model's batch allows
        results = [result(verdict) for verdict in classifier.decide(prepared)]
    return ModerationResponse(
        id=f"modr-{uuid.uuid4().hex}",
        model=body.model or classifier.engine.info.name,
        results=results,
    )


def result(verdict: Verdict) -> ModerationResult:
    c = verdict.classification
    flagged = verdict.action != "allow"
    top = max(OPENAI_CATEGORY, key=c.category_scores.__getitem__)
    scores = dict.fromkeys(OPENAI_CATEGORIES, 0.0)
    scores |= {OPENAI_CATEGORY[k]: c.category_scores[k] for k in OPENAI_CATEGORY}
    return ModerationResult(
        flagged=flagged,
        categories={k: flagged and k == OPENAI_CATEGORY[top] for k in OPENAI_CATEGORIES},
        category_scores=scores,
        category_applied_input_types={k: ["text"] for k in OPENAI_CATEGORIES},
    )
