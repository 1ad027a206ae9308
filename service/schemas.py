"""Request and response bodies of the HTTP API."""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from algospeak import Candidate, Span
from service.classifier import Verdict
from service.engine import ModelInfo


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str = "ok"


class NormalizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="The text to normalize.")


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="The text to classify.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] = Field(description="The texts to classify, in order.")


class NormalizeResponse(BaseModel):
    text: str
    normalized: str
    changed: bool
    spans: list[Span] = Field(description="Replaced pieces; offsets index the original text.")
    candidates: list[Candidate]


class Scores(BaseModel):
    label: dict[str, float]
    category: dict[str, float]
    severity: dict[str, float]


class ClassifyResponse(BaseModel):
    label: str
    category: str
    severity: str
    confidence: float = Field(description="The model's probability of the returned label.")
    action: str = Field(description="allow, review or block, from the configured thresholds.")
    scores: Scores
    normalized: str
    spans: list[Span]
    candidates: list[Candidate]
    model: str
    latency_ms: float

    @classmethod
    def from_verdict(cls, verdict: Verdict) -> Self:
        """What POST /classify returns for ``verdict``; the batch CLI writes the same."""
        c = verdict.classification
        n = verdict.normalization
        return cls(
            label=c.label,
            category=c.category,
            severity=c.severity,
            confidence=c.confidence,
            action=verdict.action,
            scores=Scores(
                label=c.label_scores, category=c.category_scores, severity=c.severity_scores
            ),
            normalized=n.normalized,
            spans=list(n.spans),
            candidates=list(n.candidates),
            model=verdict.model,
            latency_ms=verdict.latency_ms,
        )


class BatchResponse(BaseModel):
    results: list[ClassifyResponse]


class ModerationRequest(BaseModel):
    """OpenAI's moderation request: ``input`` is a string or a list of strings."""

    input: StrictStr | list[StrictStr]
    model: str | None = None


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


class LexiconInfo(BaseModel):
    version: str
    sha256: str
    codes: int
    terms: int
    by_category: dict[str, int]


class Info(BaseModel):
    service: str = "algospeak-moderation"
    version: str
    lexicon: LexiconInfo
    model: ModelInfo | None
    model_error: str | None = None
    max_text_chars: int
    max_batch: int
