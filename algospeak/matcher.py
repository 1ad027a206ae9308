"""Finding lexicon entries in folded text, spelled plainly or disguised.

Plain spellings (words, phrases, emoji, symbol spellings like ``le$bean``) are found in one
pass of an Aho-Corasick automaton (``pyahocorasick``) over the folded text. Disguised ones are
found per token: letters spaced out (``s e x``), joined or hyphenated forms (``sewerslide``,
``un-alive``), leetspeak and masking (``k!ll``, ``p*rn``) through a trie walk that tries each
symbol's possible letters, and elongation (``unaliiive``). Only tokens that show one of these
features take the slow path, so ordinary text costs one automaton pass and a token scan.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise, product
from string import ascii_lowercase
from typing import TypeVar

import ahocorasick

from algospeak.folding import fold
from algospeak.lexicon import Entry, Lexicon

logger = logging.getLogger(__name__)

# Symbols read as letters; a digit or symbol may stand for more than one letter.
LEET: dict[str, str] = {
    "0": "o",
    "1": "il",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "il",
    "|": "li",
    "+": "t",
    "€": "e",
    "¡": "i",
}
MASK = "*"
# One of these between two tokens joins them into one word ("un-alive", "s/h", "S.E.X").
JOINERS = frozenset("-_./·")
_SYMBOLS = "".join(k for k in LEET if not k.isdigit()) + MASK
_PUNCTUATION = "!*|+¡"  # leet or mask inside a word, punctuation at its edges
# A token: what may be one disguised word (letters, digits, leet and mask symbols).
TOKEN = re.compile(rf"(?:[^\W_]|[{re.escape(_SYMBOLS)}])+")
# A token holding symbols reads as a word only with this many letters: with fewer it is more
# often a number or a model name ("m14", "c47", "3d") than a disguise.
MIN_LETTERS = 2
# A spaced-out ordinary word next to a code has at least this many letters ("y o u" is too
# short to tell from initials).
MIN_SPACED_WORD = 4
# Spaced-out letters read as a word only from this many on: "s h" or "e d" are too often
# initials or stray letters.
MIN_SPACED = 3
_PROTECTED = re.compile(
    r"(?:https?://|www\.)\S+"  # URLs
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b"  # e-mail addresses
    r"|(?<![\w@])@\w+"  # @handles
    r"|\b[\w-]+\.(?:com|org|net|io|co|gov|edu|dev|app|ly|me|tv|gg)\b\S*"  # bare domains
)
_MAY_PROTECT = re.compile(r"[.@]|://").search  # cheap test before the protected-region scan
_ELONGATED = re.compile(r"([^\W\d_])\1\1")
_REPEATS = re.compile(r"(.)\1+")
_RUN = re.compile(r"(.)\1*")
_ALNUM = re.compile(r"[^\W_]+")
# Ordinary words in disguise ("mys3lf", "st*pid") are read against this many of the most
# frequent English words (wordfreq). 50k keeps "noob" and "tranny" and still loads in a
# few tens of milliseconds; a longer list adds rare words that make more tokens ambiguous.
COMMON_WORDS_TOP_N = 50_000
# Each mask may be any of 26 letters: more than two masks is too many readings to be one word.
_MAX_MASKS = 2
_LEET_OR_MASK_CLASS = f"[{re.escape(''.join(LEET) + MASK)}]"
# A letter touching a leet or mask symbol: every disguised word has one, few other texts do.
_LETTER_BY_SYMBOL = re.compile(
    rf"[^\W\d_]{_LEET_OR_MASK_CLASS}|{_LEET_OR_MASK_CLASS}[^\W\d_]"
).search
# What may touch a disguised ordinary word: space, the text's edges, sentence punctuation and
# quotes. Anything else ("#", "_", "/", "=", "(", "-", "@", ":") marks a hashtag, code, a path,
# a compound or a time, which are left as they are.
_WORD_NEIGHBOURS = frozenset(" \t\n,;!?\"'“”‘’*¡…—")
_END = ""  # trie key of a complete spelling
_MIN_JOINED = 4  # shorter joined forms ("sh" from "s/h") need visible joiners to count
# A run of spaced letters or joined tokens is tried as one word up to the longest spelling.


@dataclass(frozen=True, slots=True)
class Match:
    """An occurrence of a lexicon variant in folded text (folded offsets)."""

    start: int
    end: int
    entry: Entry
    variant: str
    rules: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Spelling:
    entry: Entry
    variant: str


@dataclass(frozen=True, slots=True)
class _Decoding:
    """A disguised stretch of folded text and the spelling it reads as."""

    start: int
    end: int
    key: str  # a variant's folded spelling, or one word of a multi-word variant
    rules: frozenset[str]


class Matcher:
    """Indexes a lexicon once; ``find`` lists every match in a folded text, overlaps included."""

    def __init__(self, lexicon: Lexicon) -> None:
        self._automaton = ahocorasick.Automaton()
        self._joined: dict[str, str] = {}  # compact form -> key ("sewerslide" -> "sewer slide")
        # Squeezed spelling -> the spellings it may stand for: "segs" -> ["seggs", "segs"].
        self._squeezed: dict[str, list[str]] = {}
        self._trie: dict[str, dict | str] = {}  # letters -> key, walked with leet readings
        self._max_group = 0
        for entry in lexicon.entries:
            for variant in entry.variants:
                key = fold(variant).text
                if key not in self._automaton:
                    self._automaton.add_word(key, (key, _Spelling(entry, variant)))
                compact = _compact(key)
                self._joined.setdefault(compact, key)
                self._max_group = max(self._max_group, len(compact))
                # Each word of a phrase is decoded on its own ("nip n0ps" -> "nip nops"), and
                # so are the letters among symbols ("(((7h3m)))" -> "(((them)))").
                for spelling in sorted({compact, *key.split(), *_ALNUM.findall(key)}):
                    readings = self._squeezed.setdefault(_REPEATS.sub(r"\1", spelling), [])
                    if spelling not in readings:
                        readings.append(spelling)
                    if spelling.isalnum():
                        self._insert(spelling, key if spelling == compact else spelling)
        if len(self._automaton):
            self._automaton.make_automaton()

    def find(self, text: str) -> list[Match]:
        """All matches in folded ``text``, overlapping ones included.

        Disguised words are decoded first ("di3" -> "die", "s e x" -> "sex"); the automaton
        then runs over the decoded text, so a phrase holding a disguised word ("commit di3")
        is found as a whole, carrying the disguise's rules.
        """
        protected = [m.span() for m in _PROTECTED.finditer(text)] if _MAY_PROTECT(text) else []
        tokens = [
            m.span() for m in TOKEN.finditer(text) if not _inside(m.start(), m.end(), protected)
        ]
        decodings = leftmost_longest(
            [d for d in self._decodings(text, tokens) if text[d.start : d.end] != d.key]
        )
        decoded = _Decoded.of(text, [(d.start, d.end, d.key) for d in decodings])
        matches: list[Match] = []
        for start, end, spelling in self._exact(decoded.text):
            if decoded.splits_a_word(start, end):
                continue
            start, end = decoded.origin(start, end)
            # Part of a hyphenated compound ("unalive-ing") is not a word of its own: replacing
            # it would make a new compound ("kill-ing") that reads as another word next time.
            if _inside(start, end, protected) or _attached(text, start, end):
                continue
            rules = frozenset().union(
                *(d.rules for d in decodings if start <= d.start and d.end <= end)
            )
            matches.append(Match(start, end, spelling.entry, spelling.variant, rules))
        return matches

    def word_readings(self, text: str, taken: list[tuple[int, int]]) -> list[WordReading]:
        """Tokens of folded ``text`` that read as exactly one common English word once their
        leet and mask symbols are read as letters, that no lexicon spelling fits and that
        overlap none of the ``taken`` stretches (the matches).

        Shorthand is not decoded: a digit counts as a letter only between two letters, so
        "gr8", "m8", "b4", "4ever", "5am", "ps5" and "covid19" stay as written, and "l8r"
        (8 reads as b: "lbr") is no word. Numbers, prices, times, model numbers, handles,
        URLs, hashtags and code are left alone through the same rules: too few letters, a
        digit at the edge, or a neighbour that is not space or sentence punctuation.
        """
        if not _LETTER_BY_SYMBOL(text):
            return []  # the common case: nothing that could be a disguise
        protected = [m.span() for m in _PROTECTED.finditer(text)] if _MAY_PROTECT(text) else []
        found: list[WordReading] = []
        for token in TOKEN.finditer(text):
            if token.group().isalpha() or token.group().isdigit():
                continue  # most tokens: a plain word or a number
            start, end = _strip_punctuation(text, *token.span())
            letters = text[start:end]
            if not _may_be_disguised_word(letters) or _inside(start, end, protected):
                continue
            if _inside(start, end, taken):
                continue
            if not (_free_side(text, start - 1, -1) and _free_side(text, end, 1)):
                continue
            words = _common_readings(letters)
            if len(words) != 1:
                continue  # no common word, or ambiguous ("s**t": shit, shot, slot...)
            word = words[0]
            # A token some lexicon spelling fits is the lexicon's to decode, or to leave.
            if any(key != word for key in self._walks(letters)):
                continue
            found.append(WordReading(start, end, word, _disguise_rules(letters)))
        return found

    def spaced_readings(self, text: str, taken: list[tuple[int, int]]) -> list[WordReading]:
        """Spaced-out letters of folded ``text`` that spell exactly one common English word
        ("y.o.u.r.s.e.l.f"), read only in a run that also spells a lexicon match ("k.i.l.l
        y.o.u.r.s.e.l.f"; the ``taken`` stretches): on their own, spaced letters are more
        often emphasis ("G O A L") than a disguise. A run that mixes joiners and blanks is one
        word per blank-separated piece; every piece holds at least ``MIN_SPACED_WORD`` letters."""
        if not taken:
            return []  # the common case: no code, so nothing to read around one
        tokens = [m.span() for m in TOKEN.finditer(text)]
        found: list[WordReading] = []
        for run, rule in _groups(text, tokens):
            if rule != "spacing" or not _inside(run[0][0], run[-1][1], taken):
                continue
            for piece in _pieces(text, run):
                start, end = piece[0][0], piece[-1][1]
                letters = "".join(text[s:e] for s, e in piece)
                if len(piece) < MIN_SPACED_WORD or _inside(start, end, taken):
                    continue
                if not all(c.isalpha() or c in LEET or c == MASK for c in letters):
                    continue
                words = _common_readings(letters)
                if len(words) == 1:
                    rules = frozenset({"spacing"}) | _disguise_rules(letters)
                    found.append(WordReading(start, end, words[0], rules))
        return found

    def _insert(self, letters: str, key: str) -> None:
        node = self._trie
        for char in letters:
            node = node.setdefault(char, {})  # type: ignore[assignment]
        node.setdefault(_END, key)

    def _exact(self, text: str) -> list[tuple[int, int, _Spelling]]:
        """Whole-word occurrences of every spelling, by one automaton pass."""
        found: list[tuple[int, int, _Spelling]] = []
        if not len(self._automaton):
            return found
        for last, (key, spelling) in self._automaton.iter(text):
            start, end = last - len(key) + 1, last + 1
            if key[0].isalnum() and _glued(text, start - 1, -1):
                continue
            if key[-1].isalnum() and _glued(text, end, 1):
                continue
            found.append((start, end, spelling))
        return found

    def _decodings(self, text: str, tokens: list[tuple[int, int]]) -> list[_Decoding]:
        found: list[_Decoding] = []
        for group, rule in _groups(text, tokens):
            found.extend(self._group_decodings(text, group, rule))
        for start, end in tokens:
            decoding = self._token_decoding(text, start, end)
            if decoding is not None:
                found.append(decoding)
        return found

    def _group_decodings(
        self, text: str, group: list[tuple[int, int]], rule: str
    ) -> list[_Decoding]:
        """Runs of tokens that read as one word; longest runs first."""
        found: list[_Decoding] = []
        shortest = MIN_SPACED if rule == "spacing" else 2
        for size in range(min(len(group), self._max_group), shortest - 1, -1):
            for first in range(len(group) - size + 1):
                run = group[first : first + size]
                letters = "".join(text[s:e] for s, e in run)
                if rule == "spacing" and not (letters[0].isalpha() and letters[-1].isalpha()):
                    continue  # a spaced-out word starts and ends with letters ("s 3 x")
                resolved = self._resolve(letters)
                if resolved is not None:
                    key, rules = resolved
                    spaced = all(e - s == 1 for s, e in run)  # "S.E.X" is spacing, not joining
                    rules = (rules - {"joined"}) | {"spacing" if spaced else rule}
                    found.append(_Decoding(run[0][0], run[-1][1], key, rules))
        return found

    def _token_decoding(self, text: str, start: int, end: int) -> _Decoding | None:
        # Trailing "!" or "*" is punctuation ("k!ll!!", "p*rn**"); only inner ones are letters.
        token = text[start:end]
        inner = token.strip(_PUNCTUATION)
        if len(inner) < len(token):
            start += token.index(inner)
            end = start + len(inner)
            token = inner
        if token.isalpha() and len(token) < _MIN_JOINED and not _ELONGATED.search(token):
            return None  # a plain short word: the automaton sees it as it is
        resolved = self._resolve(token)
        return None if resolved is None else _Decoding(start, end, *resolved)

    def _resolve(self, letters: str) -> tuple[str, frozenset[str]] | None:
        """The spelling ``letters`` reads as, and how it was disguised."""
        key = self._joined.get(letters)
        if key is not None:
            return key, frozenset({"joined"}) if key != letters else frozenset()
        alphabetic = sum(c.isalpha() for c in letters)
        if alphabetic < MIN_LETTERS:
            return None
        if alphabetic < len(letters) and (key := self._walk(letters)) is not None:
            return key, _disguise_rules(letters)
        if fits := self._stretched(letters):
            # The reading that keeps most of what was written: "speeeed" is speed, not sped.
            return self._key(max(fits, key=len)), frozenset({"elongation"})
        return None

    def readings(self, word: str) -> list[str]:
        """Every spelling a disguised ``word`` may stand for, as the matcher reads it: each
        reading of its leet and mask symbols, and each spelling its stretched letters may
        squeeze to. A word with more than one reading is ambiguous ("r*pe": rape or rope)."""
        letters = fold(word).text
        found = set(self._walks(letters)) | {self._key(s) for s in self._stretched(letters)}
        return sorted(found)

    def _stretched(self, letters: str) -> list[str]:
        """The spellings ``letters`` may be a stretched form of (none unless some letter is
        written three times or more, and none for one letter repeated: "kkkkk" is laughter in
        Portuguese, "zzzz" sleep, not a stretched "kkk")."""
        if not _ELONGATED.search(letters) or len(set(letters)) == 1:
            return []
        readings = self._squeezed.get(_REPEATS.sub(r"\1", letters), ())
        return [spelling for spelling in readings if _stretches(letters, spelling)]

    def _key(self, spelling: str) -> str:
        """The lexicon key a plain spelling stands for: a word of a phrase, or a joined form."""
        return self._walk(spelling) or self._joined.get(spelling, spelling)

    def _walk(self, letters: str) -> str | None:
        """The first complete spelling of ``_walks``, if any."""
        return next(self._walks(letters), None)

    def _walks(self, letters: str) -> Iterator[str]:
        """Depth-first walk of the spelling trie, trying each reading of leet symbols and
        letting ``*`` stand for any one letter: every complete spelling, first found first."""
        stack: list[tuple[int, dict]] = [(0, self._trie)]
        while stack:
            position, node = stack.pop()
            if position == len(letters):
                key = node.get(_END)
                if key is not None:
                    yield key  # type: ignore[misc]
                continue
            char = letters[position]
            if char == MASK:
                options = sorted(k for k in node if k != _END)
            else:
                options = [char, *LEET.get(char, "")]
            for option in reversed(options):
                child = node.get(option)
                if isinstance(child, dict):
                    stack.append((position + 1, child))


@dataclass(frozen=True, slots=True)
class WordReading:
    """An ordinary word written in disguise ("mys3lf" -> "myself"), in folded offsets."""

    start: int
    end: int
    word: str
    rules: frozenset[str]


_Located = TypeVar("_Located", Match, _Decoding)


@dataclass(frozen=True, slots=True)
class _Decoded:
    """Folded text with disguised words replaced by their spelling, mapped back to it."""

    text: str
    starts: tuple[int, ...] | None  # folded start of each decoded char; None: identity
    ends: tuple[int, ...] | None
    words: tuple[tuple[int, int], ...] = ()  # where each decoded word lies in ``text``

    @classmethod
    def of(cls, text: str, substitutions: list[tuple[int, int, str]]) -> _Decoded:
        if not substitutions:
            return cls(text, None, None)
        parts: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        words: list[tuple[int, int]] = []
        position = 0
        for start, end, key in [*substitutions, (len(text), len(text), "")]:
            parts += [text[position:start], key]
            starts += [*range(position, start), *[start] * len(key)]
            ends += [*range(position + 1, start + 1), *[end] * len(key)]
            words.append((len(starts) - len(key), len(starts)))
            position = end
        return cls("".join(parts), tuple(starts), tuple(ends), tuple(words[:-1]))

    def splits_a_word(self, start: int, end: int) -> bool:
        """Whether the decoded slice [start, end) holds part of a decoded word but not all of
        it: "ana" in "a n a c o a c h" read as "ana coach" is not a word of the text."""
        return any(s < end and start < e and not (start <= s and e <= end) for s, e in self.words)

    def origin(self, start: int, end: int) -> tuple[int, int]:
        """Folded offsets of the decoded slice [start, end)."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def leftmost_longest(matches: list[_Located]) -> list[_Located]:
    """Non-overlapping matches, leftmost first, longest on a tie, then the earlier found."""
    ordered = sorted(
        enumerate(matches), key=lambda im: (im[1].start, im[1].start - im[1].end, im[0])
    )
    chosen: list[_Located] = []
    for _, match in ordered:
        if not chosen or match.start >= chosen[-1].end:
            chosen.append(match)
    return chosen


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """The most frequent English words (``COMMON_WORDS_TOP_N`` of them, from wordfreq's
    maintained lists), alphabetic ASCII only, at least ``MIN_LETTERS`` long. Built once."""
    started = time.perf_counter()
    # Imported here, not at the top: wordfreq and what it pulls in (regex, msgpack) take about
    # 0.15 s to load, and only a text with a disguised ordinary word ever needs them.
    from wordfreq import top_n_list

    words = frozenset(
        w
        for w in top_n_list("en", COMMON_WORDS_TOP_N)
        if w.isascii() and w.isalpha() and len(w) >= MIN_LETTERS
    )
    logger.debug("loaded %d common words in %.3f s", len(words), time.perf_counter() - started)
    return words


def _may_be_disguised_word(letters: str) -> bool:
    """Whether a token may be an ordinary word in disguise: enough letters, only letters and
    leet or mask symbols, few masks, and a symbol other than a digit or a digit between
    letters (a digit at the edge is a number or a model name: "ps5", "5am", "4ever")."""
    if sum(c.isalpha() for c in letters) < MIN_LETTERS or letters.count(MASK) > _MAX_MASKS:
        return False
    disguised = False
    for index, char in enumerate(letters):
        if char.isalpha():
            continue
        if char != MASK and char not in LEET:
            return False  # "b2b", "h264": a digit that spells no letter
        inner = _has_letter(letters, (0, index)) and _has_letter(letters, (index + 1, len(letters)))
        disguised = disguised or not char.isdigit() or inner
    return disguised


def _common_readings(letters: str) -> list[str]:
    """Every common word ``letters`` reads as, each leet symbol taken as one of its letters
    and each mask as any letter."""
    options = [ascii_lowercase if c == MASK else (c if c.isalpha() else LEET[c]) for c in letters]
    words = common_words()
    return sorted({w for w in map("".join, product(*options)) if w in words})


def _strip_punctuation(text: str, start: int, end: int) -> tuple[int, int]:
    """The token without the leet symbols at its edges that read as punctuation ("hello!")."""
    while start < end and text[start] in _PUNCTUATION:
        start += 1
    while end > start and text[end - 1] in _PUNCTUATION:
        end -= 1
    return start, end


def _free_side(text: str, index: int, step: int) -> bool:
    """Whether a word ending next to ``index`` stands free on that side: past any edge
    punctuation lies the text's edge, a space, sentence punctuation or an emoji (which the
    normalizer may decode into a word of its own). A full stop or colon counts only at the end
    of a sentence ("myself." but not "v3rs1on.2" or "10:4m")."""
    while 0 <= index < len(text) and text[index] in _PUNCTUATION:
        index += step
    if not 0 <= index < len(text):
        return True
    char = text[index]
    if char in ".:":
        after = index + 1
        return step == 1 and (after == len(text) or text[after].isspace())
    return char in _WORD_NEIGHBOURS or unicodedata.category(char) == "So"


def _disguise_rules(letters: str) -> frozenset[str]:
    """How a word with symbols was disguised: "masking" for ``*``, "leetspeak" for others."""
    rules = {"masking"} if MASK in letters else set()
    if any(c != MASK and not c.isalpha() for c in letters):
        rules.add("leetspeak")
    return frozenset(rules)


def _stretches(letters: str, word: str) -> bool:
    """Whether ``letters`` is ``word`` with some letters repeated three times or more: a
    shorter run is written as meant ("oooooff" stretches "off", not "of")."""
    written = [m.group() for m in _RUN.finditer(letters)]
    meant = [m.group() for m in _RUN.finditer(word)]
    if len(written) != len(meant):
        return False
    return all(
        a[0] == b[0] and (len(a) == len(b) or (len(a) >= 3 and len(b) <= len(a)))
        for a, b in zip(written, meant, strict=True)
    )


def _compact(key: str) -> str:
    return "".join(c for c in key if c != " " and c not in JOINERS)


def _glued(text: str, index: int, step: int) -> bool:
    """Whether a letter or digit lies at ``index``, or beyond a run of leet symbols from it:
    "unalive" in "k1ll!unalive" is the tail of one token, but "unalive!!" ends a word."""
    while 0 <= index < len(text) and text[index] in _SYMBOLS:
        index += step
    return 0 <= index < len(text) and text[index].isalnum()


def _attached(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is joined to a neighbouring word by a joiner ("a-b")."""
    before = start >= 2 and text[start - 1] in JOINERS and is_wordish(text[start - 2])
    return before or (text[end : end + 1] in JOINERS and is_wordish(text[end + 1 : end + 2]))


def _has_letter(text: str, token: tuple[int, int]) -> bool:
    return any(c.isalpha() for c in text[token[0] : token[1]])


def is_wordish(char: str) -> bool:
    """Whether ``char`` can be part of a token: a letter, a digit or a leet/mask symbol."""
    return char.isalnum() or (char != "" and char in _SYMBOLS)


def _inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s < end and start < e for s, e in spans)


def _groups(text: str, tokens: list[tuple[int, int]]) -> list[tuple[list[tuple[int, int]], str]]:
    """Runs of tokens that may spell one word: tokens linked by single joiners
    ("un-alive", "s/h") and single characters spaced out ("s e x", "k.y.s")."""
    groups: list[tuple[list[tuple[int, int]], str]] = []
    for rule in ("joined", "spacing"):
        run: list[tuple[int, int]] = []
        for token in tokens:
            if run and _linked(text, run[-1], token, rule):
                run.append(token)
                continue
            if len(run) >= 2:
                groups.append((run, rule))
            run = [token]
        if len(run) >= 2:
            groups.append((run, rule))
    return groups


def _pieces(text: str, run: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """A spaced run split into words: at its blanks when other joiners link its letters
    ("k.i.l.l y.o.u" is two words), whole when only blanks do ("y o u r s e l f")."""
    gaps = [text[a[1] : b[0]] for a, b in pairwise(run)]
    if all(gap == " " for gap in gaps):
        return [run]
    pieces = [[run[0]]]
    for gap, token in zip(gaps, run[1:], strict=True):
        if gap == " ":
            pieces.append([token])
        else:
            pieces[-1].append(token)
    return pieces


def _linked(text: str, left: tuple[int, int], right: tuple[int, int], rule: str) -> bool:
    gap = text[left[1] : right[0]]
    if len(gap) != 1:
        return False
    if rule == "joined":  # every part must hold a letter: "kill-3" is not a word
        return gap in JOINERS and _has_letter(text, left) and _has_letter(text, right)
    return (gap == " " or gap in JOINERS) and left[1] - left[0] == 1 and right[1] - right[0] == 1
