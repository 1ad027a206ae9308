"""The disguises the builder puts on a code: small pure functions, and the choice among them.

Each takes a code variant and returns it disguised; it returns the input unchanged when the
disguise does not apply (emoji, digits, no suitable letter), so callers can detect that.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import lru_cache

from algospeak.folding import homoglyphs
from algospeak.matcher import LEET

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
    """Letters replaced by look-alike digits/symbols: ``unalive`` -> ``un4l1v3``."""
    return code.translate(_leet_table())


def spacing(code: str) -> str:
    """Letters separated by spaces, words by three: ``seggs`` -> ``s e g g s``."""
    if not any(c.isalpha() for c in code):
        return code
    return "   ".join(" ".join(word) for word in code.split())


def masking(code: str) -> str:
    """One inner vowel of the longest word masked with ``*``: ``seggs`` -> ``s*ggs``."""
    words = code.split(" ")
    index = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[index]
    if len(word) < 3 or not word.isalpha():
        return code
    inner = [i for i in range(1, len(word) - 1) if word[i] in _VOWELS]
    at = inner[0] if inner else len(word) // 2
    words[index] = word[:at] + "*" + word[at + 1 :]
    return " ".join(words)


def homoglyph(code: str) -> str:
    """Latin letters swapped for Cyrillic look-alikes: ``seggs`` -> ``sеggs``."""
    return code.translate(_homoglyph_table())


def invisible(code: str) -> str:
    """Zero-width spaces between the letters of each word."""
    if not any(c.isalpha() for c in code):
        return code
    return " ".join("\u200b".join(word) for word in code.split(" "))


def elongation(code: str) -> str:
    """The last vowel stretched: ``unalive`` -> ``unaliiiiive``."""
    at = max((i for i, c in enumerate(code) if c in _VOWELS), default=-1)
    if at < 0:
        return code
    return code[: at + 1] + code[at] * 4 + code[at + 1 :]


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


def obfuscate(code: str, start: int) -> tuple[str, str]:
    """``(disguised code, obfuscation name)``: the first obfuscation, cycling from ``start``,
    that changes ``code`` (only "none" applies to emoji and numbers)."""
    if sum(c.isalpha() for c in code) < 2:
        return code, "none"
    for step in range(len(OBFUSCATION_NAMES)):
        name = OBFUSCATION_NAMES[(start + step) % len(OBFUSCATION_NAMES)]
        disguised = OBFUSCATIONS[name](code)
        if name == "none" or disguised != code:
            return disguised, name
    return code, "none"
