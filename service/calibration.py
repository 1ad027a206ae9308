"""Calibration of a model's probabilities: fitted on dev by the model's build, carried in its
manifest, applied by the scorer before it decides.

A fine-tuned small model is over- or under-confident and leans toward some answers: its
P(harmful) of 0.7 may be right 9 times in 10, and it may prefer ``violence`` where ``hate``
is meant. Two corrections, both cheap and both fitted by maximum likelihood on dev:

- the label: Platt scaling, P'(harmful) = sigmoid(scale * logit(P(harmful)) + shift); the
  decision stays "the more likely label", so ``shift`` moves the boundary where dev says;
- the category given harmful: a shift per category added to its log-probability, renormalized.

The identity (``Calibration()``) changes nothing; models without one are served as they score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# logit() of probabilities this close to 0 or 1 is clipped: a model that is certain stays
# nearly certain, without infinities.
_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Calibration:
    """Platt scaling of P(harmful) and per-category log-probability shifts."""

    label_scale: float = 1.0
    label_shift: float = 0.0
    category_shift: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any] | None) -> Calibration:
        """The calibration a model's manifest carries (``calibration``), else the identity."""
        fitted = (manifest or {}).get("calibration") or {}
        return cls(
            label_scale=float(fitted.get("label_scale", 1.0)),
            label_shift=float(fitted.get("label_shift", 0.0)),
            category_shift={c: float(s) for c, s in (fitted.get("category_shift") or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_scale": self.label_scale,
            "label_shift": self.label_shift,
            "category_shift": dict(self.category_shift),
        }

    def labels(self, labels: dict[str, float]) -> dict[str, float]:
        """``{"harmful": p, "safe": 1 - p}`` with p calibrated."""
        harmful = sigmoid(self.label_scale * logit(labels["harmful"]) + self.label_shift)
        return {"harmful": harmful, "safe": 1.0 - harmful}

    def categories(self, categories: dict[str, float]) -> dict[str, float]:
        """P(category | harmful), each log-probability shifted, renormalized."""
        if not self.category_shift:
            return categories
        weights = {
            c: max(p, _EPSILON) * math.exp(self.category_shift.get(c, 0.0))
            for c, p in categories.items()
        }
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
