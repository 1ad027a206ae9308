"""What the normalizer's evidence is worth to the calibration, measured where it is chosen: on dev.

The model scores the dev posts the build calibrates on once, uncalibrated (as
``recipes.default_model`` does); then, in k-fold cross-validation over them, the calibration is
fitted on k-1 folds and decides the held-out fold, fitted with the evidence (as served) and
blind to it. Decisions are re-made from the uncalibrated answers by the scorer's ``decide``
(the severity is the one read after the uncalibrated top category, not re-read after a changed
one), so the label and category figures match the engine's. No goal: it shows the choice
(exit 0).

    python bench/calibration.py [--model PATH] [--examples 1000] [--folds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from artifacts.locations import default_model  # noqa: E402
from recipes.default_model import HEADLINE, cell, observe  # noqa: E402
from service.calibration import NO_EVIDENCE, Calibration  # noqa: E402
from service.engine import Engine  # noqa: E402
from service.scoring import decide  # noqa: E402
from training.calibrate import Observed, fit  # noqa: E402
from training.dataset import build, write  # noqa: E402
from training.evaluate import Scored, load_records, metrics, scored  # noqa: E402


def decided(calibration: Calibration, o: Observed, record: dict[str, Any]) -> Scored:
    """``record`` with the decision ``calibration`` makes from the uncalibrated answer ``o``."""
    answer = o.answer
    harmful = max(answer.label_scores["harmful"], 1e-300)

    def given_harmful(joint: dict[str, float]) -> dict[str, float]:
        return {value: p / harmful for value, p in joint.items() if value != "none"}

    decision = decide(
        calibration.labels(answer.label_scores, o.evidence),
        calibration.categories(given_harmful(answer.category_scores), o.evidence),
        given_harmful(answer.severity_scores),
        answer.tokens_evaluated,
    )
    return scored(record, decision)


def cross_validated(
    observed: list[Observed], records: list[dict[str, Any]], folds: int, blind: bool
) -> list[Scored]:
    """Each dev post decided by a calibration fitted on the other folds."""
    if blind:
        observed = [replace(o, evidence=NO_EVIDENCE) for o in observed]
    results = []
    for fold in range(folds):
        fitted = fit([o for i, o in enumerate(observed) if i % folds != fold])
        results += [
            decided(fitted, o, records[i]) for i, o in enumerate(observed) if i % folds == fold
        ]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help=f"GGUF (default: {default_model()})")
    parser.add_argument("--examples", type=int, default=1000, help="dev posts (as the build)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    model = args.model or default_model()
    with tempfile.TemporaryDirectory() as folder:
        write(build(), Path(folder))
        records = load_records(Path(folder) / "dev.jsonl")[: args.examples]
    engine = Engine(model, threads=args.threads, calibration=Calibration())
    try:
        observed = [observe(engine, r) for r in tqdm(records, desc="scoring dev", unit="text")]
    finally:
        engine.close()
    print(f"{model.name}: {len(observed)} dev posts, {args.folds}-fold cross-validation")
    print(f"{'calibration':22}" + "".join(f"{name:>30}" for name in HEADLINE))
    rows = {
        "none": [decided(Calibration(), o, r) for o, r in zip(observed, records, strict=True)],
        "blind to the evidence": cross_validated(observed, records, args.folds, blind=True),
        "with the evidence": cross_validated(observed, records, args.folds, blind=False),
    }
    for name, results in rows.items():
        figures = metrics(results)
        print(f"{name:22}" + "".join(f"{cell(figures[k]):>30}" for k in HEADLINE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
