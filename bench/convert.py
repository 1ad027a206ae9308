"""Wall time and peak memory of each conversion step on SmolLM2-135M, and the file sizes.

Each step runs as its own process through the real command line (``python -m conversion
STEP``), so its peak resident memory is that process's own (``wait4``'s ``ru_maxrss``, which
includes the converter subprocess it waits for). The adapter is trained for a couple of steps
first (plain LoRA, CPU) unless ``--adapter`` names one.

    python bench/convert.py [--adapter DIR] [--work DIR] [--threads 2] [--samples 24]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conversion.quantize import QUANTIZATIONS
from training.config import PRESETS

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Step:
    name: str
    seconds: float
    peak_mb: float
    output: Path | None = None
    note: str = ""


def run(name: str, command: list[str], output: Path | None = None) -> tuple[Step, str]:
    """Run ``command``, returning its timing and peak memory, and its stdout."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read().decode(), stderr.read().decode()
    if process.returncode != 0:
        sys.exit(f"{name} failed (exit {process.returncode}):\n{err[-3000:]}")
    return Step(name, seconds, usage.ru_maxrss / 1024, output), out


def size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return path.stat().st_size / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, help="an adapter folder (default: train one)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=24, help="texts per verification")
    parser.add_argument("--train-steps", type=int, default=2)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-convert-"))
    python = sys.executable
    steps: list[Step] = []

    adapter = args.adapter
    if adapter is None:
        data = work / "data"
        run("dataset", [python, "-m", "training.dataset", "build", "--out", str(data)])
        preset = PRESETS / "smollm2-135m-cpu.yaml"
        command = [python, "-m", "training.train", "--config", str(preset), "--no-4bit"]
        command += [f"dataset={data}", f"output_dir={work / 'run'}", "batch_size=2"]
        command += [f"max_steps={args.train_steps}", "logging_steps=1"]
        step, out = run("train (not a conversion step)", command)
        adapter = Path(out.strip().splitlines()[-1])
        step.output, step.note = adapter, f"LoRA r=16, {args.train_steps} steps"
        steps.append(step)

    conversion = [python, "-m", "conversion"]
    merged, f16 = work / "merged", work / "algospeak-f16.gguf"
    step, _ = run(
        "merge",
        [*conversion, "merge", "--adapter", str(adapter), "--out", str(merged), "--force"],
        merged,
    )
    steps.append(step)
    command = [*conversion, "convert", "--model", str(merged), "--out", str(f16)]
    step, _ = run("convert (f16)", command, f16)
    steps.append(step)
    quantized = {}
    for kind in QUANTIZATIONS:
        target = work / f"algospeak-{kind}.gguf"
        command = [*conversion, "quantize", "--gguf", str(f16), "--type", kind]
        command += ["--out", str(target), "--threads", str(args.threads)]
        step, out = run(f"quantize {kind}", command, target)
        types = json.loads(out)["tensor_types"]
        step.note = ", ".join(f"{n} {t}" for t, n in types.items())
        quantized[kind] = target
        steps.append(step)
    for kind, target in quantized.items():
        command = [*conversion, "verify", "--gguf", str(target), "--hf", str(merged)]
        command += ["--samples", str(args.samples), "--threads", str(args.threads)]
        command += ["--device", "cpu", "--threshold", "0"]
        step, out = run(f"verify {kind}", command)
        report = json.loads(out)
        step.note = (
            f"{report['samples']} texts: labels {report['label_agreement']:.0%}, categories "
            f"{report['category_agreement']:.0%}, max |dP| {report['max_label_diff']:.3f}"
        )
        steps.append(step)
    modelfile = work / "Modelfile"
    command = [*conversion, "ollama", "--gguf", str(quantized["Q4_K_M"]), "--out", str(modelfile)]
    step, _ = run("ollama Modelfile", command, modelfile)
    steps.append(step)

    print(f"SmolLM2-135M-Instruct, {args.threads} threads, work folder {work}\n")
    header = f"{'step':<30} {'wall s':>7} {'peak MB':>8} {'output MB':>10}  notes"
    print(header)
    print("-" * len(header))
    for step in steps:
        size = f"{size_mb(step.output):10.1f}" if step.output else f"{'':>10}"
        print(f"{step.name:<30} {step.seconds:7.1f} {step.peak_mb:8.0f} {size}  {step.note}")
    print("\nfile sizes")
    for path in (f16, *quantized.values()):
        print(f"  {path.name:<26} {size_mb(path):7.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
