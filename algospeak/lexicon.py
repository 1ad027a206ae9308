"""The algospeak lexicon: versioned data (``data/lexicon.yaml``), validated on load.

Two kinds of entries:

- *codes* stand for something else ("unalive" means "kill"); each variant has a plain
  replacement. Ambiguous codes are ordinary words too ("corn") and carry context cues that
  license the coded reading, and optionally ``against`` cues that veto it (an unambiguous code
  may carry a few vetoes too: "kms" after driving is kilometres). Cue lists shared by
  many entries (a threat, a weather or gaming context) are named once under ``contexts`` and
  referred to as ``"@name"`` inside ``cues`` and ``against``; a context named after a
  category (``drugs``: selling, a plug, a party) licenses every ambiguous code of it.
- *terms* are plain sensitive words ("kill", "sex") that people disguise with leetspeak,
  masking or spacing; the normalizer spells them out again.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from algospeak.taxonomy import HARM_CATEGORIES

_ID = re.compile(r"^[a-z0-9_]+$")
_PLAIN = re.compile(r"^[a-z0-9][a-z0-9' -]*$")
_TERM_KEYS = {"id", "category", "variants", "note"}
_CODE_KEYS = _TERM_KEYS | {"meaning", "verb", "inflections", "ambiguous", "cues", "against"}
_VARIATION_SELECTORS = ("\ufe0e", "\ufe0f")


class LexiconError(ValueError):
    """The lexicon file is malformed; the message names the file and the bad entry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One lexicon entry; ``variants`` maps each spelling to the plain text it stands for."""

    id: str
    kind: Literal["code", "term"]
    category: str
    variants: Mapping[str, str]
    ambiguous: bool = False
    cues: tuple[str, ...] = ()
    against: tuple[str, ...] = ()
    note: str = ""
    # The replacement when the code is used as a verb, where it differs from the meaning:
    # "pew pew the whole school" is "shoot the whole school", not "gun the whole school".
    verb: str | None = None

    @property
    def meaning(self) -> str:
        """The replacement of the entry's first (base) variant."""
        return next(iter(self.variants.values()))


@dataclass(frozen=True, slots=True)
class Lexicon:
    """A validated lexicon: entries in file order plus identity (version, sha256)."""

    version: str
    entries: tuple[Entry, ...]
    sha256: str
    source: str

    @property
    def codes(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.kind == "code")

    @property
    def terms(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.kind == "term")

    def size_by_category(self) -> dict[str, int]:
        """Number of codes per harm category (terms are not codes and are not counted)."""
        counts = Counter(e.category for e in self.codes)
        return {category: counts.get(category, 0) for category in HARM_CATEGORIES}

    def with_changes(
        self,
        extra: Sequence[Entry] = (),
        disabled: Iterable[str] = (),
        *,
        version: str,
        sha256: str,
        source: str,
    ) -> Lexicon:
        """This lexicon without the ``disabled`` entries (by id) and with ``extra`` appended,
        named ``version``/``sha256``/``source``. The result is checked as a whole exactly like
        a lexicon file; raises LexiconError, prefixed with ``source``, naming an id to disable
        that this lexicon lacks or the entry that clashes."""
        off = set(disabled)
        unknown = off - {e.id for e in self.entries}
        if unknown:
            raise LexiconError(
                f"{source}: cannot disable {sorted(unknown)}: lexicon {self.source} "
                f"{self.version} has no such entry"
            )
        entries = [e for e in self.entries if e.id not in off] + list(extra)
        _check_whole(entries, source)
        return Lexicon(version=version, entries=tuple(entries), sha256=sha256, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> Lexicon:
        """Read and validate a YAML lexicon; raises LexiconError naming the problem."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise LexiconError(f"{path}: cannot read lexicon: {exc}") from exc
        return cls.from_yaml(raw, source=path.name)

    @classmethod
    def from_yaml(cls, raw: bytes, source: str) -> Lexicon:
        data = read_yaml(raw, source, LexiconError)
        return _build(data, source=source, sha256=hashlib.sha256(raw).hexdigest())


def read_yaml(raw: bytes, source: str, error: type[ValueError]) -> Any:
    """The data in ``raw``; ``error`` naming ``source`` when it is not valid YAML."""
    try:
        # The C loader, where PyYAML has it, reads the lexicon several times faster.
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {exc}") from exc


@lru_cache(maxsize=1)
def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """The lexicon at ``path``, or the built-in one; cached, since it is immutable."""
    if path is not None:
        return Lexicon.from_file(path)
    raw = resources.files("algospeak").joinpath("data/lexicon.yaml").read_bytes()
    return Lexicon.from_yaml(raw, source="lexicon.yaml")


def _build(data: Any, *, source: str, sha256: str) -> Lexicon:
    if not isinstance(data, dict):
        raise LexiconError(f"{source}: top level must be a mapping with version, codes, terms")
    unknown = set(data) - {"version", "contexts", "codes", "terms"}
    if unknown:
        raise LexiconError(f"{source}: unknown top-level keys {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise LexiconError(f"{source}: 'version' must be a non-empty string")
    contexts = _contexts(data.get("contexts"), source)
    entries = parse_entries(data.get("codes"), "code", source, contexts)
    entries += parse_entries(data.get("terms"), "term", source, contexts)
    _check_whole(entries, source)
    return Lexicon(version=version, entries=tuple(entries), sha256=sha256, source=source)


def _contexts(value: Any, source: str) -> dict[str, tuple[str, ...]]:
    """The named cue lists of a lexicon file (``contexts: {name: [cue, ...]}``), validated."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LexiconError(f"{source}: 'contexts' must map a name to a list of cues")
    contexts = {}
    for name, cues in value.items():
        if not isinstance(name, str) or not _ID.match(name):
            raise LexiconError(f"{source}: context name {name!r} must match [a-z0-9_]+")
        contexts[name] = _strings(cues, "cues", f"{source}: contexts.{name}", required=True)
    return contexts


def parse_entries(
    items: Any,
    kind: Literal["code", "term"],
    source: str,
    contexts: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Entry]:
    """The entries of one section (``codes`` or ``terms``, after ``kind``) of a lexicon-shaped
    file, each validated on its own (``Lexicon.with_changes`` checks them together), with
    ``"@name"`` cues expanded from ``contexts``; raises LexiconError naming the file, the
    section, the index and the entry's id."""
    section = f"{kind}s"
    items = items or []
    if not isinstance(items, list):
        raise LexiconError(f"{source}: '{section}' must be a list")
    entries = []
    for index, item in enumerate(items):
        where = f"{source}: {section}[{index}]"
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            where += f" ({item['id']!r})"
        entries.append(_entry(item, kind, where, contexts or {}))
    return entries


def _entry(
    item: Any,
    kind: Literal["code", "term"],
    where: str,
    contexts: Mapping[str, tuple[str, ...]],
) -> Entry:
    if not isinstance(item, dict):
        raise LexiconError(f"{where}: must be a mapping")
    allowed = _CODE_KEYS if kind == "code" else _TERM_KEYS
    unknown = set(item) - allowed
    if unknown:
        raise LexiconError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    entry_id = item.get("id")
    if not isinstance(entry_id, str) or not _ID.match(entry_id):
        raise LexiconError(f"{where}: 'id' must match [a-z0-9_]+")
    category = item.get("category")
    if category not in HARM_CATEGORIES:
        raise LexiconError(f"{where}: category {category!r} is not one of {HARM_CATEGORIES}")
    spellings = _strings(item.get("variants"), "variants", where, required=True)
    for spelling in spellings:
        _check_variant(spelling, where)
    if kind == "term":
        return Entry(entry_id, kind, category, {v: v for v in spellings}, note=_note(item, where))

    meaning = item.get("meaning")
    _check_plain(meaning, "meaning", where)
    verb = item.get("verb")
    if verb is not None:
        _check_plain(verb, "verb", where)
    variants = dict.fromkeys(spellings, meaning)
    inflections = item.get("inflections") or {}
    if not isinstance(inflections, dict):
        raise LexiconError(f"{where}: 'inflections' must map a variant to its replacement")
    for spelling, replacement in inflections.items():
        _check_variant(spelling, where)
        _check_plain(replacement, f"inflection {spelling!r}", where)
        if spelling in variants:
            raise LexiconError(f"{where}: inflection {spelling!r} repeats a variant")
        variants[spelling] = replacement
    ambiguous = item.get("ambiguous", False)
    if not isinstance(ambiguous, bool):
        raise LexiconError(f"{where}: 'ambiguous' must be true or false")
    cues = _expand(_strings(item.get("cues"), "cues", where), contexts, where)
    if ambiguous:  # a context named after the category licenses all its ambiguous codes
        shared = _expand(contexts.get(category, ()), contexts, where)
        shared = tuple(c for c in shared if not _names_itself(c, variants))
        cues = tuple(dict.fromkeys([*cues, *shared]))
    against = _expand(_strings(item.get("against"), "against", where), contexts, where)
    if ambiguous and not cues:
        raise LexiconError(
            f"{where}: an ambiguous code needs 'cues' that license its coded reading"
        )
    if not ambiguous and cues:
        raise LexiconError(f"{where}: 'cues' only apply to ambiguous codes")
    return Entry(
        entry_id,
        kind,
        category,
        variants,
        ambiguous,
        cues,
        against,
        note=_note(item, where),
        verb=verb,
    )


def _names_itself(cue: str, spellings: Iterable[str]) -> bool:
    """Whether ``cue`` would find the code's own spelling (a code is no context for itself)."""
    if cue.endswith("*"):
        return any(word.startswith(cue[:-1]) for s in spellings for word in s.split())
    return cue in spellings


def _expand(
    cues: tuple[str, ...], contexts: Mapping[str, tuple[str, ...]], where: str
) -> tuple[str, ...]:
    """``cues`` with each ``"@name"`` replaced by that context's cues, duplicates dropped."""
    expanded: list[str] = []
    for cue in cues:
        if cue.startswith("@"):
            if cue[1:] not in contexts:
                known = ", ".join(sorted(contexts)) or "none"
                raise LexiconError(f"{where}: unknown context {cue!r} (known: {known})")
            expanded += contexts[cue[1:]]
        else:
            expanded.append(cue)
    return tuple(dict.fromkeys(expanded))


def _strings(value: Any, field: str, where: str, *, required: bool = False) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or (required and not value):
        raise LexiconError(f"{where}: '{field}' must be a non-empty list of strings")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise LexiconError(f"{where}: '{field}' holds {item!r}, not a non-empty string")
        if item != item.strip().lower():
            raise LexiconError(f"{where}: '{field}' entry {item!r} must be lowercase and trimmed")
    return tuple(value)


def _check_variant(spelling: Any, where: str) -> None:
    if not isinstance(spelling, str) or spelling != spelling.strip().lower() or not spelling:
        raise LexiconError(f"{where}: variant {spelling!r} must be a lowercase, trimmed string")
    if "  " in spelling:
        raise LexiconError(f"{where}: variant {spelling!r} has repeated spaces")
    if any(selector in spelling for selector in _VARIATION_SELECTORS):
        raise LexiconError(f"{where}: variant {spelling!r} contains an emoji variation selector")
    if len(spelling) < 2 and spelling.isalnum():
        raise LexiconError(f"{where}: variant {spelling!r} is too short to match safely")


def _check_plain(value: Any, field: str, where: str) -> None:
    if not isinstance(value, str) or not _PLAIN.match(value):
        raise LexiconError(f"{where}: '{field}' must be plain lowercase words, got {value!r}")


def _note(item: dict[str, Any], where: str) -> str:
    note = item.get("note", "")
    if not isinstance(note, str):
        raise LexiconError(f"{where}: 'note' must be a string")
    return note


def _check_whole(entries: list[Entry], source: str) -> None:
    """Checks across entries: unique ids and spellings, and the rules that keep
    normalization idempotent (replacements and cues never contain a code)."""
    owner: dict[str, str] = {}
    ids: set[str] = set()
    for entry in entries:
        if entry.id in ids:
            raise LexiconError(f"{source}: id {entry.id!r} is used twice")
        ids.add(entry.id)
        for spelling in entry.variants:
            if spelling in owner:
                raise LexiconError(
                    f"{source}: variant {spelling!r} of {entry.id!r} already belongs to "
                    f"{owner[spelling]!r}"
                )
            owner[spelling] = entry.id
    code_ids = {e.id for e in entries if e.kind == "code"}
    codes = _Codes({s: o for s, o in owner.items() if o in code_ids})
    for entry in entries:
        if entry.kind != "code":
            continue
        for replacement in sorted({*entry.variants.values(), *filter(None, [entry.verb])}):
            clash = codes.inside(replacement)
            if clash:
                raise LexiconError(
                    f"{source}: code {entry.id!r}: replacement {replacement!r} contains the code "
                    f"{clash!r}, so normalizing twice would change it again"
                )
        # A veto must survive normalization: it may not hold another entry's code, which
        # would be replaced (its own code is never replaced while the veto holds).
        for cue in entry.against:
            clash = codes.in_cue(cue, besides=entry.id)
            if clash:
                raise LexiconError(
                    f"{source}: code {entry.id!r}: against-cue {cue!r} matches the code {clash!r}, "
                    "which normalizing would replace"
                )


class _Codes:
    """Code spellings indexed by word, so the whole-lexicon checks stay linear."""

    def __init__(self, owner: dict[str, str]) -> None:
        self._owner = owner
        self._words = sorted((word, spelling) for spelling in owner for word in spelling.split())

    def inside(self, phrase: str, besides: str | None = None) -> str | None:
        """A code (not of entry ``besides``) that ``phrase`` holds as whole words."""
        words = phrase.split()
        for start in range(len(words)):
            for end in range(start + 1, len(words) + 1):
                candidate = " ".join(words[start:end])
                if candidate in self._owner and self._owner[candidate] != besides:
                    return candidate
        return None

    def in_cue(self, cue: str, besides: str) -> str | None:
        """A code of another entry that ``cue`` contains, or whose words a prefix cue
        ("dab*") matches."""
        if not cue.endswith("*"):
            return self.inside(cue, besides)
        prefix = cue[:-1]
        for word, spelling in self._words[bisect_left(self._words, (prefix, "")) :]:
            if not word.startswith(prefix):
                return None
            if self._owner[spelling] != besides:
                return spelling
        return None
