"""Context for ambiguous codes: which sentences surround a match and which cues they hold.

An ambiguous code ("corn", "accountant", "pdf file") is read as a code only when its own
sentence or a neighbouring one supports that reading: one of its cues ("subscribers"), or
another confirmed code or term of the same category. Its ``against`` cues ("grilled") veto it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from functools import lru_cache

_SENTENCE_END = re.compile(r"[.!?]+(?=\s)|\n")
_WORD = re.compile(r"[^\W_]+")
_WORDLIKE_CUE = re.compile(r"[^\W_]+(?: [^\W_]+)*\*?")


class Context:
    """Sentences of a folded text, searchable for cues."""

    def __init__(self, text: str, readings: Iterable[tuple[int, str]] = ()) -> None:
        """Sentences of folded ``text``; ``readings`` are words written in disguise, each at
        its folded offset ("st*pid" read as "stupid"), which count as cues like plain ones."""
        self._ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        starts = [0, *self._ends]
        ends = [*self._ends, len(text)]
        self._raw = [text[s:e] for s, e in zip(starts, ends, strict=True)]
        words = [_WORD.findall(raw) for raw in self._raw]
        # A disguised word is a cue whether or not it is decoded: the next normalization sees
        # it spelled out, and must decide every ambiguous code the same way (idempotence).
        for position, word in readings:
            words[self.sentence_of(position)].append(word)
        self._words = [" " + " ".join(w) + " " for w in words]

    def sentence_of(self, position: int) -> int:
        """Index of the sentence holding folded offset ``position``."""
        return bisect_right(self._ends, position)

    def window(self, sentence: int) -> range:
        """The sentence and its neighbours."""
        return range(max(sentence - 1, 0), min(sentence + 2, len(self._raw)))

    def find_cue(self, cues: tuple[str, ...], window: range, extra: str = "") -> str | None:
        """The first cue present in the window (or in ``extra`` words), if any.

        A cue is a word or phrase matched on whole words, its last word also in its regular
        inflections ("send" finds "sends", "sending"; "trade" finds "traded", "trading"); a
        trailing ``*`` matches any word starting with it; a cue with symbols ("18+", an emoji)
        is matched as a substring.
        """
        words = "".join(self._words[i] for i in window) + f" {extra} "
        raw = "".join(self._raw[i] for i in window)
        for cue, needle, in_raw in _needles(cues):
            if needle in (raw if in_raw else words):
                return cue
        return None


@lru_cache(maxsize=4096)  # one per entry; bounded across policy reloads
def _needles(cues: tuple[str, ...]) -> tuple[tuple[str, str, bool], ...]:
    """For each cue, in order: the cue, the string to look for and whether to look in the raw
    text (a cue with symbols) rather than in the space-joined words. Worked out once per cue
    list: entries with shared contexts carry a hundred cues, asked about on every match."""
    needles = []
    for cue in cues:
        if not _WORDLIKE_CUE.fullmatch(cue):
            needles.append((cue, cue, True))
        elif cue.endswith("*"):
            needles.append((cue, f" {cue[:-1]}", False))
        else:
            needles += [(cue, f" {form} ", False) for form in _inflections(cue)]
    return tuple(needles)


def _inflections(phrase: str) -> list[str]:
    """``phrase`` and its regular inflections (of its last word): -s, -es, -ed, -ing, with a
    final silent e dropped before -ed and -ing. Short words stay as they are ("tw", "oz")."""
    head, _, last = phrase.rpartition(" ")
    if len(last) < 3 or not last.isalpha():
        return [phrase]
    stem = last[:-1] if last.endswith("e") else last
    forms = dict.fromkeys([last, f"{last}s", f"{last}es", f"{stem}ed", f"{stem}ing"])
    return [f"{head} {form}" if head else form for form in forms]
