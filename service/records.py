"""One input record to one outcome: what the batch CLI, the Ray backfill and the queue worker
share.

A record is a JSON object with a ``text`` (and an optional ``id``, copied as is), a bare JSON
string, or a table row with those columns. Its text is checked exactly as the API checks a
``text`` (service/validation.py) and classified exactly as POST /classify classifies it; a
record that cannot be classified gets the error the API would answer, in the API's error
terms. The tools write the outcome as ``{"result": {...}}`` or ``{"error": {"type": ...,
"message": ...}}`` next to their own key for the record.

No web imports beyond the response model: the tools use this without a server.
"""

import json
from collections.abc import Mapping
from typing import Any

from service.classifier import Classifier
from service.explain import explain as explain_verdict
from service.schemas import ClassifyResponse, Explain
from service.scoring import InputTooLongError
from service.validation import TextProblem, text_problem, too_long_for_model


def read_line(raw: bytes, max_chars: int) -> tuple[Any, str | TextProblem]:
    """(id, text) for a JSONL line whose text the API would accept, else (id, why not); ``id``
    is None when the line has none (or cannot be read)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, TextProblem("invalid_request", "line: not valid UTF-8")
    if not line.strip():
        return None, TextProblem("invalid_request", "line: blank")
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return None, TextProblem("invalid_json", f"line: not valid JSON ({exc})")
    if isinstance(value, str):
        return None, text_problem(value, max_chars) or value
    if not isinstance(value, dict):
        return None, TextProblem(
            "invalid_request", 'line: must be a JSON object with "text", or a JSON string'
        )
    return read_fields(value, max_chars)


def read_fields(fields: Mapping[str, Any], max_chars: int) -> tuple[Any, str | TextProblem]:
    """(id, text) for a record given as fields (a JSON object, a table row) whose ``text`` the
    API would accept, else (id, why not); ``id`` is None when the record has none."""
    item_id = fields.get("id")
    if "text" not in fields:
        return item_id, TextProblem("invalid_request", "text: field required")
    text = fields["text"]
    if not isinstance(text, str):
        return item_id, TextProblem("invalid_request", "text: must be a string")
    return item_id, text_problem(text, max_chars) or text


def outcome(
    classifier: Classifier, text: str | TextProblem, *, explain: Explain = False
) -> dict[str, Any]:
    """``{"result": ...}`` with what POST /classify returns for ``text`` (with its explanation
    when ``explain`` asks, as /classify gives it), or ``{"error": ...}`` with the API's answer
    when ``text`` is a refusal or the model cannot take it (longer than its context)."""
    if isinstance(text, TextProblem):
        return {"error": error_body(text)}
    try:
        verdict = classifier.classify(text, reason=explain == "reason")
    except InputTooLongError as exc:
        return {"error": error_body(too_long_for_model(exc))}
    explanation = explain_verdict(verdict) if explain else None
    return {"result": ClassifyResponse.from_verdict(verdict, explanation).model_dump(mode="json")}


def error_body(problem: TextProblem) -> dict[str, str]:
    """The ``error`` member of the API's error body for ``problem``."""
    return {"type": problem.type, "message": problem.message}
