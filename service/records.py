"""One input record -> what ``POST /classify`` returns for it, or the error it would answer.

Shared by the tools that classify records outside HTTP, the batch CLI (``service.cli``) and the
queue worker (``service.worker``), so that they accept, refuse and answer exactly as the API
does. No web imports: the errors are the API's ``{"type", "message"}`` pairs as plain dicts.
"""

from collections.abc import Mapping
from typing import Any

from service.classifier import Classifier
from service.explain import explain as explain_verdict
from service.schemas import ClassifyResponse, Explain
from service.scoring import InputTooLongError
from service.validation import TextProblem, text_problem


def record_text(record: Mapping[str, Any], max_chars: int) -> str | TextProblem:
    """The ``text`` field of ``record`` if the API would accept it, else why not (missing, not
    a string, empty or blank, over ``max_chars``, unpaired surrogates), in the API's terms."""
    if "text" not in record:
        return TextProblem("invalid_request", "text: field required")
    text = record["text"]
    if not isinstance(text, str):
        return TextProblem("invalid_request", "text: must be a string")
    return text_problem(text, max_chars) or text


def classify_text(
    classifier: Classifier, text: str | TextProblem, *, explain: Explain = False
) -> dict[str, Any]:
    """``{"result": ...}`` with what POST /classify returns for ``text`` (its explanation too
    when ``explain`` asks, as the API gives it), or ``{"error": {"type", "message"}}`` when
    ``text`` is already a problem or the model refuses it (too long for its context), with the
    API's type and message. Other failures (the model broken, the gate busy) raise."""
    if isinstance(text, TextProblem):
        return {"error": error_body(text)}
    try:
        verdict = classifier.classify(text, reason=explain == "reason")
    except InputTooLongError as exc:
        # The same type and message as the API's answer for this text.
        return {"error": error_body(TextProblem("text_too_long", f"text: {exc}"))}
    explanation = explain_verdict(verdict) if explain else None
    return {"result": ClassifyResponse.from_verdict(verdict, explanation).model_dump(mode="json")}


def error_body(problem: TextProblem) -> dict[str, str]:
    """``problem`` as the API's error object: ``{"type": ..., "message": ...}``."""
    return {"type": problem.type, "message": problem.message}
