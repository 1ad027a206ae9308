"""Request and response bodies of the HTTP API."""

from pydantic import BaseModel, ConfigDict, Field, StrictStr


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


class SpanOut(BaseModel):
    start: int = Field(description="Offset in the original text (Python string index).")
    end: int
    original: str
    replacement: str
    category: str
    rule: str
    entry: str | None


class CandidateOut(BaseModel):
    start: int
    end: int
    original: str
    meaning: str
    category: str
    entry: str
    reason: str


class NormalizeResponse(BaseModel):
    text: str
    normalized: str
    changed: bool
    spans: list[SpanOut]
    candidates: list[CandidateOut]


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
    max_text_chars: int
