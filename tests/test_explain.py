"""Explanations (explain: true / "reason"): grounded in the input and the scores, built after
the decision and never changing it. Unit tests on made-up scores, then the real SmolLM2 GGUF
behind /classify and /classify/batch (few calls: each costs the model)."""

import pytest
from fastapi.testclient import TestClient

from algospeak import normalize
from algospeak.taxonomy import HARM_CATEGORIES
from service.classifier import Verdict
from service.explain import explain
from service.policy import Thresholds
from service.scoring import decide
from tests.test_api import assert_error

# A code, a look-alike clean-up, a disguised plain word and an ambiguous code left alone.
TEXT = "the character got un4l1ved, so ｗｏｗ then k!lled again; grilled corn after"
OTHER = "kys nobody wants you here"
DECISION = ("label", "category", "severity", "confidence", "action", "scores", "moderated")


def _verdict(
    text: str,
    harmful: float,
    top: str = "violence",
    thresholds: Thresholds | None = None,
    moderated: bool = True,
) -> Verdict:
    """A verdict with made-up scores: ``top`` gets most of the harm mass."""
    others = (1 - 0.7) / (len(HARM_CATEGORIES) - 1)
    categories = {c: 0.7 if c == top else others for c in HARM_CATEGORIES}
    severities = {"low": 0.1, "medium": 0.2, "high": 0.6, "extreme": 0.1}
    classification = decide({"harmful": harmful, "safe": 1 - harmful}, categories, severities, 1)
    thresholds = thresholds or Thresholds()
    action = thresholds.action(classification) if moderated else "allow"
    return Verdict(text, normalize(text), classification, action, "m", 1.0, thresholds, moderated)


# ---------------------------------------------------------------- the explanation itself


def test_codes_cleanups_and_candidates_are_the_normalizers_own_spans() -> None:
    verdict = _verdict(TEXT, 0.7)
    explanation = explain(verdict)
    spans = verdict.normalization.spans
    assert [c.original for c in explanation.codes] == ["un4l1ved", "k!lled"]
    assert [c.original for c in explanation.cleanup] == ["ｗｏｗ"]
    assert [c.original for c in explanation.not_codes] == ["corn"]
    for item in (*explanation.codes, *explanation.cleanup, *explanation.not_codes):
        assert TEXT[item.start : item.end] == item.original
    assert len(explanation.codes) + len(explanation.cleanup) == len(spans)
    assert explanation.codes[0].text == (
        "'un4l1ved' is a code for 'killed' (violence; disguised by leetspeak)"
    )
    assert (
        explanation.codes[1].text == "'k!lled' spells 'killed' (violence; disguised by leetspeak)"
    )
    assert explanation.cleanup[0].text == "'ｗｏｗ' is 'wow' written with stylized letters"
    assert explanation.not_codes[0].text.startswith("'corn' was not read as 'porn': context")
    assert explanation.reason is None


@pytest.mark.parametrize(
    ("harmful", "action", "says"),
    [
        (0.95, "Blocked", "at or above the block threshold 0.9."),
        (0.7, "Flagged for review", "at or above the review threshold 0.5."),
        (0.2, "Allowed", "below the review threshold 0.5."),
    ],
)
def test_the_summary_gives_action_codes_probability_and_threshold(harmful, action, says) -> None:
    explanation = explain(_verdict(TEXT, harmful))
    assert explanation.summary.startswith(
        f"{action}: 'un4l1ved' is a code for 'killed' and 'k!lled' spells 'killed'; "
        f"the model gives P(harmful)={harmful:.2f}"
    )
    assert explanation.summary.endswith(says)
    assert "\n" not in explanation.summary
    assert ("mostly violence" in explanation.summary) == (harmful > 0.5)


def test_probabilities_are_the_verdicts_and_the_applied_threshold_decided_it() -> None:
    thresholds = Thresholds(0.5, 0.9, {"child_safety": {"review": 0.2, "block": 0.5}})
    verdict = _verdict("hello there", 0.3, top="child_safety", thresholds=thresholds)
    explanation = explain(verdict)
    p = explanation.probabilities
    assert p.harmful == verdict.classification.label_scores["harmful"] == 0.3
    assert (p.category, p.severity) == ("child_safety", "high")
    assert p.category_given_harmful == pytest.approx(0.7)
    assert p.severity_given_harmful == pytest.approx(0.6)
    t = explanation.thresholds
    assert (t.review, t.block, t.source, t.applied, t.moderated) == (
        0.2, 0.5, "child_safety", "review", True
    )  # fmt: skip
    assert verdict.action == "review"
    assert explanation.summary == (
        "Flagged for review: no algospeak found; the model gives P(harmful)=0.30, at or above "
        "the child safety review threshold 0.2."
    )


def test_a_category_the_policy_does_not_moderate_is_said_so() -> None:
    explanation = explain(_verdict(OTHER, 0.99, top="harassment", moderated=False))
    assert explanation.thresholds.applied is None and not explanation.thresholds.moderated
    assert explanation.summary.startswith("Allowed: 'kys' is a code for 'kill yourself'")
    assert explanation.summary.endswith("but the platform's policy does not moderate harassment.")


def test_the_summary_lists_a_few_codes_and_counts_the_rest() -> None:
    summary = explain(_verdict("kys, kms and unalive, seggs", 0.8)).summary
    listed = "'kys' is a code for 'kill yourself', 'kms' is a code for 'kill myself'"
    assert f": {listed} and 2 more codes;" in summary


# ---------------------------------------------------------------- over HTTP, the real model


@pytest.fixture(scope="module")
def answers(model_client: TestClient) -> dict[str, dict]:
    """TEXT classified with explain left out, true and "reason" (one model call each)."""
    bodies = {
        "default": {"text": TEXT},
        "true": {"text": TEXT, "explain": True},
        "reason": {"text": TEXT, "explain": "reason"},
    }
    answers = {}
    for name, body in bodies.items():
        response = model_client.post("/classify", json=body)
        assert response.status_code == 200, response.text
        answers[name] = response.json()
    return answers


def test_explain_is_off_by_default(answers: dict[str, dict]) -> None:
    assert answers["default"]["explanation"] is None
    assert answers["true"]["explanation"]["reason"] is None


def test_the_decision_is_the_same_at_every_explanation_level(answers: dict[str, dict]) -> None:
    decisions = [{k: answer[k] for k in DECISION} for answer in answers.values()]
    assert decisions[0] == decisions[1] == decisions[2]
    same = ("normalized", "spans", "candidates", "model")
    assert len({repr([a[k] for k in same]) for a in answers.values()}) == 1
    grounded, reasoned = answers["true"]["explanation"], answers["reason"]["explanation"]
    assert grounded == reasoned | {"reason": None}  # the model's reason changes nothing else


def test_the_explanation_is_grounded_in_the_input_and_the_response(
    answers: dict[str, dict],
) -> None:
    answer = answers["true"]
    explanation = answer["explanation"]
    harm = [s for s in answer["spans"] if s["category"] in HARM_CATEGORIES]
    assert harm
    strip = lambda item: {k: v for k, v in item.items() if k != "text"}  # noqa: E731
    assert [strip(c) for c in explanation["codes"]] == harm
    assert [strip(c) for c in explanation["cleanup"]] == [
        s for s in answer["spans"] if s["category"] not in HARM_CATEGORIES
    ]
    assert [strip(c) for c in explanation["not_codes"]] == answer["candidates"]
    for item in explanation["codes"] + explanation["cleanup"] + explanation["not_codes"]:
        assert TEXT[item["start"] : item["end"]] == item["original"]
        assert f"'{item['original']}'" in item["text"]
    p = explanation["probabilities"]
    assert p["harmful"] == answer["scores"]["label"]["harmful"]
    assert answer["scores"]["category"][p["category"]] == pytest.approx(
        p["harmful"] * p["category_given_harmful"]
    )
    summary = explanation["summary"]
    verb = {"allow": "Allowed", "review": "Flagged for review", "block": "Blocked"}
    assert summary.startswith(verb[answer["action"]] + ": ")
    assert all(f"'{c['original']}'" in summary for c in explanation["codes"])
    assert f"P(harmful)={p['harmful']:.2f}" in summary
    t = explanation["thresholds"]
    applied = {"allow": None, "review": "review", "block": "block"}[answer["action"]]
    assert t["applied"] == applied and t["moderated"] == answer["moderated"]
    assert (p["harmful"] >= t["block"]) == (applied == "block")
    assert (p["harmful"] >= t["review"]) == (applied is not None)


def test_reason_is_the_models_own_text_within_the_token_cap(
    answers: dict[str, dict], model_client: TestClient
) -> None:
    reason = answers["reason"]["explanation"]["reason"]
    assert isinstance(reason, str) and reason.strip() == reason and "\n" not in reason
    assert reason  # the untuned base writes something; a tuned model writes a real reason
    classifier = model_client.app.state.classifier
    assert classifier.engine.count_tokens(reason) <= classifier.reason_max_tokens == 48


def test_batch_explains_each_text_like_single_requests(
    answers: dict[str, dict], model_client: TestClient
) -> None:
    response = model_client.post("/classify/batch", json={"texts": [TEXT, OTHER], "explain": True})
    assert response.status_code == 200, response.text
    first, other = response.json()["results"]
    assert first["explanation"] == answers["true"]["explanation"]
    assert {k: first[k] for k in DECISION} == {k: answers["default"][k] for k in DECISION}
    codes = other["explanation"]["codes"]
    assert [c["original"] for c in codes] == ["kys"] and OTHER[codes[0]["start"] :].startswith(
        "kys"
    )
    assert other["explanation"]["reason"] is None


@pytest.mark.parametrize("value", [1, 0, "true", "yes", "Reason", None, ["reason"], {}])
@pytest.mark.parametrize("path", ["/classify", "/classify/batch"])
def test_other_explain_values_are_refused(model_client: TestClient, path: str, value) -> None:
    body = {"text": "hello"} if path == "/classify" else {"texts": ["hello"]}
    error = assert_error(model_client.post(path, json=body | {"explain": value}), 422)
    assert error["message"] == 'explain: must be true, false or "reason"'
