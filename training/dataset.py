"""A seeded, reproducible dataset builder for the algospeak classifier.

``python -m training.dataset build --out DIR [--seed 13] [--size 6000] [--extra FILE ...]
[--reasons]`` writes ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` and ``card.md``.

Posts come from template *families* (``training/templates.yaml``), each with one labelling
rule, whose ``{code}`` slot is filled with a lexicon variant, possibly obfuscated by the small
pure functions below. Each example also carries a short reason (from its family's ``reason``,
its code and that code's meaning); with ``--reasons`` the chat answer ends with it as the
contract's reason line. Whole families and ~10% of the lexicon entries used are held out of
train, so the test split (only examples with an unseen family or entry) measures
generalization. Prompts and answers come only from :mod:`algospeak.prompt`, so the training
text is the served text by construction. Pure Python: no torch here.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from algospeak.lexicon import Entry, load_lexicon
from algospeak.normalizer import Normalization, normalize
from algospeak.prompt import (
    SYSTEM,
    Answer,
    AnswerError,
    build_messages,
    format_answer,
    user_content,
)
from algospeak.taxonomy import CATEGORY_NAMES, HARM_CATEGORIES

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates.yaml")
DEFAULT_SEED = 13
DEFAULT_SIZE = 6000
SPLITS = ("train", "dev", "test")
USER_FAMILY = "user"
# Share of lexicon entries (among those the templates use) held out of train.
HELD_OUT_ENTRY_SHARE = 0.10
# Share of seen examples sent to dev, so dev also measures in-distribution fit.
DEV_SEEN_SHARE = 0.06
# Share of unseen examples that go to test (the rest go to dev).
TEST_UNSEEN_SHARE = 0.6
_SLOT = re.compile(r"\{(\w+)\}")
# What a family's reason may name (see templates.yaml); {code} and {meaning} need a code.
_REASON_SLOTS = frozenset({"code", "meaning", "category", "against"})


class DatasetError(ValueError):
    """Bad templates or user data; the message names the file (and row) at fault."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled post; the answer is consistent (validated by ``Answer``)."""

    text: str
    label: str
    category: str
    severity: str
    family: str
    entry: str | None = None
    obfuscation: str = "none"
    language: str = "en"
    reason: str = ""  # one short sentence: why the label applies (the optional reason line)

    def __post_init__(self) -> None:
        Answer(self.label, self.category, self.severity)  # raises AnswerError if inconsistent

    @property
    def answer(self) -> Answer:
        return Answer(self.label, self.category, self.severity)

    @property
    def provenance(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "entry": self.entry,
            "obfuscation": self.obfuscation,
            "language": self.language,
        }


@dataclass(slots=True)
class Splits:
    """The three splits plus what is needed to describe and rebuild them."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]
    seed: int
    size: int
    held_out_families: tuple[str, ...] = ()
    held_out_entries: tuple[str, ...] = ()
    extra_files: tuple[str, ...] = field(default_factory=tuple)

    def items(self) -> list[tuple[str, list[Example]]]:
        return [("train", self.train), ("dev", self.dev), ("test", self.test)]


# ---------------------------------------------------------------- obfuscations
# Each takes a code variant and returns it disguised; it returns the input unchanged when the
# disguise does not apply (emoji, digits, no suitable letter), so callers can detect that.

_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "$", "t": "7"})
_HOMOGLYPHS = str.maketrans(
    {"a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у", "i": "і"}
)
_VOWELS = "aeiouy"


def leetspeak(code: str) -> str:
    """Letters replaced by look-alike digits/symbols: ``unalive`` -> ``un4l1v3``."""
    return code.translate(_LEET)


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
    return code.translate(_HOMOGLYPHS)


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


# ---------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class _Choice:
    entry: Entry
    variant: str


@dataclass(frozen=True, slots=True)
class _Family:
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


def _load_templates(path: Path) -> tuple[dict[str, list[str]], list[_Family]]:
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


def _family(raw: dict[str, Any], codes: dict[str, Entry], path: Path) -> _Family:
    where = f"{path}: family {raw.get('id')!r}"
    slot = raw.get("slot", "none")
    choices: list[_Choice] = []
    for spec in raw.get("entries") or []:
        entry_id, _, variant = str(spec).partition("=")
        if entry_id not in codes:
            raise DatasetError(f"{where}: unknown lexicon code {entry_id!r}")
        entry = codes[entry_id]
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
    category = raw.get("category")
    reason = str(raw.get("reason") or "").strip()
    _check_reason(reason, slot, (*templates, *(t for ts in by_entry.values() for t in ts)), where)
    family = _Family(
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


def _generate(
    family: _Family, slots: dict[str, list[str]], rng: random.Random, turn: int
) -> Example:
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


@lru_cache(maxsize=65536)
def _normalization(text: str) -> Normalization:
    return normalize(text)


def _key(example: Example) -> tuple[str, str]:
    return (_normalization(example.text).normalized, example.label)


# ---------------------------------------------------------------- build


def build(seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE, extra: Iterable[Path] = ()) -> Splits:
    """Build the splits. The same ``(seed, size, extra)`` always gives the same splits.

    Generates about ``size`` distinct examples (deduplicated on normalized text + label),
    holds out families and entries from train, and adds valid ``extra`` rows to train.
    Raises DatasetError for bad templates or extra files.
    """
    if size < 1:
        raise DatasetError(f"size must be positive, got {size}")
    slots, families = _load_templates(TEMPLATES)
    extras = [example for path in extra for example in load_extra(Path(path))]
    held_families = _held_out_families(families, random.Random(f"{seed}:families"))
    held_entries = _held_out_entries(families, random.Random(f"{seed}:entries"))

    examples = _sample(families, slots, seed, size)
    seen_keys = {_key(e) for e in examples}
    kept_extras = []
    for example in extras:
        if _key(example) in seen_keys:
            continue
        seen_keys.add(_key(example))
        kept_extras.append(example)
    if len(kept_extras) < len(extras):
        log.warning("dropped %d duplicate extra rows", len(extras) - len(kept_extras))

    split_rng = random.Random(f"{seed}:split")
    parts: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for example in examples:
        unseen = example.family in held_families or example.entry in held_entries
        if unseen:
            parts["test" if split_rng.random() < TEST_UNSEEN_SHARE else "dev"].append(example)
        else:
            parts["dev" if split_rng.random() < DEV_SEEN_SHARE else "train"].append(example)
    parts["train"] += kept_extras
    for name in SPLITS:
        split_rng.shuffle(parts[name])
    splits = Splits(
        train=parts["train"],
        dev=parts["dev"],
        test=parts["test"],
        seed=seed,
        size=size,
        held_out_families=tuple(sorted(held_families)),
        held_out_entries=tuple(sorted(held_entries)),
        extra_files=tuple(str(p) for p in extra),
    )
    _check_balance(splits)
    return splits


def _held_out_families(families: Sequence[_Family], rng: random.Random) -> set[str]:
    """One family of each group of three or more alternatives (two of eight or more),
    never the last train family with its (label, severity)."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for family in families:
        groups.setdefault(family.group, []).append(family.id)
    by_id = {f.id: f for f in families}
    held: set[str] = set()
    for group in sorted(groups):
        ids = sorted(groups[group])
        if len(ids) < 3:
            continue
        for _ in range(max(1, len(ids) // 4)):
            # Train must keep every (label, severity) pair, or the model never learns it.
            candidates = [
                i
                for i in ids
                if i not in held
                and any(
                    (f.label, f.severity) == (by_id[i].label, by_id[i].severity)
                    for f in families
                    if f.id != i and f.id not in held
                )
            ]
            if candidates:
                held.add(rng.choice(candidates))
    return held


def _held_out_entries(families: Sequence[_Family], rng: random.Random) -> set[str]:
    """About HELD_OUT_ENTRY_SHARE of the code entries that the templates use, plus one entry
    of each prompt-injection family if chance picked none, so test measures injections too."""
    used = sorted({c.entry.id for f in families for c in f.choices})
    count = max(1, round(len(used) * HELD_OUT_ENTRY_SHARE))
    held = set(rng.sample(used, count))
    for family in families:
        entries = sorted({c.entry.id for c in family.choices})
        if family.id.startswith("injection") and entries and not held & set(entries):
            held.add(rng.choice(entries))
    return held


def _sample(
    families: Sequence[_Family], slots: dict[str, list[str]], seed: int, size: int
) -> list[Example]:
    """``size`` distinct examples (fewer only if the templates run out), shared among the
    families by weight; a family that runs out of distinct posts leaves its share to others."""
    total_weight = sum(f.weight for f in families)
    rngs = {f.id: random.Random(f"{seed}:{f.id}") for f in families}
    turns = Counter[str]()
    seen: set[tuple[str, str]] = set()
    out: list[Example] = []

    def draw(family: _Family, attempts: int) -> bool:
        for _ in range(attempts):
            example = _generate(family, slots, rngs[family.id], turns[family.id])
            key = _key(example)
            if key in seen:
                continue
            seen.add(key)
            out.append(example)
            turns[family.id] += 1
            return True
        return False

    for family in families:
        quota = int(size * family.weight / total_weight)
        for _ in range(quota):
            if not draw(family, attempts=30):
                log.info("family %s ran out of distinct posts", family.id)
                break
    active = list(families)
    while len(out) < size and active:
        # Top up round-robin, in file order, until the size is reached.
        active = [f for f in active if len(out) < size and draw(f, attempts=30)]
    if len(out) < size:
        log.warning("only %d distinct examples for size %d", len(out), size)
    return out


def _check_balance(splits: Splits) -> None:
    labels = Counter(e.label for _, part in splits.items() for e in part)
    total = sum(labels.values())
    for label, count in labels.items():
        if total and count / total < 0.35:
            log.warning("label %s is only %.1f%% of the dataset", label, 100 * count / total)


# ---------------------------------------------------------------- user data


def load_extra(path: Path) -> list[Example]:
    """Rows of a ``.csv`` or ``.jsonl`` file with ``text,label,category,severity`` (optional
    ``language``) as examples of family ``user``. Raises DatasetError naming the file and the
    1-based data row (the CSV header is not counted) of the first bad row."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    if suffix == ".csv":
        rows = _csv_rows(raw, path)
    elif suffix == ".jsonl":
        rows = _jsonl_rows(raw, path)
    else:
        raise DatasetError(f"{path}: extra data must be a .csv or .jsonl file")
    return [_extra_example(row, path, number) for number, row in rows]


_EXTRA_FIELDS = ("text", "label", "category", "severity")


def _csv_rows(raw: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(raw.splitlines())
    missing = [f for f in _EXTRA_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing} (need {list(_EXTRA_FIELDS)})")
    return list(enumerate(reader, start=1))


def _jsonl_rows(raw: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: row {number}: not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: row {number}: must be a JSON object")
        rows.append((number, row))
    return rows


def _extra_example(row: dict[str, Any], path: Path, number: int) -> Example:
    where = f"{path}: row {number}"
    for name in _EXTRA_FIELDS:
        if not isinstance(row.get(name), str):
            raise DatasetError(f"{where}: {name!r} must be a string")
    text = row["text"]
    if not text.strip():
        raise DatasetError(f"{where}: 'text' is empty")
    values = [row[name].strip() for name in _EXTRA_FIELDS[1:]]
    language = row.get("language") or "und"
    reason = row.get("reason") or _user_reason(values[0], values[1])
    if not isinstance(reason, str) or "\n" in reason.strip():
        raise DatasetError(f"{where}: 'reason' must be one line of text")
    try:
        return Example(
            text, *values, family=USER_FAMILY, language=str(language), reason=reason.strip()
        )
    except AnswerError as exc:
        raise DatasetError(f"{where}: {exc}") from exc


def _user_reason(label: str, category: str) -> str:
    """The reason of a user row that brings none: its label and category in words."""
    if label == "safe":
        return "nothing in the post is harmful"
    return f"the post's content is harmful ({CATEGORY_NAMES.get(category, category)})"


# ---------------------------------------------------------------- writing


def record(example: Example, *, reasons: bool = False) -> dict[str, Any]:
    """The JSONL record of ``example``: the original design's fields, chat messages and the
    example's ``reason``. The assistant message is the answer line, followed by the reason
    line only when ``reasons``; ``response`` is always the answer line alone."""
    normalization = _normalization(example.text)
    answer = format_answer(example.answer)
    messages = build_messages(example.text, normalization)
    content = format_answer(example.answer, example.reason) if reasons else answer
    messages.append({"role": "assistant", "content": content})
    return {
        "instruction": SYSTEM,
        "input": user_content(example.text, normalization),
        "normalized": normalization.normalized,
        "response": answer,
        "messages": messages,
        "text": example.text,
        "label": example.label,
        "category": example.category,
        "severity": example.severity,
        "provenance": example.provenance,
        "reason": example.reason,
    }


def write(splits: Splits, out_dir: Path, *, reasons: bool = False) -> dict[str, Path]:
    """Write the three JSONL splits and ``card.md`` into ``out_dir``; byte-identical for
    identical splits and ``reasons`` (see ``record``). Returns the written paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, part in splits.items():
        path = out_dir / f"{name}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for example in part:
                line = record(example, reasons=reasons)
                handle.write(json.dumps(line, ensure_ascii=False, sort_keys=True))
                handle.write("\n")
        written[name] = path
    card = out_dir / "card.md"
    card.write_text(card_text(splits, reasons=reasons), encoding="utf-8", newline="\n")
    written["card"] = card
    return written


def _table(title: str, rows: dict[str, Counter[str]], columns: Sequence[str]) -> list[str]:
    lines = [f"## {title}", "", "| " + " | ".join(["", *columns, "total"]) + " |"]
    lines.append("|" + "---|" * (len(columns) + 2))
    for name in sorted(rows):
        counts = rows[name]
        cells = [str(counts.get(c, 0)) for c in columns]
        lines.append(f"| {name} | " + " | ".join([*cells, str(sum(counts.values()))]) + " |")
    return [*lines, ""]


def _by(splits: Splits, attribute: Callable[[Example], str]) -> dict[str, Counter[str]]:
    rows: dict[str, Counter[str]] = {}
    for split, part in splits.items():
        for example in part:
            rows.setdefault(attribute(example), Counter())[split] += 1
    return rows


def card_text(splits: Splits, *, reasons: bool = False) -> str:
    """The dataset card: counts per split and label, category, obfuscation, language and
    family, what is held out, the seed and how to rebuild."""
    lexicon = load_lexicon()
    per_split = {name: Counter(e.label for e in part) for name, part in splits.items()}
    extra = "".join(f" --extra {p}" for p in splits.extra_files)
    extra += " --reasons" if reasons else ""
    lines = [
        "# Algospeak classifier dataset",
        "",
        "Synthetic posts from template families (`training/templates.yaml`) filled with "
        f"lexicon {lexicon.version} codes (sha256 `{lexicon.sha256[:12]}`), obfuscated by "
        "the builder; labels follow the family's rule. Generated, not collected: a "
        "starting point for fine-tuning, not a measure of real-world traffic.",
        "",
        f"- seed: {splits.seed}",
        f"- size: {splits.size}",
        f"- examples: {sum(len(p) for _, p in splits.items())}",
        f"- reason line in the answers: {'yes' if reasons else 'no'} (every record has its "
        "`reason`)",
        f"- rebuild: `python -m training.dataset build --out DIR --seed {splits.seed} "
        f"--size {splits.size}{extra}`",
        "",
        "Test holds only examples whose family or lexicon entry never appears in train; dev "
        "holds the rest of those plus a few seen examples.",
        "",
        "## Held out of train",
        "",
        "- families: " + ", ".join(f"`{f}`" for f in splits.held_out_families),
        "- entries: " + ", ".join(f"`{e}`" for e in splits.held_out_entries),
        "",
        *_table("Split x label", per_split, ["harmful", "safe"]),
        *_table("Category", _by(splits, lambda e: e.category), SPLITS),
        *_table("Severity", _by(splits, lambda e: e.severity), SPLITS),
        *_table("Obfuscation", _by(splits, lambda e: e.obfuscation), SPLITS),
        *_table("Language", _by(splits, lambda e: e.language), SPLITS),
        *_table("Template family", _by(splits, lambda e: e.family), SPLITS),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``build`` subcommand; returns the exit status (2 for bad input)."""
    parser = argparse.ArgumentParser(prog="python -m training.dataset", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build train/dev/test JSONL and card.md")
    build_cmd.add_argument("--out", type=Path, required=True, help="output directory")
    build_cmd.add_argument("--seed", type=int, default=DEFAULT_SEED)
    build_cmd.add_argument("--size", type=int, default=DEFAULT_SIZE)
    build_cmd.add_argument(
        "--extra", type=Path, nargs="+", action="extend", default=[], help=".csv or .jsonl"
    )
    build_cmd.add_argument(
        "--reasons",
        action="store_true",
        help="end each assistant message with its reason line (to train a model to write it)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        splits = build(args.seed, args.size, args.extra)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    write(splits, args.out, reasons=args.reasons)
    for name, part in splits.items():
        labels = Counter(e.label for e in part)
        print(f"{name}: {len(part)} ({dict(sorted(labels.items()))})")  # noqa: T201
    print(f"wrote {args.out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
