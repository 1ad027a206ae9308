"""Request and response bodies of the HTTP API."""

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, field_validator
from pydantic_core import PydanticCustomError

from algospeak import Candidate, Span
from service.classifier import Verdict
from service.engine import ModelInfo
from service.explain import Explanation
from service.policy import Rules
from service.validation import SURROGATES_MESSAGE, surrogate_path


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str = "ok"


class RequestBody(BaseModel):
    """The base of every request body: no string in any field, however nested, holds unpaired
    surrogates, since what a request carries may be echoed and JSON cannot encode them."""

    @field_validator("*")
    @classmethod
    def _valid_unicode(cls, value: object) -> object:
        where = surrogate_path(value)
        if where is not None:
            item = f"item {where} " if where else ""
            raise PydanticCustomError("unpaired_surrogates", item + SURROGATES_MESSAGE)
        return value


class NormalizeRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="The text to normalize.")


def _explain_level(value: object) -> object:
    # Strict, with one message: 1, "true" or "yes" are not explanation levels.
    if isinstance(value, bool) or value == "reason":
        return value
    raise PydanticCustomError("explain", 'must be true, false or "reason"')


Explain = Annotated[bool | Literal["reason"], BeforeValidator(_explain_level)]
EXPLAIN_DESCRIPTION = (
    "false: no explanation; true: an explanation built from the normalizer, the scores and the "
    'thresholds; "reason": that plus a reason the model writes after deciding (slower).'
)


class ClassifyRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="The text to classify.")
    explain: Explain = Field(False, description=EXPLAIN_DESCRIPTION)


class BatchRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] = Field(description="The texts to classify, in order.")
    explain: Explain = Field(False, description=EXPLAIN_DESCRIPTION)


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
    moderated: bool = Field(
        True,
        description="False when the platform's policy does not moderate the most likely harm "
        "category: the action is then allow, whatever the scores.",
    )
    scores: Scores
    normalized: str
    spans: list[Span]
    candidates: list[Candidate]
    model: str
    latency_ms: float
    explanation: Explanation | None = Field(
        None, description="Why, when the request asked for it (explain); null otherwise."
    )

    @classmethod
    def from_verdict(cls, verdict: Verdict, explanation: Explanation | None = None) -> Self:
        """What POST /classify returns for ``verdict``; the batch CLI writes the same."""
        c = verdict.classification
        n = verdict.normalization
        return cls(
            label=c.label,
            category=c.category,
            severity=c.severity,
            confidence=c.confidence,
            action=verdict.action,
            moderated=verdict.moderated,
            scores=Scores(
                label=c.label_scores, category=c.category_scores, severity=c.severity_scores
            ),
            normalized=n.normalized,
            spans=list(n.spans),
            candidates=list(n.candidates),
            model=verdict.model,
            latency_ms=verdict.latency_ms,
            explanation=explanation,
        )


class BatchResponse(BaseModel):
    results: list[ClassifyResponse]


class ModerationRequest(RequestBody):
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


class PolicyInfo(BaseModel):
    version: str = Field(description="The policy file's own version.")
    sha256: str = Field(description="sha256 of the policy file's bytes.")
    source: str = Field(description="The policy file's name.")
    loaded_at: datetime = Field(description="When this policy was put in force.")
    added: int = Field(description="Lexicon entries the policy adds.")
    disabled: int = Field(description="Built-in lexicon entries the policy disables.")
    unmoderated: list[str] = Field(description="Categories reported but never flagged.")
    error: str | None = Field(
        None, description="Why the last reload was refused (this policy stayed in force)."
    )

    @classmethod
    def from_rules(cls, rules: Rules, error: str | None) -> Self | None:
        """The policy part of ``rules`` (None without a policy) and the last reload error."""
        policy = rules.policy
        if policy is None:
            return None
        return cls(
            version=policy.version,
            sha256=policy.sha256,
            source=policy.source,
            loaded_at=rules.loaded_at,
            added=len(policy.entries),
            disabled=len(policy.disabled),
            unmoderated=sorted(policy.unmoderated),
            error=error,
        )


class Info(BaseModel):
    service: str = "algospeak-moderation"
    version: str
    lexicon: LexiconInfo
    model: ModelInfo | None
    model_error: str | None = None
    policy: PolicyInfo | None = Field(None, description="The platform policy in force, if any.")
    max_text_chars: int
    max_batch: int
