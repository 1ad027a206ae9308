"""Every disguise the dataset builder writes, the normalizer reads back.

For every code variant of the lexicon (what the builder fills a ``{code}`` slot with) and every
obfuscation the builder applies to it, the disguised code inside a sentence normalizes to the
variant's meaning, with one span over exactly the disguise and nothing of the disguise left.
Ambiguous codes are read as codes only where context supports it: in a neutral sentence they
are decoded (a disguise is itself evidence) or reported as candidates, and in a sentence with
one of their cues they are decoded.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from algospeak import normalize
from algospeak.lexicon import Entry, load_lexicon
from training.dataset import OBFUSCATION_NAMES, disguise

SLOT = "{code}"
# Neutral sentences: the code mid-sentence, alone, at the start, before a full stop.
FRAMES = ("i think {code} is wild", "{code}", "{code} lol fr", "they said {code}. wow")
# Every (entry, variant) the builder may put in a code slot: all variants of every code.
PAIRS = [(entry, variant) for entry in load_lexicon().codes for variant in entry.variants]


def _supporting_frame(entry: Entry) -> str:
    """A sentence whose context licenses ``entry``'s coded reading: one of its cues nearby.
    The cue is one that normalization leaves alone, so it cannot change the expected text."""
    for cue in entry.cues:
        word = cue.rstrip("*")
        plain = normalize(word)
        if not plain.changed and not plain.candidates:
            return f"i think {SLOT} is wild, {word}"
    raise AssertionError(f"{entry.id}: no cue survives normalization")


def _problem(entry: Entry, variant: str, name: str, frame: str) -> str | None:
    """What is wrong with reading ``variant`` disguised by ``name`` in ``frame``; None if it
    reads back (or, for an ambiguous code in a neutral frame, is left as a candidate)."""
    disguised = disguise(variant, name)
    assert disguised is not None
    text = frame.replace(SLOT, disguised)
    start = frame.index(SLOT)
    end = start + len(disguised)
    result = normalize(text)
    expected = frame.replace(SLOT, entry.variants[variant])
    decoded = result.normalized.lower() == expected.lower() and any(
        s.entry == entry.id and (s.start, s.end) == (start, end) for s in result.spans
    )
    if decoded:
        return None
    # Left in place, untouched, and reported over exactly the disguise.
    candidate = result.normalized == text and any(
        c.entry == entry.id and (c.start, c.end) == (start, end) for c in result.candidates
    )
    if entry.ambiguous and frame in FRAMES and candidate:
        return None
    return f"{text!r} -> {result.normalized!r} (candidates {[c.entry for c in result.candidates]})"


def _cases(name: str) -> list[tuple[Entry, str, str]]:
    """Every (entry, variant, frame) that the builder's ``name`` disguise applies to."""
    cases = []
    for entry, variant in PAIRS:
        if disguise(variant, name) is None:
            continue
        frames = [*FRAMES, _supporting_frame(entry)] if entry.ambiguous else FRAMES
        cases += [(entry, variant, frame) for frame in frames]
    return cases


@pytest.mark.parametrize("name", OBFUSCATION_NAMES)
def test_every_disguised_code_reads_back(name: str) -> None:
    # The cross product is finite and the normalizer fast: check all of it.
    cases = _cases(name)
    assert cases
    problems = [
        p for entry, variant, frame in cases if (p := _problem(entry, variant, name, frame))
    ]
    assert not problems, f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:40])


@settings(max_examples=300, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    name=st.sampled_from(OBFUSCATION_NAMES),
    frame=st.sampled_from(FRAMES),
    supported=st.booleans(),
)
def test_a_disguised_code_reads_back(
    pair: tuple[Entry, str], name: str, frame: str, supported: bool
) -> None:
    entry, variant = pair
    assume(disguise(variant, name) is not None)  # the builder never writes it otherwise
    if supported and entry.ambiguous:
        frame = _supporting_frame(entry)
    assert _problem(entry, variant, name, frame) is None
