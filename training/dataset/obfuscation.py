"""The disguises the builder puts on a code: small pure functions, and the choice among them.

Each takes a code variant and returns it disguised; it returns the input unchanged when the
disguise does not apply (emoji, digits, no suitable letter), so callers can detect that. A
disguise also does not apply where the normalizer could not read it back as that code: the
post would then teach the model a code that the served normalizer never shows it, or one it
shows as another code (see tests/test_obfuscation_roundtrip.py).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import lru_cache

from algospeak.folding import homoglyphs
from algospeak.lexicon import load_lexicon
from algospeak.matcher import LEET, MIN_LETTERS, MIN_SPACED, TOKEN, Matcher

# The builder's disguises are drawn from the normalizer's own tables, so every symbol and
# look-alike it writes is one the normalizer knows how to read. Which of them it uses is the
# builder's choice, kept as it was when the first datasets were built (other choices would
# change every dataset): these leet symbols, each standing for its first reading in LEET ...
_LEET_SYMBOLS = "4310$7"
# ... and, for these letters, the first Cyrillic small letter that homoglyphs() reads as them.
_HOMOGLYPH_LETTERS = "aceiopxy"
_HOMOGLYPH_SCRIPT = "CYRILLIC SMALL LETTER "
_VOWELS = "aeiouy"


@lru_cache(maxsize=1)
def _matcher() -> Matcher:
    return Matcher(load_lexicon())


def _unambiguous(word: str) -> bool:
    """Whether the normalizer reads the disguised ``word`` one way only: a mask or stretch
    that several lexicon spellings fit ("r*pe": rope or rape; "speeeeed": speed or sped)
    cannot be told apart by any reader, so the builder does not write it."""
    return len(_matcher().readings(word)) == 1


@lru_cache(maxsize=1)
def _leet_table() -> dict[int, str]:
    return str.maketrans({LEET[symbol][0]: symbol for symbol in _LEET_SYMBOLS})


@lru_cache(maxsize=1)
def _homoglyph_table() -> dict[int, str]:
    table: dict[str, str] = {}
    for letter in _HOMOGLYPH_LETTERS:
        lookalikes = sorted(
            char
            for char, target in homoglyphs().items()
            if target == letter and unicodedata.name(char, "").startswith(_HOMOGLYPH_SCRIPT)
        )
        table[letter] = lookalikes[0]
    return str.maketrans(table)


def leetspeak(code: str) -> str:
    """Letters replaced by look-alike digits/symbols: ``unalive`` -> ``un4l1v3``; unchanged
    if a token it changes would keep fewer than MIN_LETTERS letters ("ana" -> "4n4", like
    "m14" or "3d", reads as a number, not as a word)."""
    disguised = code.translate(_leet_table())
    for plain, written in zip(TOKEN.findall(code), TOKEN.findall(disguised), strict=True):
        if written != plain and sum(c.isalpha() for c in written) < MIN_LETTERS:
            return code
    return disguised


def spacing(code: str) -> str:
    """Letters separated by spaces, words by three: ``seggs`` -> ``s e g g s``; unchanged
    for codes of fewer than MIN_SPACED letters ("s h" is as likely initials) and for codes
    with words that are not one token starting and ending with a letter ("s / h", "ctb'd",
    "(((them)))", "14 words"): spaced out, their punctuation and digits read as separate words."""
    words = code.split()
    if sum(c.isalnum() for c in code) < MIN_SPACED or not all(
        TOKEN.fullmatch(word) and word[0].isalpha() and word[-1].isalpha() for word in words
    ):
        return code
    return "   ".join(" ".join(word) for word in code.split())


def masking(code: str) -> str:
    """One inner vowel of the longest word masked with ``*``: ``seggs`` -> ``s*ggs``;
    unchanged if the masked word has several readings (see ``_unambiguous``)."""
    words = code.split(" ")
    index = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[index]
    if len(word) < 3 or not word.isalpha():
        return code
    inner = [i for i in range(1, len(word) - 1) if word[i] in _VOWELS]
    at = inner[0] if inner else len(word) // 2
    words[index] = word[:at] + "*" + word[at + 1 :]
    return " ".join(words) if _unambiguous(words[index]) else code


def homoglyph(code: str) -> str:
    """Latin letters swapped for Cyrillic look-alikes: ``seggs`` -> ``sеggs``."""
    return code.translate(_homoglyph_table())


def invisible(code: str) -> str:
    """Zero-width spaces between the letters of each word."""
    if not any(c.isalpha() for c in code):
        return code
    return " ".join("\u200b".join(word) for word in code.split(" "))


def elongation(code: str) -> str:
    """The last vowel stretched: ``unalive`` -> ``unaliiiiive``; unchanged if the stretched
    word has several readings (see ``_unambiguous``)."""
    at = max((i for i, c in enumerate(code) if c in _VOWELS), default=-1)
    if at < 0:
        return code
    stretched = code[: at + 1] + code[at] * 4 + code[at + 1 :]
    word_start = code.rfind(" ", 0, at) + 1
    word_end = stretched.find(" ", at)
    word = stretched[word_start : None if word_end < 0 else word_end]
    return stretched if _unambiguous(word) else code


def alternating_case(code: str) -> str:
    """Letters in alternating case: ``unalive`` -> ``UnAlIvE``."""
    out, upper = [], True
    for char in code:
        if char.isalpha():
            out.append(char.upper() if upper else char.lower())
            upper = not upper
        else:
            out.append(char)
    return "".join(out)


OBFUSCATIONS: dict[str, Callable[[str], str]] = {
    "none": lambda code: code,
    "leetspeak": leetspeak,
    "spacing": spacing,
    "masking": masking,
    "homoglyph": homoglyph,
    "invisible": invisible,
    "elongation": elongation,
    "case": alternating_case,
}
OBFUSCATION_NAMES: tuple[str, ...] = tuple(OBFUSCATIONS)


def disguise(code: str, name: str) -> str | None:
    """``code`` in the obfuscation ``name``, or None when the builder never writes it so: the
    disguise does not apply (it would leave ``code`` unchanged), or ``code`` has fewer than two
    letters (emoji, numbers), which only "none" applies to."""
    if name == "none":
        return code
    if sum(c.isalpha() for c in code) < 2:
        return None
    disguised = OBFUSCATIONS[name](code)
    return None if disguised == code else disguised


def obfuscate(code: str, start: int) -> tuple[str, str]:
    """``(disguised code, obfuscation name)``: the first obfuscation, cycling from ``start``,
    that applies to ``code`` (see ``disguise``; "none" always applies)."""
    for step in range(len(OBFUSCATION_NAMES)):
        name = OBFUSCATION_NAMES[(start + step) % len(OBFUSCATION_NAMES)]
        disguised = disguise(code, name)
        if disguised is not None:
            return disguised, name
    return code, "none"
