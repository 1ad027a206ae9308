"""Building the splits: sampling distinct posts, holding families and entries out of train.

Whole families and ~10% of the lexicon entries used are held out of train, so the test split
(only examples with an unseen family or entry) measures generalization.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from training.dataset.examples import SPLITS, DatasetError, Example, Splits, dedup_key
from training.dataset.templates import TEMPLATES, Family, generate, load_templates
from training.dataset.user_data import load_extra, load_handwritten

log = logging.getLogger(__name__)

DEFAULT_SEED = 13
DEFAULT_SIZE = 25000
# Share of lexicon entries (among those the templates use) held out of train.
HELD_OUT_ENTRY_SHARE = 0.10
# Share of seen examples sent to dev, so dev also measures in-distribution fit.
DEV_SEEN_SHARE = 0.06
# Share of unseen examples that go to test (the rest go to dev).
TEST_UNSEEN_SHARE = 0.6
# Posts written by hand for training: real-sounding posts, ordinary ones among them, that
# templates do not produce. All go to train (dev and test stay template-made; the hand-written
# dev and evaluation sets are separate files).
HANDWRITTEN_TRAIN = Path(__file__).resolve().parent.parent / "handwritten" / "train.yaml"
# Each hand-written post is in train this many times: a run sees under half of train, so a
# post there once would mostly go unseen among ~17,000 template posts.
HANDWRITTEN_REPEATS = 3


def build(
    seed: int = DEFAULT_SEED,
    size: int = DEFAULT_SIZE,
    extra: Iterable[Path] = (),
    handwritten: Path | None = HANDWRITTEN_TRAIN,
) -> Splits:
    """Build the splits. The same ``(seed, size, extra, handwritten)`` always gives the same
    splits.

    Generates about ``size`` distinct examples (deduplicated on normalized text + label),
    holds out families and entries from train, and adds the ``handwritten`` posts
    (``HANDWRITTEN_REPEATS`` times each) and valid ``extra`` rows to train.
    Raises DatasetError for bad templates, hand-written or extra files.
    """
    if size < 1:
        raise DatasetError(f"size must be positive, got {size}")
    slots, families = load_templates(TEMPLATES)
    written = load_handwritten(handwritten) if handwritten else []
    extras = [example for path in extra for example in load_extra(Path(path))]
    held_families = _held_out_families(families, random.Random(f"{seed}:families"))
    held_entries = _held_out_entries(families, random.Random(f"{seed}:entries"))

    examples = _sample(families, slots, seed, size)
    seen_keys = {dedup_key(e) for e in examples}
    kept_written = _new(written, seen_keys, "hand-written posts")
    kept_extras = _new(extras, seen_keys, "extra rows")

    split_rng = random.Random(f"{seed}:split")
    parts: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for example in examples:
        unseen = example.family in held_families or example.entry in held_entries
        if unseen:
            parts["test" if split_rng.random() < TEST_UNSEEN_SHARE else "dev"].append(example)
        else:
            parts["dev" if split_rng.random() < DEV_SEEN_SHARE else "train"].append(example)
    parts["train"] += kept_written * HANDWRITTEN_REPEATS + kept_extras
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


def _new(examples: list[Example], seen_keys: set[tuple[str, str]], what: str) -> list[Example]:
    """``examples`` without duplicates of one another or of ``seen_keys`` (which grows)."""
    kept = []
    for example in examples:
        if dedup_key(example) not in seen_keys:
            seen_keys.add(dedup_key(example))
            kept.append(example)
    if len(kept) < len(examples):
        log.warning("dropped %d duplicate %s", len(examples) - len(kept), what)
    return kept


def _held_out_families(families: Sequence[Family], rng: random.Random) -> set[str]:
    """A quarter (at least one) of each group of three or more alternatives, never the last
    train family with its (label, category, severity)."""
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
            # Train must keep every (label, category, severity), or the model never learns it.
            candidates = [
                i
                for i in ids
                if i not in held
                and any(
                    (f.label, f.category, f.severity)
                    == (by_id[i].label, by_id[i].category, by_id[i].severity)
                    for f in families
                    if f.id != i and f.id not in held
                )
            ]
            if candidates:
                held.add(rng.choice(candidates))
    return held


def _held_out_entries(families: Sequence[Family], rng: random.Random) -> set[str]:
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
    families: Sequence[Family], slots: dict[str, list[str]], seed: int, size: int
) -> list[Example]:
    """``size`` distinct examples (fewer only if the templates run out), shared among the
    families by weight; a family that runs out of distinct posts leaves its share to others."""
    total_weight = sum(f.weight for f in families)
    rngs = {f.id: random.Random(f"{seed}:{f.id}") for f in families}
    turns = Counter[str]()
    seen: set[tuple[str, str]] = set()
    out: list[Example] = []

    def draw(family: Family, attempts: int) -> bool:
        for _ in range(attempts):
            example = generate(family, slots, rngs[family.id], turns[family.id])
            key = dedup_key(example)
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
