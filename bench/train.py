"""Training throughput on this machine: the CPU preset and its alternatives, in one run.

Every variant trains the same SmolLM2 base on the same examples for the same number of steps;
the first step (allocations, warm-up) is not timed. Tokens are the examples' real tokens
(prompt and answer), so padding does not count as work done. Ratios are against the preset
measured in the same run, because these machines are shared and noisy.

    python bench/train.py [--steps 4] [--batch 8] [--variants preset,plain-lora,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.config import PRESETS, TrainConfig, load_config  # noqa: E402
from training.dataset import build, write  # noqa: E402
from training.train import build_trainer  # noqa: E402

PRESET = PRESETS / "smollm2-135m-cpu.yaml"
VARIANTS = {
    "preset": {},
    "qlora-4bit": {"load_in_4bit": True},
    "all-layers": {"lora_layers": None},
    "full-sequence-loss": {"completion_only_loss": False},
    "bf16": {"bf16": True},
    "gradient-checkpointing": {"gradient_checkpointing": True},
}


def throughput(config: TrainConfig) -> float:
    """Real tokens per second over every step after the first."""
    from transformers import TrainerCallback

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs) -> None:
            stamps.append(time.perf_counter())

    trainer = build_trainer(config).trainer
    trainer.add_callback(Stamp())
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    trainer.train()
    tokens = statistics.fmean(lengths) * config.batch_size * (len(stamps) - 1)
    return tokens / (stamps[-1] - stamps[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per variant (first untimed)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown or args.steps < 2:
        parser.error(f"unknown variants {sorted(unknown)}" if unknown else "--steps must be >= 2")
    preset = load_config(PRESET)
    print(
        f"preset {PRESET.name}: 4-bit={preset.load_in_4bit} bf16={preset.bf16} "
        f"completion-only={preset.completion_only_loss}"
    )
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        write(build(seed=5, size=600), data)
        for name in names:
            config = dataclasses.replace(
                preset,
                dataset=data,
                output_dir=Path(scratch) / name,
                max_steps=args.steps,
                batch_size=args.batch,
                max_examples=args.steps * args.batch,
                logging_steps=args.steps,
                save_steps=0,
                resume=False,
                **VARIANTS[name],
            )
            results[name] = throughput(config)
            print(f"{name:>20}: {results[name]:7.1f} tokens/s", flush=True)
    baseline = results.get("preset") or next(iter(results.values()))
    print("\nvariant               tokens/s   vs preset")
    for name, rate in results.items():
        print(f"{name:>20} {rate:9.1f} {rate / baseline:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
