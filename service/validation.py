"""Which texts the service accepts: one rule set for the API and the batch CLI.

No web imports: the web layer turns a ``TextProblem`` into its error response, the CLI into an
error line, so both report the same type and message for the same text.
"""

import re
from dataclasses import dataclass

# A str holds a surrogate code point only when it came from an unpaired one (JSON's "\ud800"):
# a valid pair decodes to one code point outside this range.
_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATES_MESSAGE = "contains unpaired surrogates, which are not valid Unicode"


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
    if has_unpaired_surrogates(text):
        return TextProblem("invalid_request", f"{field}: {SURROGATES_MESSAGE}")
    return None


def too_long_for_model(reason: Exception, field: str = "text") -> TextProblem:
    """Why a text within the character limit is refused when its prompt does not fit the
    model's context (``reason``, the engine's InputTooLongError, says by how much)."""
    return TextProblem("text_too_long", f"{field}: {reason}")


def has_unpaired_surrogates(text: str) -> bool:
    """True if ``text`` cannot be encoded as UTF-8 (and so cannot be answered in JSON)."""
    return _SURROGATE.search(text) is not None


def surrogate_path(value: object, path: str = "") -> str | None:
    """Where in ``value`` (a string, or lists and dicts of them) the first string with unpaired
    surrogates sits, as ``path`` followed by ``[index]`` or ``[key]`` steps; None if nowhere."""
    if isinstance(value, str):
        return path if has_unpaired_surrogates(value) else None
    if isinstance(value, dict):
        # A key is checked as a string of its own: it is echoed like any value.
        items = [(repr(k), v) for k, v in value.items()] + [(repr(k), k) for k in value]
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return None
    for step, item in items:
        if (found := surrogate_path(item, f"{path}[{step}]")) is not None:
            return found
    return None
