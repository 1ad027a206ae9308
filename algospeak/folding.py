"""Character-level folding: the views of a text that the matcher and the cleaner work on.

``fold`` produces a lowercase view for *matching* in which invisible characters, combining
marks, compatibility forms (fullwidth, math alphanumerics, circled letters), look-alike letters
from other scripts and diacritics are gone, runs of whitespace are one space (or one newline),
and every folded character remembers the index of the original character it came from.

``clean`` produces what the *output* keeps of a piece of text that no lexicon entry matched:
it removes only what is certainly obfuscation (invisible characters, overlay marks,
compatibility letters, and look-alike letters inside a word that is otherwise Latin).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby

from confusable_homoglyphs import confusables

NO_RULES: frozenset[str] = frozenset()
_INVISIBLE = frozenset({"invisible"})
_COMBINING = frozenset({"combining"})
_COMPATIBILITY = frozenset({"compatibility"})
_HOMOGLYPH = frozenset({"homoglyph"})

# Letters that render as nothing but are not format characters (category Cf).
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Combining marks used to strike through or underline letters ("s̶e̶x̶").
_OVERLAYS = frozenset(chr(c) for c in (*range(0x0332, 0x0339), 0x0305, 0x033F, 0x20D2, 0x20E5))
# Emoji presentation selectors and skin tones: styling, not obfuscation.
_PRESENTATION = frozenset(["\ufe0e", "\ufe0f", *(chr(c) for c in range(0x1F3FB, 0x1F400))])
_NEWLINES = frozenset("\n\u2028\u2029\x85")
_ZWJ = "\u200d"
_TAGS = range(0xE0020, 0xE0080)
_BLACK_FLAG = "\U0001f3f4"
# An ASCII text needs the slow path only for whitespace that must be collapsed or mapped.
_ASCII_SLOW = re.compile(r"\s\s|[\t\r\f\v]")


@dataclass(frozen=True, slots=True)
class Folded:
    """The matching view of a text; ``origin[i]`` is the original index of folded char i."""

    text: str
    origin: tuple[int, ...] | None  # None: identity mapping (the ASCII fast path)

    def start(self, i: int) -> int:
        """Original index where folded position ``i`` starts."""
        return i if self.origin is None else self.origin[i]

    def end(self, i: int) -> int:
        """Original index just after the character that folded position ``i - 1`` came from."""
        return i if self.origin is None else self.origin[i - 1] + 1


def fold(text: str) -> Folded:
    """The matching view of ``text`` with its map back to original offsets."""
    if text.isascii() and not _ASCII_SLOW.search(text):
        return Folded(text.lower(), None)
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded, _ = fold_char(char)
        if folded in (" ", "\n") and chars and chars[-1] in (" ", "\n"):
            if folded == "\n":
                chars[-1] = "\n"
            continue
        for piece in folded:
            chars.append(piece)
            origin.append(index)
    return Folded("".join(chars), tuple(origin))


@lru_cache(maxsize=16384)
def fold_char(char: str) -> tuple[str, frozenset[str]]:
    """Folded form of one character (empty, one or several characters) and the
    obfuscation rules that folding it undid."""
    if char.isascii():
        return (" " if char in " \t\r\f\v" else char.lower()), NO_RULES
    category = unicodedata.category(char)
    if category == "Cf" or char in _FILLERS:
        return "", _INVISIBLE
    if char in _PRESENTATION:
        return "", NO_RULES
    if category in ("Mn", "Me"):
        return "", _COMBINING
    if char.isspace():
        return ("\n" if char in _NEWLINES else " "), NO_RULES
    rules: set[str] = set()
    compatible = unicodedata.normalize("NFKC", char)
    if compatible != char:
        rules.add("compatibility")
    pieces: list[str] = []
    for piece in compatible.lower():
        if piece.isascii():
            pieces.append(piece)
        elif unicodedata.category(piece) in ("Mn", "Me"):
            continue
        elif piece in homoglyphs():
            pieces.append(homoglyphs()[piece].lower())
            rules.add("homoglyph")
        elif (base := _ascii_base(piece)) is not None:
            pieces.append(base)
            rules.add("diacritics")
        else:
            pieces.append(piece)
    return "".join(pieces), frozenset(rules)


def rules_of(text: str) -> frozenset[str]:
    """The character-level obfuscations present in ``text`` (a slice of an original)."""
    if text.isascii():
        return NO_RULES
    found: set[str] = set()
    for char in text:
        found |= fold_char(char)[1]
    return frozenset(found)


def clean(text: str) -> tuple[str, frozenset[str]]:
    """The output form of a piece of text no lexicon entry matched, and what was undone.

    Invisible characters go, except the joiners and tags that build emoji sequences;
    overlay marks go; compatibility letters become ASCII; look-alike letters become Latin
    only inside a word that also holds Latin letters (so words in other scripts stay intact).
    """
    if text.isascii():
        return text, NO_RULES
    out: list[str] = []
    rules: set[str] = set()
    for in_word, group in groupby(enumerate(text), key=lambda item: _in_word(item[1])):
        chars = list(group)
        latin = in_word and any((_compatibility_letter(c) or c).isascii() for _, c in chars)
        for index, char in chars:
            if char.isascii():
                out.append(char)
                continue
            category = unicodedata.category(char)
            if category == "Cf" or char in _FILLERS:
                if builds_emoji(text, index):
                    out.append(char)
                else:
                    rules.add("invisible")
            elif char in _OVERLAYS:
                rules.add("combining")
            elif (compatible := _compatibility_letter(char)) is not None:
                out.append(compatible)
                rules.add("compatibility")
            elif latin and char in homoglyphs():
                out.append(homoglyphs()[char])
                rules.add("homoglyph")
            else:
                out.append(char)
    return "".join(out), frozenset(rules)


def _in_word(char: str) -> bool:
    """Letters, and the invisible characters and marks that may hide inside a word."""
    return char.isalpha() or char in _FILLERS or unicodedata.category(char) in ("Cf", "Mn", "Me")


@lru_cache(maxsize=1)
def homoglyphs() -> dict[str, str]:
    """Non-ASCII letters that look like an ASCII letter, mapped to it (Unicode's
    confusables data, as packaged by ``confusable_homoglyphs``, and the small capitals)."""
    table: dict[str, str] = {}
    for char, entries in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii() or not char.isalpha():
            continue
        targets = [e["c"] for e in entries if len(e["c"]) == 1 and e["c"].isascii()]
        letters = [t for t in targets if t.isalpha()]
        if letters:
            table[char] = letters[0]
    # Small capitals ("ᴄᴘ", "ꜱᴇx"), which text generators offer as a "font".
    for block in (range(0x0250, 0x02B0), range(0x1D00, 0x1D80), range(0xA720, 0xA800)):
        for code in block:
            name = unicodedata.name(chr(code), "")
            letter = name.removeprefix("LATIN LETTER SMALL CAPITAL ")
            if letter != name and len(letter) == 1 and letter.isalpha():
                table.setdefault(chr(code), letter.lower())
    return table


@lru_cache(maxsize=4096)
def _ascii_base(char: str) -> str | None:
    """``é`` -> ``e``: the ASCII letter under a letter with diacritics, if there is one."""
    base = unicodedata.normalize("NFD", char)[0]
    return base if base != char and base.isascii() and base.isalpha() else None


@lru_cache(maxsize=4096)
def _compatibility_letter(char: str) -> str | None:
    """``ｓ``/``𝐬``/``ⓢ`` -> ``s``: compatibility forms of letters and digits, as ASCII."""
    code = ord(char)
    enclosed = 0x2460 <= code <= 0x24FF or 0x1F130 <= code <= 0x1F189  # circled/squared letters
    if not (enclosed or unicodedata.category(char).startswith("L")):
        return None
    compatible = unicodedata.normalize("NFKC", char)
    if compatible != char and compatible.isascii() and compatible.isalnum():
        return compatible
    return None


def builds_emoji(text: str, index: int) -> bool:
    """Whether the format character at ``index`` is part of an emoji sequence."""
    char = text[index]
    if ord(char) in _TAGS:
        before = text[index - 1] if index else ""
        return before == _BLACK_FLAG or (before != "" and ord(before) in _TAGS)
    if char != _ZWJ or index == 0 or index + 1 >= len(text):
        return False
    return _is_pictograph(text[index - 1]) and _is_pictograph(text[index + 1])


def _is_pictograph(char: str) -> bool:
    if char in ("\ufe0f", "\ufe0e"):
        return True
    return unicodedata.category(char) in ("So", "Sk") or 0x1F000 <= ord(char) <= 0x1FAFF
