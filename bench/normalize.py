"""Throughput of ``algospeak.normalize`` against a naive normalizer, measured in one run.

The naive baseline is how simple normalizers work: one case-insensitive regex substitution
per lexicon variant, applied in turn. Both run over the same seeded corpus of short posts
(plain chatter, posts with codes, disguised codes, look-alikes), interleaved in rounds so
machine noise hits both alike. The figure that matters is the ratio.

    python bench/normalize.py [--texts 2000] [--rounds 5] [--goal 5]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from collections.abc import Callable

from algospeak import Lexicon, Normalizer, load_lexicon

PLAIN = [
    "just finished my shift, heading home now",
    "anyone watching the game tonight? that last quarter was wild",
    "new recipe: grilled corn with lime and chili butter",
    "my accountant says I owe taxes again this year",
    "send me the contract as a pdf file when you can",
    "kill the process with ctrl+c and restart the server",
    "grape juice stains are impossible to get out of white shirts",
    "we got a foot of snow overnight, school is cancelled",
    "happy birthday!! hope your day is amazing 🎉",
    "this thread is a goldmine, thanks everyone",
    "the character got written out in episode 3 and I'm still sad",
    "selling my old bike, dm me if interested",
]
TEMPLATES = [
    "honestly I just want to {code} at this point",
    "the character got {code} in episode 3",
    "dm me for the {code}, link in bio",
    "he kept talking about {code} and nobody stopped him",
    "new {code} drop for subscribers tonight",
    "if you're thinking about {code}, please call 988",
    "lol {code} is trending again",
]


def corpus(lexicon: Lexicon, size: int, seed: int = 7) -> list[str]:
    """Seeded mix: half plain posts, half posts carrying a (sometimes disguised) code."""
    rng = random.Random(seed)
    variants = [v for entry in lexicon.codes for v in entry.variants]
    texts = []
    for i in range(size):
        if i % 2 == 0:
            texts.append(rng.choice(PLAIN))
            continue
        code = rng.choice(variants)
        disguise = rng.randrange(4)
        if disguise == 1:
            code = " ".join(code)
        elif disguise == 2:
            code = code.replace("a", "@").replace("e", "3").replace("i", "1")
        elif disguise == 3:
            code = code.upper()
        texts.append(rng.choice(TEMPLATES).format(code=code))
    return texts


def naive(lexicon: Lexicon) -> Callable[[str], str]:
    """One compiled case-insensitive regex per variant, substituted one after another."""
    rules = [
        (re.compile(rf"(?<!\w){re.escape(variant)}(?!\w)", re.IGNORECASE), replacement)
        for entry in lexicon.entries
        for variant, replacement in entry.variants.items()
    ]

    def run(text: str) -> str:
        for pattern, replacement in rules:
            text = pattern.sub(replacement, text)
        return text

    return run


def throughput(function: Callable[[str], object], texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        function(text)
    return len(texts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000, help="corpus size")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measuring rounds")
    parser.add_argument("--goal", type=float, default=5.0, help="required speed-up")
    args = parser.parse_args(argv)

    lexicon = load_lexicon()
    texts = corpus(lexicon, args.texts)
    ours = Normalizer(lexicon).normalize
    baseline = naive(lexicon)
    ours(texts[0]), baseline(texts[0])  # warm caches outside the timing
    ours_rates, baseline_rates = [], []
    for _ in range(args.rounds):
        ours_rates.append(throughput(ours, texts))
        baseline_rates.append(throughput(baseline, texts))
    ours_rate = statistics.median(ours_rates)
    baseline_rate = statistics.median(baseline_rates)
    ratio = ours_rate / baseline_rate
    variants = sum(len(e.variants) for e in lexicon.entries)
    print(f"lexicon {lexicon.version}: {len(lexicon.codes)} codes, {variants} variants")
    print(f"corpus: {len(texts)} texts, median of {args.rounds} interleaved rounds")
    print(f"naive regex baseline : {baseline_rate:10.0f} texts/s")
    print(f"algospeak.normalize  : {ours_rate:10.0f} texts/s")
    print(f"speed-up             : {ratio:10.1f}x (goal >= {args.goal:g}x)")
    return 0 if ratio >= args.goal else 1


if __name__ == "__main__":
    sys.exit(main())
