"""Where the calibration is fitted and what the normalizer's evidence is worth to it, measured
where it is chosen: on the hand-written dev posts (``training/handwritten/dev.yaml``).

The model scores, uncalibrated (as ``recipes.default_model`` does), the hand-written dev posts
and the first posts of the template dev split. Each hand-written post is then decided by: no
calibration; a calibration fitted on the template dev posts; and, in k-fold cross-validation,
one fitted on the other hand-written folds (as served: the build fits on all of them). Each
fitted with the evidence and blind to it. Decisions are re-made from the uncalibrated answers
by the scorer's ``decide`` (the severity is the one read after the uncalibrated top category,
not re-read after a changed one), so the label and category figures match the engine's. No
goal: it shows the choice (exit 0).

    python bench/calibration.py [--model PATH] [--examples 1000] [--posts N] [--folds 5]
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
from recipes.default_model import DEV_POSTS, HEADLINE, cell, observe  # noqa: E402
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
    observed: list[Observed],
    records: list[dict[str, Any]],
    folds: int,
    blind: bool,
    also: list[Observed] | None = None,
) -> list[Scored]:
    """Each post decided by a calibration fitted on the other folds; on ``also`` instead
    (other posts, none of the folds) when given."""
    if blind:
        observed = [replace(o, evidence=NO_EVIDENCE) for o in observed]
        also = also and [replace(o, evidence=NO_EVIDENCE) for o in also]
    fitted_on_also = fit(also) if also else None
    results = []
    for fold in range(folds):
        fitted = fitted_on_also or fit([o for i, o in enumerate(observed) if i % folds != fold])
        results += [
            decided(fitted, o, records[i]) for i, o in enumerate(observed) if i % folds == fold
        ]
    return results


def observe_all(engine: Engine, records: list[dict[str, Any]], what: str) -> list[Observed]:
    return [observe(engine, r) for r in tqdm(records, desc=f"scoring {what}", unit="text")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help=f"GGUF (default: {default_model()})")
    parser.add_argument("--examples", type=int, default=1000, help="template dev posts")
    parser.add_argument("--posts", type=int, help="hand-written dev posts (default: all)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    model = args.model or default_model()
    with tempfile.TemporaryDirectory() as folder:
        write(build(), Path(folder))
        template_dev = load_records(Path(folder) / "dev.jsonl")[: args.examples]
    records = load_records(DEV_POSTS)[: args.posts]
    engine = Engine(model, threads=args.threads, calibration=Calibration())
    try:
        observed = observe_all(engine, records, "hand-written dev")
        templates = observe_all(engine, template_dev, "template dev")
    finally:
        engine.close()
    print(
        f"{model.name}: {len(observed)} hand-written dev posts; calibrations fitted on "
        f"{len(templates)} template dev posts, or on the other folds of {args.folds}"
    )
    print(f"{'calibration':44}" + "".join(f"{name:>30}" for name in HEADLINE))
    rows = {"none": [decided(Calibration(), o, r) for o, r in zip(observed, records, strict=True)]}
    for source, also in (("template dev", templates), ("hand-written dev", None)):
        for blind in (True, False):
            name = f"{source}, {'blind to' if blind else 'with'} the evidence"
            rows[name] = cross_validated(observed, records, args.folds, blind, also)
    for name, results in rows.items():
        figures = metrics(results)
        print(f"{name:44}" + "".join(f"{cell(figures[k]):>30}" for k in HEADLINE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
