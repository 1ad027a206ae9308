"""How well ``algospeak.normalize`` decodes hand-written posts, against a naive normalizer.

Two sets of posts written by hand without looking at the lexicon or the rules, by different
writers: ``tests/data/normalizer_dev.yaml``, which the rules are tuned on, and
``tests/data/normalizer_handwritten.yaml``, never used to tune them, on which the goals are
judged. Each holds coded posts, each coded term with the plain words that would count as its
meaning, and safe posts that must come out unchanged. A term
counts as decoded when its coded spelling is gone from the output and one of its meanings is
there as whole words; a safe post counts as changed when the output differs at all. The naive
baseline (bench/normalize.py: one regex substitution per lexicon variant) is scored the same
way in the same run.

    python bench/normalize_quality.py [--goal-decoded 0.97] [--goal-changed 0.01] [--show 10]

Misses are printed for the dev set only: reading the test set's misses would be tuning on it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from algospeak import Normalizer, load_lexicon

sys.path.insert(0, str(Path(__file__).resolve().parent))
from normalize import naive  # the baseline of the throughput benchmark

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
DEV = DATA / "normalizer_dev.yaml"
TEST = DATA / "normalizer_handwritten.yaml"


def decoded(term: dict, output: str) -> bool:
    """The term's coded spelling is gone and one of its meanings is there, both as whole words
    ("mia" is gone from "bulimia"; a hyphen and a blank count as the same: "self-harm" is
    "self harm")."""
    lowered = output.lower().replace("-", " ")
    code = term["code"].lower().replace("-", " ")
    means = [m.replace("-", " ") for m in term["means"]]

    def has(words: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(words)}(?!\w)", lowered) is not None

    gone = code in means or not has(code)
    return gone and any(has(m) for m in means)


def score(normalize: Callable[[str], str], data: dict) -> tuple[float, float, list[str]]:
    """(share of coded terms decoded, share of safe posts changed, the misses)."""
    misses: list[str] = []
    terms = hits = 0
    for post in data["coded"]:
        output = normalize(post["text"])
        for term in post["terms"]:
            terms += 1
            if decoded(term, output):
                hits += 1
            else:
                misses.append(f"missed {term['code']!r} in {post['text']!r} -> {output!r}")
    changed = 0
    for text in data["safe"]:
        output = normalize(text)
        if output != text:
            changed += 1
            misses.append(f"changed {text!r} -> {output!r}")
    return hits / terms, changed / len(data["safe"]), misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=TEST, help="the set the goals are judged on")
    parser.add_argument("--dev", type=Path, default=DEV, help="the set the rules are tuned on")
    parser.add_argument("--goal-decoded", type=float, default=0.97)
    parser.add_argument("--goal-changed", type=float, default=0.01)
    parser.add_argument("--show", type=int, default=10, help="misses on the dev set to print")
    args = parser.parse_args(argv)

    lexicon = load_lexicon()
    normalizer = Normalizer(lexicon)
    systems = {
        "naive regex baseline": naive(lexicon),
        "algospeak": lambda text: normalizer.normalize(text).normalized,
    }
    results = {}
    for role, path in (("dev", args.dev), ("test", args.data)):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        terms = sum(len(post["terms"]) for post in data["coded"])
        print(
            f"{role} ({path.name}): {len(data['coded'])} coded posts ({terms} terms), "
            f"{len(data['safe'])} safe posts"
        )
        for name, normalize in systems.items():
            rate, changed, _ = results[role, name] = score(normalize, data)
            print(f"  {name:21}: decoded {rate:6.1%}, safe posts changed {changed:6.1%}")
    goals = f"decoded >= {args.goal_decoded:.0%}, changed <= {args.goal_changed:.0%}"
    print(f"goals on test        : {goals}")
    for miss in results["dev", "algospeak"][2][: args.show]:
        print("  dev " + miss)
    rate, changed, _ = results["test", "algospeak"]
    return 0 if rate >= args.goal_decoded and changed <= args.goal_changed else 1


if __name__ == "__main__":
    sys.exit(main())
