"""How well ``algospeak.normalize`` decodes hand-written posts, against a naive normalizer.

``tests/data/normalizer_handwritten.yaml`` holds posts written by hand without looking at the
lexicon or the rules, never used to tune them: coded posts, each coded term with the plain
words that would count as its meaning, and safe posts that must come out unchanged. A term
counts as decoded when its coded spelling is gone from the output and one of its meanings is
there as whole words; a safe post counts as changed when the output differs at all. The naive
baseline (bench/normalize.py: one regex substitution per lexicon variant) is scored the same
way in the same run.

    python bench/normalize_quality.py [--goal-decoded 0.97] [--goal-changed 0.01] [--show 10]
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

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "normalizer_handwritten.yaml"


def decoded(term: dict, output: str) -> bool:
    """The term's coded spelling is gone and one of its meanings is there, as whole words."""
    lowered = output.lower()
    code = term["code"].lower()
    gone = code in term["means"] or code not in lowered
    return gone and any(re.search(rf"(?<!\w){re.escape(m)}(?!\w)", lowered) for m in term["means"])


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
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--goal-decoded", type=float, default=0.97)
    parser.add_argument("--goal-changed", type=float, default=0.01)
    parser.add_argument("--show", type=int, default=10, help="misses to print")
    args = parser.parse_args(argv)

    data = yaml.safe_load(args.data.read_text(encoding="utf-8"))
    lexicon = load_lexicon()
    normalizer = Normalizer(lexicon)
    ours = score(lambda text: normalizer.normalize(text).normalized, data)
    baseline = score(naive(lexicon), data)
    terms = sum(len(post["terms"]) for post in data["coded"])
    print(f"{len(data['coded'])} coded posts ({terms} terms), {len(data['safe'])} safe posts")
    for name, (rate, changed, _) in (("naive regex baseline", baseline), ("algospeak", ours)):
        print(f"{name:21}: decoded {rate:6.1%}, safe posts changed {changed:6.1%}")
    goals = f"decoded >= {args.goal_decoded:.0%}, changed <= {args.goal_changed:.0%}"
    print(f"goals                : {goals}")
    for miss in ours[2][: args.show]:
        print("  " + miss)
    return 0 if ours[0] >= args.goal_decoded and ours[1] <= args.goal_changed else 1


if __name__ == "__main__":
    sys.exit(main())
