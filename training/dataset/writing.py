"""Writing the splits: one JSONL record per example and the dataset card."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from algospeak.lexicon import load_lexicon
from algospeak.prompt import SYSTEM, build_messages, format_answer, user_content
from training.dataset.build import HANDWRITTEN_REPEATS
from training.dataset.examples import (
    HANDWRITTEN_FAMILY,
    SPLITS,
    Example,
    Splits,
    normalization_of,
)


def record(example: Example, *, reasons: bool = False) -> dict[str, Any]:
    """The JSONL record of ``example``: the original design's fields, chat messages and the
    example's ``reason``. The assistant message is the answer line, followed by the reason
    line only when ``reasons``; ``response`` is always the answer line alone."""
    normalization = normalization_of(example.text)
    answer = format_answer(example.answer)
    messages = build_messages(normalization)
    content = format_answer(example.answer, example.reason) if reasons else answer
    messages.append({"role": "assistant", "content": content})
    return {
        "instruction": SYSTEM,
        "input": user_content(normalization),
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


def _handwritten_note(splits: Splits) -> list[str]:
    """The card's sentence on the hand-written training posts, if train holds any."""
    rows = sum(e.family == HANDWRITTEN_FAMILY for e in splits.train)
    if not rows:
        return []
    return [
        f"Train also holds {rows // HANDWRITTEN_REPEATS} posts written by hand "
        f"(`training/handwritten/train.yaml`, family `{HANDWRITTEN_FAMILY}`), "
        f"{HANDWRITTEN_REPEATS} times each."
    ]


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
        *_handwritten_note(splits),
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
