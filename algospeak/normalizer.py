"""Turning coded text into plain text, and saying what changed and where.

``normalize(text)`` is deterministic, idempotent (normalizing its output changes nothing
more) and total on ``str``. Spans index the original text. Ambiguous codes that their context
does not support are left in place and reported as candidates for the classifier to judge.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any

from algospeak.context import Context
from algospeak.folding import Folded, builds_emoji, clean, fold, rules_of
from algospeak.lexicon import Lexicon, load_lexicon
from algospeak.matcher import Match, Matcher, WordReading, is_wordish, leftmost_longest

# Rules in the order they are reported ("lexicon+spacing").
RULES = (
    "lexicon",
    "spacing",
    "joined",
    "leetspeak",
    "masking",
    "elongation",
    "homoglyph",
    "compatibility",
    "diacritics",
    "combining",
    "invisible",
)
# Writing a word in disguise is itself evidence that it is meant as a code.
_DISGUISES = frozenset(RULES) - {"lexicon", "joined", "elongation"}
_SELECTORS = re.compile(r"[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]+")
_NON_SPACE = re.compile(r"\S+")
_ZWJ = "\u200d"


@dataclass(frozen=True, slots=True)
class Span:
    """A replaced piece of the original text: ``text[start:end] == original``."""

    start: int
    end: int
    original: str
    replacement: str
    # The entry's category; "none" (the taxonomy's "no harm category") for clean-up of
    # invisible or look-alike characters and for ordinary words in disguise ("mys3lf").
    category: str
    rule: str  # how it was disguised, e.g. "lexicon+spacing"
    entry: str | None  # the lexicon entry id; None for clean-up and ordinary words


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ambiguous code left unchanged because its context does not support the coded reading."""

    start: int
    end: int
    original: str
    meaning: str
    category: str
    entry: str
    reason: str


@dataclass(frozen=True, slots=True)
class Normalization:
    text: str
    normalized: str
    changed: bool
    spans: tuple[Span, ...]
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def annotated(self) -> str:
        """The text as the classifier reads it: each decoded code or disguised term replaced by
        its meaning in brackets ("s e g g s" -> "[sex]"), each ambiguous code followed by its
        possible meaning ("corn[porn?]"), ordinary words in disguise and look-alike or invisible
        characters cleaned up ("mys3lf" -> "myself"). Shorter than the post plus its decoding."""
        edits = [
            (s.start, s.end, f"[{s.replacement}]" if s.entry else s.replacement, False)
            for s in self.spans
        ]
        edits += [(c.start, c.end, f"{c.original}[{c.meaning}?]", False) for c in self.candidates]
        return _apply(self.text, sorted(edits))


@dataclass(slots=True)
class _Found:
    """A match placed in the original text, with the decision about it."""

    match: Match
    start: int
    end: int
    original: str
    replacement: str
    rules: frozenset[str]
    sentence: int
    on_person: bool = False  # a verb reading aimed at a person ("grape u", "graping girls")
    confirmed: bool = False
    reason: str = ""


class Normalizer:
    """Normalizes text against one lexicon (the built-in one by default)."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon or load_lexicon()
        self._matcher = Matcher(self.lexicon)

    def normalize(self, text: str) -> Normalization:
        folded = fold(text)
        matches = leftmost_longest(self._matcher.find(folded.text))
        # Ordinary words in disguise: spelled out, and cues for the matches' contexts.
        taken = [(m.start, m.end) for m in matches]
        readings = self._matcher.word_readings(folded.text, taken)
        readings += self._matcher.spaced_readings(folded.text, taken)
        context = Context(folded.text, [(r.start, r.word) for r in readings])
        placed = (self._place(text, folded, context, match) for match in matches)
        found = [f for f in placed if not _in_emoji_sequence(text, f)]
        self._decide(found, context)
        spans = [self._span(f) for f in found if f.confirmed and _changes(f)]
        spans += _word_spans(text, folded, readings)
        spans.sort(key=lambda s: s.start)  # the clean-up walks the gaps between them in order
        spans = sorted(spans + _cleanup(text, spans), key=lambda s: s.start)
        candidates = tuple(
            Candidate(
                f.start,
                f.end,
                f.original,
                f.match.entry.variants[f.match.variant],
                f.match.entry.category,
                f.match.entry.id,
                f.reason,
            )
            for f in found
            if not f.confirmed
        )
        normalized = _apply(text, [(s.start, s.end, s.replacement, bool(s.entry)) for s in spans])
        return Normalization(text, normalized, normalized != text, tuple(spans), candidates)

    def _place(self, text: str, folded: Folded, context: Context, match: Match) -> _Found:
        start = folded.start(match.start)
        end = folded.end(match.end)
        if not match.variant[-1].isalnum() and (selectors := _SELECTORS.match(text, end)):
            end = selectors.end()  # keep an emoji's presentation selector inside its span
        original = text[start:end]
        rules = match.rules | rules_of(original)
        if match.entry.kind == "code":
            rules |= {"lexicon"}
        entry = match.entry
        replacement = entry.variants[match.variant]
        # An inflected variant already says which part of speech it is ("pew pewed": shot).
        inflected = replacement != entry.meaning
        if entry.verb and not inflected and _as_verb(text, start, end):
            replacement = entry.verb
        verbal = entry.verb is not None or (inflected and replacement.endswith(("ed", "ing")))
        on_person = verbal and _on_person(text, end)
        replacement = _match_case(replacement, original)
        sentence = context.sentence_of(match.start)
        return _Found(match, start, end, original, replacement, rules, sentence, on_person)

    def _decide(self, found: list[_Found], context: Context) -> None:
        """Confirm unambiguous matches; confirm ambiguous ones whose context supports them,
        repeating until nothing changes (a confirmed code can support another one)."""
        pending: list[_Found] = []
        for f in found:
            entry = f.match.entry
            # An unambiguous code may still list a few vetoes ("kms" after driving is kilometres).
            veto = context.find_cue(entry.against, context.window(f.sentence))
            if not entry.ambiguous and not veto:
                f.confirmed = True
            elif disguise := sorted(f.rules & _DISGUISES):
                f.confirmed, f.reason = True, f"written in disguise ({', '.join(disguise)})"
            elif veto:
                f.reason = f"context points to the ordinary meaning ('{veto}')"
            elif f.on_person:
                f.confirmed, f.reason = True, f"used as a verb on a person ('{f.replacement}')"
            else:
                f.reason = "no nearby context supports the coded reading"
                pending.append(f)
        progress = True
        while progress:
            progress = False
            for f in pending:
                if f.confirmed:
                    continue
                reason = self._support(f, found, context)
                if reason:
                    f.confirmed, f.reason, progress = True, reason, True

    @staticmethod
    def _support(f: _Found, found: list[_Found], context: Context) -> str | None:
        """Why the context licenses ``f``'s coded reading: one of its cues nearby, or another
        confirmed code (or disguised term) of its category nearby. None if nothing does."""
        window = context.window(f.sentence)
        near = [g for g in found if g.confirmed and g is not f and g.sentence in window]
        extra = " ".join(g.replacement.lower() for g in near)
        cue = context.find_cue(f.match.entry.cues, window, extra)
        if cue:
            return f"context cue '{cue}'"
        category = f.match.entry.category
        for g in near:
            if _changes(g) and g.match.entry.category == category:
                return f"'{g.original}' nearby is also {category}"
        return None

    @staticmethod
    def _span(f: _Found) -> Span:
        rule = "+".join(r for r in RULES if r in f.rules)
        entry = f.match.entry
        return Span(f.start, f.end, f.original, f.replacement, entry.category, rule, entry.id)


@lru_cache(maxsize=1)
def default_normalizer() -> Normalizer:
    """The normalizer over the built-in lexicon, built once."""
    return Normalizer()


def normalize(text: str) -> Normalization:
    """Normalize ``text`` with the built-in lexicon."""
    return default_normalizer().normalize(text)


def _in_emoji_sequence(text: str, f: _Found) -> bool:
    """Whether an emoji match is one part of a joined emoji (🏳️‍🌈 is a flag, not 🌈)."""
    if any(c.isalnum() for c in f.match.variant):
        return False
    before = f.start > 0 and text[f.start - 1] == _ZWJ and builds_emoji(text, f.start - 1)
    return before or (text[f.end : f.end + 1] == _ZWJ and builds_emoji(text, f.end))


def _word_spans(text: str, folded: Folded, readings: list[WordReading]) -> list[Span]:
    """Spans spelling out ordinary words written in disguise ("k!ll mys3lf" -> "myself",
    "m!nors dm me" -> "minors"), except where a disguise is the point: a password or a name
    given as such ("password: p@ssw0rd", "my gamertag is n00b_slayer") and identifiers
    ("getUs3r"). Category "none": such a word names no harm itself."""
    spans: list[Span] = []
    for r in readings:
        start, end = folded.start(r.start), folded.end(r.end)
        original = text[start:end]
        if _camel_case(original) or _CREDENTIAL.search(text, max(start - 40, 0), start):
            continue
        rules = r.rules | rules_of(original)
        rule = "+".join(x for x in RULES if x in rules)
        spans.append(Span(start, end, original, _match_case(r.word, original), "none", rule, None))
    return spans


# A password or a name introduced as such ("password tip: p4ssw0rd"): its spelling is the
# thing itself, not a disguise.
_CREDENTIAL = re.compile(
    r"\b(?:password|passwd|passcode|pass|pw|pwd|pin|username|user name|login|gamertag|"
    r"gamer tag|tag|ign|handle|nickname|nick|wifi)(?: \w+)?\s*(?:is|was|:|=|-)?\s*[\"'`]?$",
    re.IGNORECASE,
)


def _camel_case(original: str) -> bool:
    """Whether a capital follows a small letter, as in identifiers ("myVar")."""
    letters = [c for c in original if c.isalpha()]
    return any(a.islower() and b.isupper() for a, b in pairwise(letters))


def _changes(f: _Found) -> bool:
    """Whether a match is evasion that changes the text: a code always, a plain term only when
    it was disguised."""
    return f.match.entry.kind == "code" or bool(f.rules)


# People as a verb's object: a code with a verb reading aimed at one of them is meant as that
# verb ("i'll grape u", "graping girls for years"), whatever else the sentence holds.
_PERSONS = frozenset({
    "him", "her", "them", "you", "u", "ya", "yall", "me", "us", "everyone", "everybody",
    "somebody", "someone", "anyone", "anybody", "whoever", "people", "girls", "boys", "kids",
    "children", "women", "men", "students", "yourself", "urself", "myself", "himself",
    "herself", "themselves", "ourselves",
})  # fmt: skip
# Words that start a verb's object: after one of them, a code with a verb reading is a verb
# ("pew pew the whole school", "pew pew them").
_OBJECT_STARTS = _PERSONS | {
    "the", "a", "an", "my", "your", "ur", "his", "their", "our", "this", "that", "these",
    "those", "every", "each", "all", "up",
}  # fmt: skip
_NEXT_WORD = re.compile(r"\s+([^\W\d_]+)")


def _on_person(text: str, end: int) -> bool:
    """Whether a person is the object of the word ending at ``text[end]`` (see ``_PERSONS``)."""
    following = _NEXT_WORD.match(text, end)
    return following is not None and following.group(1).lower() in _PERSONS


# Words after which a code with a verb reading is a verb ("wanna 🪦" is "wanna die").
_VERB_MARKERS = frozenset({
    "to", "wanna", "gonna", "gotta", "finna", "imma", "ima", "will", "ll", "might", "should",
    "would", "could", "can", "must", "lets", "let's", "i'll", "ill", "u", "you", "go", "bouta",
    "boutta", "tryna",
})  # fmt: skip
_LAST_WORD = re.compile(r"([^\W\d_]+(?:'[^\W\d_]+)?)\s+$")


def _as_verb(text: str, start: int, end: int) -> bool:
    """Whether the code at ``text[start:end]`` stands as a verb: an object follows it (see
    ``_OBJECT_STARTS``) or an infinitive or modal marker comes right before it."""
    following = _NEXT_WORD.match(text, end)
    if following is not None and following.group(1).lower() in _OBJECT_STARTS:
        return True
    before = _LAST_WORD.search(text, max(start - 20, 0), start)
    return before is not None and before.group(1).lower() in _VERB_MARKERS


def _match_case(replacement: str, original: str) -> str:
    """Carry the original's casing (UPPER, Capitalized) over to the replacement."""
    letters = [c for c in original if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return replacement.upper()
    if letters and letters[0].isupper() and not any(c.isupper() for c in letters[1:]):
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _cleanup(text: str, spans: list[Span]) -> list[Span]:
    """Spans that remove invisible and look-alike characters outside the matched spans."""
    result: list[Span] = []
    position = 0
    for gap_start, gap_end in [*((s.start, s.end) for s in spans), (len(text), len(text))]:
        for piece in _NON_SPACE.finditer(text, position, gap_start):
            cleaned, rules = clean(piece.group())
            if rules:
                rule = "+".join(r for r in RULES if r in rules)
                result.append(
                    Span(piece.start(), piece.end(), piece.group(), cleaned, "none", rule, None)
                )
        position = gap_end
    return result


def _apply(text: str, edits: list[tuple[int, int, str, bool]]) -> str:
    """The text with each (start, end, replacement, is a decoded word) edit made, in order; a
    decoded word never fuses with its neighbours."""
    pieces: list[tuple[str, bool]] = []  # (text, is a decoded word)
    position = 0
    for start, end, replacement, decoded in edits:
        pieces += [(text[position:start], False), (replacement, decoded)]
        position = end
    pieces.append((text[position:], False))
    out: list[str] = []
    last, last_decoded = "", False
    for piece, decoded in pieces:
        if not piece:
            continue
        fuses_left = decoded and piece[0].isalnum() and is_wordish(last)
        fuses_right = last_decoded and last.isalnum() and is_wordish(piece[0])
        if fuses_left or fuses_right:
            out.append(" ")
        out.append(piece)
        last, last_decoded = piece[-1], decoded
    return "".join(out)
