"""Explanations of a verdict, for the moderator who has to act on it.

``explain`` is a pure function of a ``Verdict`` and the thresholds that decided it: it reads
what the normalizer found (decoded codes, clean-ups, candidates it judged not to be codes), the
model's probabilities and the thresholds, and says the same in one sentence. It never calls the
model, so it cannot change a decision; the model-written reason, when there is one, is the
verdict's own ``reason``, written after the decision.

No web imports: the API uses it, and so can the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from algospeak import Candidate, Span
from algospeak.taxonomy import CATEGORY_NAMES, HARM_CATEGORIES
from service.classifier import Verdict
from service.policy import top_harm_category

_ACTIONS = {"allow": "Allowed", "review": "Flagged for review", "block": "Blocked"}
# The normalizer's rule names in words ("lexicon" is the code itself, not a disguise).
_RULES = {
    "spacing": "spacing",
    "joined": "joined words",
    "leetspeak": "leetspeak",
    "masking": "masking",
    "elongation": "stretched letters",
    "homoglyph": "look-alike letters",
    "compatibility": "stylized letters",
    "diacritics": "accents",
    "combining": "combining marks",
    "invisible": "invisible characters",
}
_LISTED = 2  # codes (or candidates) the summary names before "and N more"


@dataclass(frozen=True, slots=True)
class DecodedSpan:
    """A replaced piece of the input, as the normalizer reported it (``text[start:end] ==
    original``), and what it means in words."""

    start: int
    end: int
    original: str
    replacement: str
    category: str
    rule: str
    entry: str | None
    text: str


@dataclass(frozen=True, slots=True)
class NotCode:
    """An ambiguous code left as written because its context does not support the coded
    reading (``text[start:end] == original``); ``reason`` is the normalizer's."""

    start: int
    end: int
    original: str
    meaning: str
    category: str
    entry: str
    reason: str
    text: str


@dataclass(frozen=True, slots=True)
class Probabilities:
    """The model's probabilities behind the decision. ``category`` is the most likely harm
    category whatever the label (what thresholds key on), ``severity`` the most likely
    severity given it; the ``*_given_harmful`` values are conditional on the label harmful."""

    harmful: float
    category: str
    category_given_harmful: float
    severity: str
    severity_given_harmful: float


@dataclass(frozen=True, slots=True)
class AppliedThresholds:
    """The thresholds that decided the action: ``review`` and ``block`` in force for the
    top harm category (``source``: "default" or that category when it has its own),
    which one P(harmful) reached (``applied``: None below review), and whether the
    platform's policy moderates that category at all."""

    review: float
    block: float
    source: str
    applied: Literal["review", "block"] | None
    moderated: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a text got its verdict. ``codes`` are the decoded spans in a harm category (the
    codes that mattered), ``cleanup`` the spans in category ``none``: invisible or look-alike
    characters undone, and ordinary words in disguise next to a code spelled out ("mys3lf"),
    ``not_codes`` the candidates judged not to be codes; all of them index the
    input. ``reason`` is the model's own sentence (None unless asked for)."""

    summary: str
    codes: tuple[DecodedSpan, ...]
    cleanup: tuple[DecodedSpan, ...]
    not_codes: tuple[NotCode, ...]
    probabilities: Probabilities
    thresholds: AppliedThresholds
    reason: str | None = None


def explain(verdict: Verdict) -> Explanation:
    """The explanation of ``verdict``, with the thresholds that decided it."""
    normalization = verdict.normalization
    codes = tuple(_decoded(s) for s in normalization.spans if s.category in HARM_CATEGORIES)
    cleanup = tuple(_decoded(s) for s in normalization.spans if s.category not in HARM_CATEGORIES)
    not_codes = tuple(_not_code(c) for c in normalization.candidates)
    probabilities = _probabilities(verdict)
    applied = _thresholds(verdict, probabilities.category)
    return Explanation(
        summary=_summary(verdict, codes, not_codes, probabilities, applied),
        codes=codes,
        cleanup=cleanup,
        not_codes=not_codes,
        probabilities=probabilities,
        thresholds=applied,
        reason=verdict.reason,
    )


def _decoded(span: Span) -> DecodedSpan:
    return DecodedSpan(**asdict(span), text=_span_text(span))


def _span_text(span: Span) -> str:
    """``'un4l1ve' is a code for 'kill' (violence; disguised by leetspeak)``."""
    rules = span.rule.split("+")
    disguise = _words([_RULES.get(r, r) for r in rules if r != "lexicon"])
    if span.category not in HARM_CATEGORIES:
        return f"'{span.original}' is '{span.replacement}' written with {disguise}"
    notes = CATEGORY_NAMES[span.category] + (f"; disguised by {disguise}" if disguise else "")
    return f"{_short(span)} ({notes})"


def _short(span: Span | DecodedSpan) -> str:
    """The span's meaning without notes: a lexicon code, or a plain word in disguise."""
    if "lexicon" in span.rule.split("+"):
        return f"'{span.original}' is a code for '{span.replacement}'"
    return f"'{span.original}' spells '{span.replacement}'"


def _not_code(candidate: Candidate) -> NotCode:
    text = f"'{candidate.original}' was not read as '{candidate.meaning}': {candidate.reason}"
    return NotCode(**asdict(candidate), text=text)


def _probabilities(verdict: Verdict) -> Probabilities:
    c = verdict.classification
    harmful = c.label_scores["harmful"]
    category = top_harm_category(c)
    severity = max((s for s in c.severity_scores if s != "none"), key=c.severity_scores.__getitem__)
    return Probabilities(
        harmful=harmful,
        category=category,
        category_given_harmful=_given(c.category_scores[category], harmful),
        severity=severity,
        severity_given_harmful=_given(c.severity_scores[severity], harmful),
    )


def _given(joint: float, harmful: float) -> float:
    # The engine's joint scores are P(harmful) * P(value | harmful).
    return min(1.0, joint / harmful) if harmful > 0 else 0.0


def _thresholds(verdict: Verdict, category: str) -> AppliedThresholds:
    thresholds = verdict.thresholds
    review, block = thresholds.limits(category)
    return AppliedThresholds(
        review=review,
        block=block,
        source=category if category in thresholds.per_category else "default",
        applied=verdict.action if verdict.action in ("review", "block") else None,
        moderated=verdict.moderated,
    )


def _summary(
    verdict: Verdict,
    codes: tuple[DecodedSpan, ...],
    not_codes: tuple[NotCode, ...],
    probabilities: Probabilities,
    thresholds: AppliedThresholds,
) -> str:
    """One sentence: the action, the evidence in the text, the probability and the threshold
    it met, e.g. "Flagged for review: 'unalive' is a code for 'kill'; the model gives
    P(harmful)=0.91, mostly violence, at or above the review threshold 0.5."."""
    action = _ACTIONS.get(verdict.action, verdict.action.capitalize())
    if codes:
        evidence = _listed([_short(c) for c in codes], "code")
    elif not_codes:
        evidence = _listed([f"'{c.original}' was read in its ordinary sense" for c in not_codes])
    else:
        evidence = "no algospeak found"
    category = CATEGORY_NAMES[probabilities.category]
    model = f"the model gives P(harmful)={probabilities.harmful:.2f}"
    if verdict.classification.label == "harmful":
        model += f", mostly {category}"
    which = f"the {category} " if thresholds.source != "default" else "the "
    if not thresholds.moderated:
        rule = f"but the platform's policy does not moderate {category}"
    elif thresholds.applied == "block":
        rule = f"at or above {which}block threshold {thresholds.block:g}"
    elif thresholds.applied == "review":
        rule = f"at or above {which}review threshold {thresholds.review:g}"
    else:
        rule = f"below {which}review threshold {thresholds.review:g}"
    return f"{action}: {evidence}; {model}, {rule}."


def _listed(items: list[str], noun: str = "") -> str:
    shown = items[:_LISTED]
    rest = len(items) - len(shown)
    if rest:
        more = f"{rest} more" + (f" {noun}{'s' if rest > 1 else ''}" if noun else "")
        return ", ".join(shown) + f" and {more}"
    return _words(shown)


def _words(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"
