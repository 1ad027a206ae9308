"""Calibration: the identity changes nothing, fitting recovers what generated the data, and the
real engine decides with the calibrated probabilities."""

import math
import random
from pathlib import Path

import pytest

from algospeak import normalize
from algospeak.prompt import HARM_CATEGORIES
from service.calibration import Calibration, Evidence, logit, sigmoid
from service.engine import Engine
from service.scoring import decide
from training.calibrate import Observed, fit


def answer(p_harmful: float, conditional: dict[str, float]):
    """A scorer's answer with these probabilities (the rest of the categories near zero)."""
    categories = {c: conditional.get(c, 1e-4) for c in HARM_CATEGORIES}
    total = sum(categories.values())
    categories = {c: p / total for c, p in categories.items()}
    severities = {"mild": 0.2, "severe": 0.5, "extreme": 0.3}
    return decide({"harmful": p_harmful, "safe": 1 - p_harmful}, categories, severities, 0)


def test_the_identity_changes_nothing() -> None:
    identity = Calibration()
    assert identity.labels({"harmful": 0.3, "safe": 0.7})["harmful"] == pytest.approx(0.3)
    categories = {"hate": 0.6, "violence": 0.4}
    assert identity.categories(categories) == categories


def test_a_manifest_carries_the_calibration_both_ways() -> None:
    fitted = Calibration(1.7, -0.4, {"hate": 0.3, "violence": -0.3}, 0.5, 0.2, 3.0, 0.6)
    assert Calibration.from_manifest({"calibration": fitted.to_dict()}) == fitted
    older = {"label_scale": 1.7, "label_shift": -0.4, "category_shift": {}}  # no evidence weights
    assert Calibration.from_manifest({"calibration": older}) == Calibration(1.7, -0.4)
    assert Calibration.from_manifest({}) == Calibration.from_manifest(None) == Calibration()


def test_fitting_recovers_the_scale_and_shift_that_generated_the_labels() -> None:
    rng = random.Random(7)
    observed = []
    for _ in range(4000):
        x = rng.gauss(0, 2)
        truth = rng.random() < sigmoid(0.5 * x - 1.0)  # an over-confident model, biased up
        label, category = ("harmful", "hate") if truth else ("safe", "none")
        observed.append(Observed(answer(sigmoid(x), {"hate": 1.0}), label, category))
    calibration = fit(observed)
    assert calibration.label_scale == pytest.approx(0.5, abs=0.08)
    assert calibration.label_shift == pytest.approx(-1.0, abs=0.15)
    # Over-confidence corrected: a 0.95 becomes about sigmoid(0.5 * 2.94 - 1) = 0.62.
    assert calibration.labels({"harmful": 0.95, "safe": 0.05})["harmful"] == pytest.approx(
        0.62, abs=0.05
    )


def test_a_dev_set_the_model_separates_perfectly_gives_a_finite_calibration() -> None:
    """A confident model right on every dev example: no maximum-likelihood optimum exists, and
    the fit must stay finite and keep the boundary where it was."""
    observed = [
        Observed(
            answer(sigmoid(x), {"hate": 1.0}), *(("harmful", "hate") if x > 0 else ("safe", "none"))
        )
        for x in [-13.0, -12.0, -9.0, -6.0, 6.0, 9.0, 12.0, 13.0] * 100
    ]
    calibration = fit(observed)
    assert 0 < calibration.label_scale < 20 and abs(calibration.label_shift) < 5
    assert calibration.labels({"harmful": 0.99, "safe": 0.01})["harmful"] > 0.9
    assert calibration.labels({"harmful": 0.01, "safe": 0.99})["harmful"] < 0.1


def test_fitting_corrects_a_model_that_leans_toward_one_category() -> None:
    """Hate posts scored 0.6 violence / 0.4 hate, violence posts 0.9 / 0.1: a shift toward hate
    makes both right, as the likelihood prefers."""
    hate = [Observed(answer(0.9, {"violence": 0.6, "hate": 0.4}), "harmful", "hate")] * 50
    violence = [Observed(answer(0.9, {"violence": 0.9, "hate": 0.1}), "harmful", "violence")] * 50
    safe = [Observed(answer(0.1, {"violence": 0.5, "hate": 0.5}), "safe", "none")] * 100
    calibration = fit(hate + violence + safe)
    assert calibration.category_shift["hate"] > calibration.category_shift["violence"]
    for observed in hate + violence:
        conditional = {
            c: observed.answer.category_scores[c] / observed.answer.label_scores["harmful"]
            for c in HARM_CATEGORIES
        }
        fixed = calibration.categories(conditional)
        assert max(fixed, key=fixed.__getitem__) == observed.category
    assert math.isclose(sum(calibration.category_shift.values()), 0.0, abs_tol=1e-9)


def test_fitting_weighs_the_evidence_as_much_as_it_is_worth() -> None:
    """A model blind to the normalizer's findings: P(harmful) carries half the truth and a decoded
    code the other half; its categories are a coin toss between hate and violence that the
    decoded code settles, and an ambiguous one says nothing. The fit gives the decoded code a
    positive weight on both, the ambiguous one about none, and then decides right."""
    rng = random.Random(11)
    observed = []
    for _ in range(3000):
        x, coded = rng.gauss(0, 1.5), rng.random() < 0.5
        truth = rng.random() < sigmoid(x + (2.0 if coded else -2.0))
        category = rng.choice(("hate", "violence"))
        other = "violence" if category == "hate" else "hate"
        decoded = ((category if rng.random() < 0.9 else other),) if coded else ()
        ambiguous = (rng.choice(("hate", "violence")),) if rng.random() < 0.5 else ()
        evidence = Evidence(decoded, ambiguous)
        label = "harmful" if truth else "safe"
        answer_ = answer(sigmoid(x), {"hate": 0.5, "violence": 0.5})
        observed.append(Observed(answer_, label, category if truth else "none", evidence))
    calibration = fit(observed)
    assert calibration.label_decoded > 1.0 and abs(calibration.label_ambiguous) < 0.5
    assert calibration.category_decoded > 1.0 and abs(calibration.category_ambiguous) < 0.5
    coin = {"hate": 0.5, "violence": 0.5}
    named = calibration.categories(coin, Evidence(decoded=("violence",)))
    assert named["violence"] > 0.75
    plain, coded = ({"harmful": 0.5, "safe": 0.5}, Evidence(decoded=("hate",)))
    assert calibration.labels(plain, coded)["harmful"] > calibration.labels(plain)["harmful"]


def test_logit_and_sigmoid_are_inverse_and_finite_at_the_ends() -> None:
    assert sigmoid(logit(0.3)) == pytest.approx(0.3)
    assert math.isfinite(logit(0.0)) and math.isfinite(logit(1.0))
    assert sigmoid(-800) == 0.0 and sigmoid(800) == 1.0


def test_the_real_engine_decides_with_the_calibrated_probabilities(smollm2_gguf: Path) -> None:
    text = "grilled corn with lime"
    plain = Engine(smollm2_gguf, threads=2, calibration=Calibration())
    shifted = Engine(smollm2_gguf, threads=2, calibration=Calibration(1.0, -30.0, {"drugs": 30}))
    try:
        before = plain.classify(text, normalize(text))
        after = shifted.classify(text, normalize(text))
    finally:
        plain.close()
        shifted.close()
    assert after.label == "safe" and after.label_scores["harmful"] < 1e-6
    expected = sigmoid(logit(before.label_scores["harmful"]) - 30.0)
    assert after.label_scores["harmful"] == pytest.approx(expected, rel=1e-6)
    top = max(HARM_CATEGORIES, key=after.category_scores.__getitem__)
    assert top == "drugs"  # the shift decides the top category too


def test_the_real_engine_weighs_the_normalizers_evidence(smollm2_gguf: Path) -> None:
    """With weights on the evidence, a decoded code's category wins and a post with a decoded
    code is pushed toward the label the weight says; a post without one is left as it was."""
    coded, plain = "thinking about sewer slide tonight", "see you at the meeting"
    weighs = Calibration(label_decoded=-30.0, category_decoded=30.0)
    engines = (
        Engine(smollm2_gguf, threads=2, calibration=Calibration()),
        Engine(smollm2_gguf, threads=2, calibration=weighs),
    )
    try:
        (before, after), (plain_before, plain_after) = (
            [engine.classify(text, normalize(text)) for engine in engines]
            for text in (coded, plain)
        )
    finally:
        for engine in engines:
            engine.close()
    assert after.label == "safe"
    expected = sigmoid(logit(before.label_scores["harmful"]) - 30.0)
    assert after.label_scores["harmful"] == pytest.approx(expected, rel=1e-6)
    assert max(HARM_CATEGORIES, key=after.category_scores.__getitem__) == "self_harm"
    assert plain_after == plain_before
