"""Training checkpoints side by side on the hand-written dev posts, where models are chosen.

A training lever (LoRA on more layers, another schedule, a larger base) is judged by its
checkpoints at the same steps as the baseline run's, on the hand-written dev posts
(``training/handwritten/dev.yaml``, never trained on), uncalibrated. Each checkpoint is
applied to the base GGUF at run time by the serving engine, as the build's learning curve
does. The first run named is the baseline; every run's figures are printed with their
difference to the baseline's at the same step. No goal (exit 0).

    python bench/checkpoints.py RUN_DIR [RUN_DIR ...] [--steps 300 400] [--posts N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from artifacts.bases import fetch  # noqa: E402
from recipes.default_model import BASE, DEV_POSTS, HEADLINE, cell, checkpoint_figures  # noqa: E402
from training.evaluate import load_records  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; the first is the baseline")
    parser.add_argument("--steps", nargs="+", type=int, default=[300, 400])
    parser.add_argument("--posts", type=int, default=None, help="first N dev posts (default all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    records = load_records(DEV_POSTS)[: args.posts]
    base = fetch(BASE)
    print(f"{len(records)} hand-written dev posts, uncalibrated; columns: {', '.join(HEADLINE)}")
    with tempfile.TemporaryDirectory() as scratch:
        for step in args.steps:
            baseline = None
            for run in args.runs:
                checkpoint = run / f"checkpoint-{step}"
                if not checkpoint.is_dir():
                    print(f"step {step:5}  {run.name}: no checkpoint")
                    continue
                (row,) = checkpoint_figures(
                    base, checkpoint, [records], args.threads, Path(scratch)
                )
                baseline = baseline or row
                cells = "  ".join(
                    f"{cell(row[k])} ({row[k] - baseline[k]:+.3f})"
                    if row[k] is not None and baseline[k] is not None
                    else cell(row[k])
                    for k in HEADLINE
                )
                print(f"step {step:5}  {run.name}: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
