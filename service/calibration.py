"""Calibration of a model's probabilities: fitted on dev by the model's build, carried in its
manifest, applied by the scorer before it decides.

A fine-tuned small model is over- or under-confident and leans toward some answers: its
P(harmful) of 0.7 may be right 9 times in 10, and it may prefer ``violence`` where ``hate``
is meant. It also weighs the normalizer's findings (``Evidence``) as its training data taught
it, which is not always as much as they are worth. Two corrections, both cheap and both fitted
by maximum likelihood on dev:

- the label: Platt scaling with the evidence, P'(harmful) = sigmoid(scale * logit(P(harmful)) +
  shift + decoded * [a code was decoded] + ambiguous * [an ambiguous code was found]); the
  decision stays "the more likely label", so the shifts move the boundary where dev says;
- the category given harmful: a shift per category added to its log-probability, plus one
  weight for a category the decoded codes name and one for a category the ambiguous ones
  name, renormalized.

The identity (``Calibration()``) changes nothing; models without one are served as they score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from algospeak.normalizer import Candidate, Normalization, Span
from algospeak.taxonomy import HARM_CATEGORIES

# logit() of probabilities this close to 0 or 1 is clipped: a model that is certain stays
# nearly certain, without infinities.
_EPSILON = 1e-6
# The fields that weigh the normalizer's evidence (absent from older manifests: 0).
_EVIDENCE_WEIGHTS = ("label_decoded", "label_ambiguous", "category_decoded", "category_ambiguous")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the normalizer found that bears on a decision: the harm categories of the codes it
    decoded and of the ambiguous ones it only marked, in order of appearance, each once."""

    decoded: tuple[str, ...] = ()
    ambiguous: tuple[str, ...] = ()

    @classmethod
    def of(cls, normalization: Normalization) -> Evidence:
        def categories(found: Iterable[Span | Candidate]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(f.category for f in found if f.category in HARM_CATEGORIES))

        return cls(categories(normalization.spans), categories(normalization.candidates))

    @property
    def found(self) -> tuple[float, float]:
        """(a code was decoded, an ambiguous one was marked), each 1.0 or 0.0: what the
        label's evidence weights multiply."""
        return float(bool(self.decoded)), float(bool(self.ambiguous))

    def names(self, category: str) -> tuple[float, float]:
        """(a decoded code names ``category``, an ambiguous one does), each 1.0 or 0.0: what
        the category's evidence weights multiply."""
        return float(category in self.decoded), float(category in self.ambiguous)

    @property
    def likely_category(self) -> str | None:
        """The category the findings point to: that of the first decoded code, else of the
        first ambiguous one; None for a post without codes."""
        return next(iter((*self.decoded, *self.ambiguous)), None)


# A post in which the normalizer found no code.
NO_EVIDENCE = Evidence()


@dataclass(frozen=True, slots=True)
class Calibration:
    """Platt scaling of P(harmful) and per-category log-probability shifts, each with weights
    for the normalizer's evidence (0: the evidence changes nothing)."""

    label_scale: float = 1.0
    label_shift: float = 0.0
    category_shift: dict[str, float] = field(default_factory=dict)
    label_decoded: float = 0.0
    label_ambiguous: float = 0.0
    category_decoded: float = 0.0
    category_ambiguous: float = 0.0

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any] | None) -> Calibration:
        """The calibration a model's manifest carries (``calibration``), else the identity."""
        fitted = (manifest or {}).get("calibration") or {}
        weights = {name: float(fitted.get(name, 0.0)) for name in _EVIDENCE_WEIGHTS}
        return cls(
            label_scale=float(fitted.get("label_scale", 1.0)),
            label_shift=float(fitted.get("label_shift", 0.0)),
            category_shift={c: float(s) for c, s in (fitted.get("category_shift") or {}).items()},
            **weights,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_scale": self.label_scale,
            "label_shift": self.label_shift,
            "category_shift": dict(self.category_shift),
        } | {name: getattr(self, name) for name in _EVIDENCE_WEIGHTS}

    def labels(
        self, labels: dict[str, float], evidence: Evidence = NO_EVIDENCE
    ) -> dict[str, float]:
        """``{"harmful": p, "safe": 1 - p}`` with p calibrated, given ``evidence``."""
        decoded, ambiguous = evidence.found
        harmful = sigmoid(
            self.label_scale * logit(labels["harmful"])
            + self.label_shift
            + self.label_decoded * decoded
            + self.label_ambiguous * ambiguous
        )
        return {"harmful": harmful, "safe": 1.0 - harmful}

    def categories(
        self, categories: dict[str, float], evidence: Evidence = NO_EVIDENCE
    ) -> dict[str, float]:
        """P(category | harmful), each log-probability shifted (by its own shift and by the
        weight of each kind of ``evidence`` that names it), renormalized."""

        def shift(category: str) -> float:
            decoded, ambiguous = evidence.names(category)
            return (
                self.category_shift.get(category, 0.0)
                + self.category_decoded * decoded
                + self.category_ambiguous * ambiguous
            )

        shifts = {c: shift(c) for c in categories}
        if not any(shifts.values()):
            return categories
        weights = {c: max(p, _EPSILON) * math.exp(shifts[c]) for c, p in categories.items()}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}


def logit(p: float) -> float:
    p = min(max(p, _EPSILON), 1.0 - _EPSILON)
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
