"""A platform's moderation policy: a YAML file that adjusts the built-in rules to one platform.

What a policy may say (every key but ``version`` is optional)::

    version: "2026-11-28"      # the policy's own version, a string
    codes: [...]               # extra lexicon entries, same schema as data/lexicon.yaml
    terms: [...]
    disable: [corn]            # ids of lexicon entries to switch off
    thresholds:                # per-category P(harmful) for the review/block actions
      child_safety: {review: 0.2, block: 0.5}
    review: 0.5                # the same for every category the thresholds do not name
    block: 0.9
    unmoderated: [drugs]       # categories reported but never flagged

``load_policy`` checks the file on its own; ``Policy.apply`` checks it against a lexicon (ids
to disable exist, extra entries clash with nothing). Both raise PolicyError naming the file
and the bad item, and neither changes anything when they raise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from algospeak.lexicon import Entry, Lexicon, LexiconError, parse_entries, read_yaml
from algospeak.taxonomy import HARM_CATEGORIES

_KEYS = ("version", "codes", "terms", "disable", "thresholds", "review", "block", "unmoderated")
_LEVELS = ("review", "block")


class PolicyError(ValueError):
    """The policy file is unusable; the message names the file and the bad item."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy file. ``sha256`` is the hash of the file's bytes; ``thresholds``
    maps a harm category to its ``review``/``block`` overrides (either may be absent);
    ``review``/``block`` are the policy's global thresholds, None where it sets none."""

    version: str
    sha256: str
    source: str
    entries: tuple[Entry, ...] = ()
    disabled: tuple[str, ...] = ()
    thresholds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    review: float | None = None
    block: float | None = None
    unmoderated: frozenset[str] = frozenset()

    @classmethod
    def from_yaml(cls, raw: bytes, source: str) -> Policy:
        """The policy in ``raw`` (named ``source`` in errors); raises PolicyError."""
        data = read_yaml(raw, source, PolicyError)
        return _build(data, source=source, sha256=hashlib.sha256(raw).hexdigest())

    def moderates(self, category: str) -> bool:
        return category not in self.unmoderated

    def apply(self, lexicon: Lexicon) -> Lexicon:
        """``lexicon`` without the disabled entries and with the policy's own, checked as a
        whole like a lexicon file. The result's version is ``<lexicon>+policy-<policy>`` and
        its sha256 covers both files. Raises PolicyError naming the entry at fault."""
        try:
            return lexicon.with_changes(
                self.entries,
                self.disabled,
                version=f"{lexicon.version}+policy-{self.version}",
                sha256=hashlib.sha256(f"{lexicon.sha256}:{self.sha256}".encode()).hexdigest(),
                source=f"{lexicon.source}+{self.source}",
            )
        except LexiconError as exc:
            raise PolicyError(str(exc)) from exc


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy at ``path``; raises PolicyError naming the problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
    return Policy.from_yaml(raw, source=path.name)


def _build(data: Any, *, source: str, sha256: str) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: top level must be a mapping with at least 'version'")
    unknown = set(data) - set(_KEYS)
    if unknown:
        raise PolicyError(
            f"{source}: unknown top-level keys {sorted(map(str, unknown))} (allowed: {list(_KEYS)})"
        )
    version = data.get("version")
    if isinstance(version, date):
        raise PolicyError(
            f'{source}: quote the version, YAML reads {version} as a date: "{version}"'
        )
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(f"{source}: 'version' must be a non-empty string")
    try:
        entries = parse_entries(data.get("codes"), "code", source)
        entries += parse_entries(data.get("terms"), "term", source)
    except LexiconError as exc:
        raise PolicyError(str(exc)) from exc
    review = _threshold(data.get("review"), f"{source}: review")
    block = _threshold(data.get("block"), f"{source}: block")
    _check_order(review, block, f"{source}: global thresholds")
    return Policy(
        version=version,
        sha256=sha256,
        source=source,
        entries=tuple(entries),
        disabled=_disabled(data.get("disable"), source),
        thresholds=_thresholds(data.get("thresholds"), review, block, source),
        review=review,
        block=block,
        unmoderated=_categories(data.get("unmoderated"), f"{source}: unmoderated"),
    )


def _disabled(value: Any, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PolicyError(f"{source}: 'disable' must be a list of lexicon entry ids")
    for item in value:
        if not isinstance(item, str) or not item:
            raise PolicyError(f"{source}: disable holds {item!r}, not a lexicon entry id")
    return tuple(dict.fromkeys(value))


def _thresholds(
    value: Any, review: float | None, block: float | None, source: str
) -> dict[str, dict[str, float]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{source}: 'thresholds' must map a category to its review/block")
    result: dict[str, dict[str, float]] = {}
    for category, levels in value.items():
        where = f"{source}: thresholds.{category}"
        _check_category(category, where)
        if not isinstance(levels, dict) or not levels:
            raise PolicyError(f"{where}: must be a mapping with review and/or block")
        unknown = set(levels) - set(_LEVELS)
        if unknown:
            raise PolicyError(
                f"{where}: unknown keys {sorted(map(str, unknown))} (allowed: {_LEVELS})"
            )
        own = {level: _probability(levels[level], f"{where}.{level}") for level in levels}
        _check_order(own.get("review", review), own.get("block", block), where)
        result[category] = own
    return result


def _threshold(value: Any, where: str) -> float | None:
    return None if value is None else _probability(value, where)


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise PolicyError(f"{where}: {value!r} is not a probability between 0 and 1")
    return float(value)


def _check_order(review: float | None, block: float | None, where: str) -> None:
    if review is not None and block is not None and review > block:
        raise PolicyError(f"{where}: review {review} is above block {block}")


def _categories(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise PolicyError(f"{where}: must be a list of categories")
    for category in value:
        _check_category(category, where)
    return frozenset(value)


def _check_category(category: Any, where: str) -> None:
    if category not in HARM_CATEGORIES:
        raise PolicyError(f"{where}: {category!r} is not a harm category {HARM_CATEGORIES}")
