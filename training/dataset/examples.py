"""The dataset's vocabulary: an example, the splits, and the error the builder raises.

Every other module of the builder speaks in these terms; the normalization of an example's
text is computed once here and shared by deduplication and by the written records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from algospeak.normalizer import Normalization, normalize
from algospeak.prompt import Answer

SPLITS = ("train", "dev", "test")
USER_FAMILY = "user"
# Posts written by hand for training (``training/handwritten/train.yaml``), not by templates.
HANDWRITTEN_FAMILY = "handwritten"


class DatasetError(ValueError):
    """Bad templates or user data; the message names the file (and row) at fault."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled post; the answer is consistent (validated by ``Answer``)."""

    text: str
    label: str
    category: str
    severity: str
    family: str
    entry: str | None = None
    obfuscation: str = "none"
    language: str = "en"
    reason: str = ""  # one short sentence: why the label applies (the optional reason line)

    def __post_init__(self) -> None:
        Answer(self.label, self.category, self.severity)  # raises AnswerError if inconsistent

    @property
    def answer(self) -> Answer:
        return Answer(self.label, self.category, self.severity)

    @property
    def provenance(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "entry": self.entry,
            "obfuscation": self.obfuscation,
            "language": self.language,
        }


@dataclass(slots=True)
class Splits:
    """The three splits plus what is needed to describe and rebuild them."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]
    seed: int
    size: int
    held_out_families: tuple[str, ...] = ()
    held_out_entries: tuple[str, ...] = ()
    extra_files: tuple[str, ...] = field(default_factory=tuple)

    def items(self) -> list[tuple[str, list[Example]]]:
        return [("train", self.train), ("dev", self.dev), ("test", self.test)]


@lru_cache(maxsize=65536)
def normalization_of(text: str) -> Normalization:
    """``normalize(text)``, cached: deduplication and the records both need it."""
    return normalize(text)


def dedup_key(example: Example) -> tuple[str, str]:
    """Two examples with the same key are duplicates: normalized text plus label."""
    return (normalization_of(example.text).normalized, example.label)
