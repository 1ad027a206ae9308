"""Fitting a model's ``Calibration`` on dev: maximum likelihood, a few Newton or gradient steps
in numpy (seconds for thousands of examples).

The scorer's answers are taken before any calibration (``Calibration()`` applied), so fitting
twice on the same answers gives the same calibration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.calibration import Calibration, logit
from service.scoring import Classification

log = logging.getLogger(__name__)

# L2 pulls toward the identity: a dev set the model separates perfectly cannot send the label's
# scale to infinity (on the summed loss), and a category seen a few times on dev cannot run away
# (on the mean loss).
_LABEL_RIDGE = 1.0
_CATEGORY_RIDGE = 0.01


@dataclass(frozen=True, slots=True)
class Observed:
    """One dev example: the uncalibrated answer and the truth."""

    answer: Classification
    label: str
    category: str


def fit(observed: Sequence[Observed]) -> Calibration:
    """The calibration that maximizes the likelihood of the true labels (Platt scaling) and of
    the true categories of the harmful examples (per-category shifts) on ``observed``."""
    scale, shift = _fit_label(
        np.array([logit(o.answer.label_scores["harmful"]) for o in observed]),
        np.array([o.label == "harmful" for o in observed], dtype=np.float64),
    )
    harmful = [o for o in observed if o.label == "harmful" and o.category != "none"]
    shifts = _fit_categories(harmful) if harmful else {}
    calibration = Calibration(label_scale=scale, label_shift=shift, category_shift=shifts)
    log.info("calibration on %d dev examples: %s", len(observed), calibration.to_dict())
    return calibration


def _fit_label(x: np.ndarray, y: np.ndarray, steps: int = 100) -> tuple[float, float]:
    """(scale, shift) of sigmoid(scale * x + shift) fitted to ``y``: Newton's method, each step
    halved until the (ridge-penalized) loss goes down. A confident model's logits sit far from
    0, where the curvature is tiny and a plain Newton step overshoots by orders of magnitude."""
    features = np.stack([x, np.ones_like(x)], axis=1)
    prior = np.array([1.0, 0.0])

    def loss(weights: np.ndarray) -> float:
        z = features @ weights
        # log(1 + e^z) - y z, computed without overflow.
        return (
            float(np.sum(np.logaddexp(0.0, z) - y * z))
            + _LABEL_RIDGE * float(np.sum((weights - prior) ** 2)) / 2
        )

    weights = prior.copy()
    current = loss(weights)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(features @ weights)))
        gradient = features.T @ (p - y) + _LABEL_RIDGE * (weights - prior)
        hessian = (features * (p * (1 - p))[:, None]).T @ features + _LABEL_RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        while np.abs(step).max() > 1e-12:
            candidate = weights - step
            if (value := loss(candidate)) < current:
                weights, current = candidate, value
                break
            step /= 2
        else:
            break
    return float(weights[0]), float(weights[1])


def _fit_categories(harmful: Sequence[Observed], steps: int = 500) -> dict[str, float]:
    """Shifts added to log P(category | harmful) that maximize the true categories' likelihood
    (gradient descent on the mean cross-entropy; the shifts are relative, so they sum to 0)."""
    names = sorted(harmful[0].answer.category_scores.keys() - {"none"})
    joint = np.array([[o.answer.category_scores[c] for c in names] for o in harmful])
    log_p = np.log(np.maximum(joint / joint.sum(axis=1, keepdims=True), 1e-12))
    truth = np.zeros_like(log_p)
    for row, o in enumerate(harmful):
        if o.category in names:
            truth[row, names.index(o.category)] = 1.0
    shifts = np.zeros(len(names))
    for _ in range(steps):
        scores = log_p + shifts
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        gradient = (p - truth).mean(axis=0) + _CATEGORY_RIDGE * shifts
        shifts -= 1.0 * gradient
        shifts -= shifts.mean()
    return {c: float(s) for c, s in zip(names, shifts, strict=True)}
