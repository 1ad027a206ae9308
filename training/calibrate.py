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

from service.calibration import NO_EVIDENCE, Calibration, Evidence, logit
from service.scoring import Classification

log = logging.getLogger(__name__)

# L2 pulls toward the identity: a dev set the model separates perfectly cannot send the label's
# scale to infinity (on the summed loss), and a category seen a few times on dev cannot run away
# (on the mean loss).
_LABEL_RIDGE = 1.0
_CATEGORY_RIDGE = 0.01


@dataclass(frozen=True, slots=True)
class Observed:
    """One dev example: the uncalibrated answer, the truth, and what the normalizer found."""

    answer: Classification
    label: str
    category: str
    evidence: Evidence = NO_EVIDENCE


def fit(observed: Sequence[Observed]) -> Calibration:
    """The calibration that maximizes the likelihood of the true labels (Platt scaling with the
    evidence) and of the true categories of the harmful examples (per-category shifts and the
    evidence's weights) on ``observed``."""
    scale, shift, label_decoded, label_ambiguous = _fit_label(
        np.array([_label_features(o) for o in observed]),
        np.array([o.label == "harmful" for o in observed], dtype=np.float64),
    )
    harmful = [o for o in observed if o.label == "harmful" and o.category != "none"]
    shifts, decoded, ambiguous = _fit_categories(harmful) if harmful else ({}, 0.0, 0.0)
    calibration = Calibration(
        label_scale=scale,
        label_shift=shift,
        category_shift=shifts,
        label_decoded=label_decoded,
        label_ambiguous=label_ambiguous,
        category_decoded=decoded,
        category_ambiguous=ambiguous,
    )
    log.info("calibration on %d dev examples: %s", len(observed), calibration.to_dict())
    return calibration


def _label_features(o: Observed) -> list[float]:
    """What Platt scaling weighs (see ``Calibration.labels``): the logit, 1, the evidence."""
    return [logit(o.answer.label_scores["harmful"]), 1.0, *o.evidence.found]


def _fit_label(features: np.ndarray, y: np.ndarray, steps: int = 100) -> list[float]:
    """The weights of sigmoid(features @ weights) fitted to ``y``, starting from (and pulled
    toward) the identity (1 for the logit, 0 for the rest): Newton's method, each step halved
    until the (ridge-penalized) loss goes down. A confident model's logits sit far from 0,
    where the curvature is tiny and a plain Newton step overshoots by orders of magnitude."""
    prior = np.zeros(features.shape[1])
    prior[0] = 1.0

    def loss(weights: np.ndarray) -> float:
        z = features @ weights
        # log(1 + e^z) - y z, computed without overflow.
        return (
            float(np.sum(np.logaddexp(0.0, z) - y * z))
            + _LABEL_RIDGE * float(np.sum((weights - prior) ** 2)) / 2
        )

    weights = prior.copy()
    current = loss(weights)
    ridge = _LABEL_RIDGE * np.eye(len(prior))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(features @ weights)))
        gradient = features.T @ (p - y) + _LABEL_RIDGE * (weights - prior)
        hessian = (features * (p * (1 - p))[:, None]).T @ features + ridge
        step = np.linalg.solve(hessian, gradient)
        while np.abs(step).max() > 1e-12:
            candidate = weights - step
            if (value := loss(candidate)) < current:
                weights, current = candidate, value
                break
            step /= 2
        else:
            break
    return [float(w) for w in weights]


def _fit_categories(
    harmful: Sequence[Observed], steps: int = 500
) -> tuple[dict[str, float], float, float]:
    """Shifts added to log P(category | harmful), and the weights added for a category that the
    decoded and the ambiguous codes name, that maximize the true categories' likelihood
    (gradient descent on the mean cross-entropy; the shifts are relative, so they sum to 0)."""
    names = sorted(harmful[0].answer.category_scores.keys() - {"none"})
    joint = np.array([[o.answer.category_scores[c] for c in names] for o in harmful])
    log_p = np.log(np.maximum(joint / joint.sum(axis=1, keepdims=True), 1e-12))
    truth = np.zeros_like(log_p)
    for row, o in enumerate(harmful):
        if o.category in names:
            truth[row, names.index(o.category)] = 1.0
    # Per example and category: [named by a decoded code, named by an ambiguous one].
    named = np.array([[o.evidence.names(c) for c in names] for o in harmful])
    shifts = np.zeros(len(names))
    weights = np.zeros(2)
    for _ in range(steps):
        scores = log_p + shifts + named @ weights
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        error = p - truth
        shifts -= error.mean(axis=0) + _CATEGORY_RIDGE * shifts
        weights -= np.einsum("nc,nck->k", error, named) / len(harmful) + _CATEGORY_RIDGE * weights
        shifts -= shifts.mean()
    shifted = {c: float(s) for c, s in zip(names, shifts, strict=True)}
    return shifted, float(weights[0]), float(weights[1])
