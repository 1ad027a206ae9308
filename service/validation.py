"""Which texts the service accepts: one rule set for the API and the batch CLI.

No web imports: the web layer turns a ``TextProblem`` into its error response, the CLI into an
error line, so both report the same type and message for the same text.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TextProblem:
    """Why a text is refused, in the API's error terms (``type`` as in ``{"error": ...}``)."""

    type: str
    message: str


def text_problem(text: str, max_chars: int, field: str = "text") -> TextProblem | None:
    """None if the text is accepted; otherwise why not (empty or blank, over ``max_chars``
    characters, or holding unpaired surrogates), with a message naming ``field``."""
    if not text.strip():
        return TextProblem("invalid_request", f"{field}: must not be empty")
    if len(text) > max_chars:
        return TextProblem(
            "text_too_long", f"{field}: {len(text)} characters is over the limit of {max_chars}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return TextProblem(
            "invalid_request", f"{field}: contains unpaired surrogates, which are not valid Unicode"
        )
    return None
