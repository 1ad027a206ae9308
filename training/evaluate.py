"""Evaluation of a served model on a dataset split, through the service's own engine.

``python -m training.evaluate --model MODEL.gguf --data models/dataset/test.jsonl --out DIR``
writes ``metrics.json`` and ``report.md``: harmful precision/recall/F1, category accuracy on
harmful items, the false-positive rate on safe items, accuracy on prompt-injection texts,
calibration (ECE) and confusion matrices. The GGUF is scored by ``service.engine`` (no web
layer), so the number measured here is the number served.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algospeak import normalize
from algospeak.taxonomy import CATEGORIES

logger = logging.getLogger(__name__)
_BINS = 10


@dataclass(frozen=True, slots=True)
class Scored:
    """One example with the model's answer."""

    label: str
    category: str
    predicted_label: str
    predicted_category: str
    confidence: float
    family: str


def score(model: Path, records: list[dict[str, Any]], threads: int) -> list[Scored]:
    """Classify every record with the engine that serves ``model``."""
    from service.engine import Engine

    engine = Engine(model, threads=threads, context=2048)
    try:
        results = []
        for record in _progress(records):
            answer = engine.classify(record["text"], normalize(record["text"]))
            results.append(
                Scored(
                    label=record["label"],
                    category=record["category"],
                    predicted_label=answer.label,
                    predicted_category=answer.category,
                    confidence=answer.confidence,
                    family=record.get("provenance", {}).get("family", ""),
                )
            )
        return results
    finally:
        engine.close()


def metrics(results: list[Scored]) -> dict[str, Any]:
    """The report's numbers for ``results`` (fractions in [0, 1]; None where undefined)."""
    tp = sum(r.label == r.predicted_label == "harmful" for r in results)
    fp = sum(r.label == "safe" and r.predicted_label == "harmful" for r in results)
    fn = sum(r.label == "harmful" and r.predicted_label == "safe" for r in results)
    harmful = [r for r in results if r.label == "harmful"]
    safe = [r for r in results if r.label == "safe"]
    injections = [r for r in results if r.family.startswith("injection")]
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = (
        None
        if precision is None or recall is None or precision + recall == 0
        else 2 * precision * recall / (precision + recall)
    )
    return {
        "examples": len(results),
        "harmful_precision": precision,
        "harmful_recall": recall,
        "harmful_f1": f1,
        "label_accuracy": _ratio(sum(r.label == r.predicted_label for r in results), len(results)),
        "category_accuracy_on_harmful": _ratio(
            sum(r.category == r.predicted_category for r in harmful), len(harmful)
        ),
        "false_positive_rate_on_safe": _ratio(fp, len(safe)),
        "injection_accuracy": _ratio(
            sum(r.label == r.predicted_label for r in injections), len(injections)
        ),
        "ece": expected_calibration_error(results),
        "label_confusion": _confusion(results, "label", "predicted_label", ("harmful", "safe")),
        "category_confusion": _confusion(results, "category", "predicted_category", CATEGORIES),
    }


def expected_calibration_error(results: list[Scored]) -> float | None:
    """ECE of the label confidence over 10 equal-width bins."""
    if not results:
        return None
    bins: dict[int, list[Scored]] = {}
    for r in results:
        bins.setdefault(min(int(r.confidence * _BINS), _BINS - 1), []).append(r)
    total = 0.0
    for members in bins.values():
        accuracy = sum(r.label == r.predicted_label for r in members) / len(members)
        confidence = sum(r.confidence for r in members) / len(members)
        total += len(members) / len(results) * abs(accuracy - confidence)
    return total


def report(figures: dict[str, Any], title: str) -> str:
    """A Markdown report of ``figures``."""
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key, value in figures.items():
        if not isinstance(value, dict):
            shown = (
                "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else value)
            )
            lines.append(f"| {key} | {shown} |")
    for name in ("label_confusion", "category_confusion"):
        matrix = figures[name]
        columns = list(next(iter(matrix.values())))
        lines += ["", f"## {name} (rows: truth, columns: prediction)", ""]
        lines.append("| | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for truth, row in matrix.items():
            lines.append(f"| {truth} | " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a GGUF on a dataset split.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a split, e.g. test.jsonl")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="evaluate only the first N examples")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with args.data.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle][: args.limit]
    figures = metrics(score(args.model, records, args.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    title = f"{args.model.name} on {args.data.name} ({len(records)} examples)"
    (args.out / "report.md").write_text(report(figures, title), encoding="utf-8")
    print(args.out / "report.md")  # noqa: T201 - the CLI's result, for scripts
    return 0


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _confusion(
    results: list[Scored], truth: str, predicted: str, values: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    counts = Counter((getattr(r, truth), getattr(r, predicted)) for r in results)
    return {t: {p: counts[(t, p)] for p in values} for t in values}


def _progress(records: list[dict[str, Any]]) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # the train extra brings tqdm; without it, no bar
        return records
    return tqdm(records, desc="evaluating", unit="text")


if __name__ == "__main__":
    sys.exit(main())
