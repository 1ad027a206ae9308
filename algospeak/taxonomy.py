"""The moderation taxonomy: the exact strings every part of the project agrees on."""

from typing import Final, Literal

Label = Literal["harmful", "safe"]
Category = Literal[
    "self_harm", "hate", "sexual", "violence", "harassment", "drugs", "child_safety", "none"
]
Severity = Literal["none", "low", "medium", "high", "extreme"]

LABELS: Final[tuple[str, ...]] = ("harmful", "safe")
HARM_CATEGORIES: Final[tuple[str, ...]] = (
    "self_harm",
    "hate",
    "sexual",
    "violence",
    "harassment",
    "drugs",
    "child_safety",
)
CATEGORIES: Final[tuple[str, ...]] = (*HARM_CATEGORIES, "none")
SEVERITIES: Final[tuple[str, ...]] = ("none", "low", "medium", "high", "extreme")
# How each category reads in a sentence (explanations and dataset reasons).
CATEGORY_NAMES: Final[dict[str, str]] = {
    "self_harm": "self-harm",
    "hate": "hate",
    "sexual": "sexual content",
    "violence": "violence",
    "harassment": "harassment",
    "drugs": "drugs",
    "child_safety": "child safety",
    "none": "nothing harmful",
}
