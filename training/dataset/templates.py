"""Template families (``training/templates.yaml``) and the posts they generate.

Each family is one way of writing a post with one labelling rule; its ``{code}`` slot is
filled with a lexicon variant, possibly disguised (:mod:`.obfuscation`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from algospeak.lexicon import Entry, load_lexicon
from algospeak.prompt import Answer, AnswerError
from algospeak.taxonomy import CATEGORY_NAMES, HARM_CATEGORIES
from training.dataset.examples import USER_FAMILY, DatasetError, Example
from training.dataset.obfuscation import obfuscate

# The templates stay beside the training package (package data), not inside this package.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates.yaml"
_SLOT = re.compile(r"\{(\w+)\}")
# What a family's reason may name (see templates.yaml); {code} and {meaning} need a code.
_REASON_SLOTS = frozenset({"code", "meaning", "category", "against"})


@dataclass(frozen=True, slots=True)
class _Choice:
    entry: Entry
    variant: str


@dataclass(frozen=True, slots=True)
class Family:
    id: str
    label: str
    category: str  # a category, or "from_entry"
    severity: str
    slot: str  # code | lookalike | none
    language: str
    weight: float
    templates: tuple[str, ...]
    choices: tuple[_Choice, ...]
    by_entry: dict[str, tuple[str, ...]]
    reason: str

    @property
    def group(self) -> tuple[str, str, str]:
        """Families in one group are alternatives; one of a large group is held out."""
        language = "en" if self.language == "en" else "other"
        return (language, self.label, self.category)


def load_templates(path: Path) -> tuple[dict[str, list[str]], list[Family]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read templates: {exc}") from exc
    slots = {k: [str(v) for v in vs] for k, vs in (data.get("slots") or {}).items()}
    lexicon = load_lexicon()
    codes = {e.id: e for e in lexicon.codes}
    families = [_family(raw, codes, path) for raw in data.get("families") or []]
    ids = [f.id for f in families]
    if len(set(ids)) != len(ids) or USER_FAMILY in ids:
        raise DatasetError(f"{path}: family ids must be unique and not {USER_FAMILY!r}")
    return slots, families


def _family(raw: dict[str, Any], codes: dict[str, Entry], path: Path) -> Family:
    where = f"{path}: family {raw.get('id')!r}"
    slot = raw.get("slot", "none")
    choices: list[_Choice] = []
    for spec in raw.get("entries") or []:
        entry_id, _, variant = str(spec).partition("=")
        if entry_id not in codes:
            raise DatasetError(f"{where}: unknown lexicon code {entry_id!r}")
        entry = codes[entry_id]
        if variant and variant not in entry.variants:
            raise DatasetError(f"{where}: {entry_id!r} has no variant {variant!r}")
        variants = [variant] if variant else list(entry.variants)
        choices += [_Choice(entry, v) for v in variants]
    for category in raw.get("pool") or []:
        ambiguous = slot == "lookalike"
        choices += [
            _Choice(e, v)
            for e in codes.values()
            if e.category == category and e.ambiguous == ambiguous and (e.against or not ambiguous)
            for v in e.variants
        ]
    by_entry = {k: tuple(v) for k, v in (raw.get("by_entry") or {}).items()}
    templates = tuple(raw.get("templates") or ())
    if slot != "none" and not choices:
        raise DatasetError(f"{where}: a {slot} slot needs 'entries' or 'pool'")
    if not templates and not by_entry:
        raise DatasetError(f"{where}: no templates")
    # Every code the family draws needs wording, and by_entry names only codes it draws.
    used = {c.entry.id for c in choices}
    if unused := sorted(set(by_entry) - used):
        raise DatasetError(f"{where}: by_entry names codes the family never uses: {unused}")
    if not templates and (unworded := sorted(used - set(by_entry))):
        raise DatasetError(f"{where}: no templates for {unworded}")
    category = raw.get("category")
    reason = str(raw.get("reason") or "").strip()
    _check_reason(reason, slot, (*templates, *(t for ts in by_entry.values() for t in ts)), where)
    family = Family(
        id=str(raw["id"]),
        label=str(raw.get("label")),
        category=str(category),
        severity=str(raw.get("severity")),
        slot=slot,
        language=str(raw.get("language", "en")),
        weight=float(raw.get("weight", 1.0)),
        templates=templates,
        choices=tuple(choices),
        by_entry=by_entry,
        reason=reason,
    )
    probe = HARM_CATEGORIES[0] if category == "from_entry" else family.category
    try:
        Answer(family.label, probe, family.severity)
    except AnswerError as exc:
        raise DatasetError(f"{where}: {exc}") from exc
    return family


def _check_reason(reason: str, slot: str, templates: Sequence[str], where: str) -> None:
    """A family's reason is one line naming only what every one of its posts shows."""
    if not reason or "\n" in reason:
        raise DatasetError(f"{where}: needs a one-line 'reason'")
    names = set(_SLOT.findall(reason))
    if names - _REASON_SLOTS:
        raise DatasetError(f"{where}: reason slots {sorted(names - _REASON_SLOTS)} are unknown")
    if "against" in names and slot != "lookalike":
        raise DatasetError(f"{where}: only lookalike reasons may name {{against}}")
    if names & {"code", "meaning"} and (
        slot == "none" or any("{code}" not in t for t in templates)
    ):
        raise DatasetError(f"{where}: the reason names the code, but not every post has one")


def _fill(
    template: str, slots: dict[str, list[str]], values: dict[str, str], rng: random.Random
) -> str:
    def one(match: re.Match[str]) -> str:
        name = match[1]
        if name in values:
            return values[name]
        if name in slots:
            return rng.choice(slots[name])
        raise DatasetError(f"templates: unknown slot {{{name}}} in {template!r}")

    return _SLOT.sub(one, template)


def generate(family: Family, slots: dict[str, list[str]], rng: random.Random, turn: int) -> Example:
    """One post of ``family``; ``turn`` cycles the obfuscations so each gets its share."""
    if family.slot == "none":
        text = _fill(rng.choice(family.templates), slots, {}, rng)
        return Example(
            text,
            family.label,
            family.category,
            family.severity,
            family.id,
            language=family.language,
            reason=_reason(family.reason, {"category": CATEGORY_NAMES[family.category]}),
        )
    choice = rng.choice(family.choices)
    entry = choice.entry
    values = {"meaning": entry.meaning}
    obfuscation = "none"
    # Some entries need their own wording (a drug is sold, an insult is thrown).
    templates = family.by_entry.get(entry.id, family.templates)
    if family.slot == "lookalike":
        # Innocent uses are written plainly: a disguise would itself signal a code.
        values["code"] = choice.variant
        values["against"] = rng.choice(entry.against).rstrip("*") if entry.against else ""
        template = rng.choice(templates)
    else:
        template = rng.choice(templates)
        values["code"], obfuscation = obfuscate(choice.variant, turn)
        if "{code}" not in template:
            obfuscation = "none"  # an injection wrapper around a post without a code
    text = _fill(template, slots, values, rng)
    category = entry.category if family.category == "from_entry" else family.category
    # Provenance names the entry only when its code is in the text.
    entry_id = entry.id if "{code}" in template else None
    # The reason names the plain variant and what that very variant means ("unalived" ->
    # "killed"); it draws nothing from rng, so adding it left every post unchanged.
    reason_values = {
        "code": choice.variant,
        "meaning": entry.variants[choice.variant],
        "category": CATEGORY_NAMES[category],
        "against": values.get("against", ""),
    }
    return Example(
        text,
        family.label,
        category,
        family.severity,
        family.id,
        entry_id,
        obfuscation,
        family.language,
        _reason(family.reason, reason_values),
    )


def _reason(template: str, values: dict[str, str]) -> str:
    return _SLOT.sub(lambda match: values[match[1]], template)
