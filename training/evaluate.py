"""Evaluation of a served model on a dataset split, through the service's own engine.

``python -m training.evaluate --model MODEL.gguf --data models/dataset/test.jsonl --out DIR``
(or ``--hf BASE [--adapter DIR]`` for a Hugging Face model, scored the same way)
writes ``metrics.json`` and ``report.md``: harmful precision/recall/F1, category accuracy on
harmful items, severity accuracy on harmful items and severity mean absolute error (ordinal,
over all items), the false-positive rate on safe items, accuracy on prompt-injection texts,
calibration (ECE) and confusion matrices, plus ``confusion.png`` and ``reliability.png``. The
GGUF is scored by ``service.engine`` (no web layer), so the number measured here is the number
served. ``score_with`` takes any classifier with the engine's ``classify`` signature, so another
scorer (an HF model with an adapter) reuses the same metrics and report.
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
from typing import Any, Protocol

from algospeak import Normalization, normalize
from algospeak.taxonomy import CATEGORIES, LABELS, SEVERITIES
from service.calibration import Calibration
from service.engine import Engine
from service.scoring import Classification
from training import plots
from training.hf_base import resolve_base
from training.hf_scorer import HFScorer

logger = logging.getLogger(__name__)
_BINS = 10
# The ordinal position of each severity, for the mean absolute error (none=0 ... extreme=4).
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


class Classifier(Protocol):
    """What evaluation needs from a model: the engine's ``classify`` signature."""

    def classify(self, text: str, normalization: Normalization) -> Classification: ...


@dataclass(frozen=True, slots=True)
class Scored:
    """One example with the model's answer."""

    label: str
    category: str
    severity: str
    predicted_label: str
    predicted_category: str
    predicted_severity: str
    confidence: float
    family: str
    tags: tuple[str, ...] = ()  # hand-written sets: what kind of post it is ("injection", ...)

    @property
    def injection(self) -> bool:
        return self.family.startswith("injection") or "injection" in self.tags


def score_with(classifier: Classifier, records: list[dict[str, Any]]) -> list[Scored]:
    """Classify every record with ``classifier``, in order; one ``Scored`` per record.

    Records are dataset rows (``text``, ``label``, ``category``, ``severity`` and optionally
    ``provenance.family`` or ``tags``); the classifier sees the text and its normalization, as
    served.
    """
    results = []
    for record in _progress(records):
        results.append(
            scored(record, classifier.classify(record["text"], normalize(record["text"])))
        )
    return results


def scored(record: dict[str, Any], answer: Classification) -> Scored:
    """A record (as ``score_with`` takes them) with ``answer`` for it."""
    return Scored(
        label=record["label"],
        category=record["category"],
        severity=record["severity"],
        predicted_label=answer.label,
        predicted_category=answer.category,
        predicted_severity=answer.severity,
        confidence=answer.confidence,
        family=(record.get("provenance") or {}).get("family", ""),
        tags=tuple(record.get("tags") or ()),
    )


def score(
    model: Path,
    records: list[dict[str, Any]],
    threads: int,
    calibration: Calibration | None = None,
) -> list[Scored]:
    """Classify every record with the engine that serves ``model`` (closed afterwards), its
    probabilities calibrated as ``calibration`` says (default: as the model's manifest says)."""
    engine = Engine(model, threads=threads, calibration=calibration)
    try:
        return score_with(engine, records)
    finally:
        engine.close()


def metrics(results: list[Scored]) -> dict[str, Any]:
    """The report's numbers for ``results`` (fractions in [0, 1]; None where undefined)."""
    tp = sum(r.label == r.predicted_label == "harmful" for r in results)
    fp = sum(r.label == "safe" and r.predicted_label == "harmful" for r in results)
    fn = sum(r.label == "harmful" and r.predicted_label == "safe" for r in results)
    harmful = [r for r in results if r.label == "harmful"]
    safe = [r for r in results if r.label == "safe"]
    injections = [r for r in results if r.injection]
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
        "severity_accuracy_on_harmful": _ratio(
            sum(r.severity == r.predicted_severity for r in harmful), len(harmful)
        ),
        # Over all items: calling a safe post "high" is an error of 3 steps too.
        "severity_mae": severity_mean_absolute_error(results),
        "false_positive_rate_on_safe": _ratio(fp, len(safe)),
        "injection_accuracy": _ratio(
            sum(r.label == r.predicted_label for r in injections), len(injections)
        ),
        "ece": expected_calibration_error(results),
        "reliability": reliability(results),
        "label_confusion": _confusion(results, "label", "predicted_label", LABELS),
        "category_confusion": _confusion(results, "category", "predicted_category", CATEGORIES),
        "severity_confusion": _confusion(results, "severity", "predicted_severity", SEVERITIES),
        "by_category": by_category(results),
        "by_tag": by_tag(results),
    }


def by_category(results: list[Scored]) -> dict[str, dict[str, Any]]:
    """Per true category: how many, the share labelled harmful (recall for harm categories,
    the false-positive rate for ``none``) and the share whose category is right."""
    table = {}
    for category in CATEGORIES:
        group = [r for r in results if r.category == category]
        if group:
            table[category] = {
                "count": len(group),
                "flagged": _ratio(sum(r.predicted_label == "harmful" for r in group), len(group)),
                "category_accuracy": _ratio(
                    sum(r.predicted_category == category for r in group), len(group)
                ),
            }
    return table


def by_tag(results: list[Scored]) -> dict[str, dict[str, Any]]:
    """Per tag (hand-written sets) or family (generated splits): how many, and the share
    labelled right."""
    groups: dict[str, list[Scored]] = {}
    for r in results:
        for tag in r.tags or ((r.family,) if r.family else ()):
            groups.setdefault(tag, []).append(r)
    return {
        tag: {
            "count": len(group),
            "label_accuracy": _ratio(sum(r.label == r.predicted_label for r in group), len(group)),
        }
        for tag, group in sorted(groups.items())
    }


def load_records(path: Path) -> list[dict[str, Any]]:
    """The records of a dataset split (JSONL) or of a hand-written set (YAML with ``posts``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return list(yaml.safe_load(text)["posts"])
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def severity_mean_absolute_error(results: list[Scored]) -> float | None:
    """Mean distance between true and predicted severity on the ordinal scale
    none < low < medium < high < extreme (0 to 4 steps); None for no results."""
    if not results:
        return None
    distance = sum(abs(_RANK[r.severity] - _RANK[r.predicted_severity]) for r in results)
    return distance / len(results)


def reliability(results: list[Scored]) -> list[dict[str, Any]]:
    """The label confidence in 10 equal-width bins: each bin's bounds, count, label accuracy and
    mean confidence (both None for an empty bin). Confidence 1.0 falls in the last bin."""
    members: list[list[Scored]] = [[] for _ in range(_BINS)]
    for r in results:
        members[min(int(r.confidence * _BINS), _BINS - 1)].append(r)
    return [
        {
            "lower": index / _BINS,
            "upper": (index + 1) / _BINS,
            "count": len(group),
            "accuracy": _ratio(sum(r.label == r.predicted_label for r in group), len(group)),
            "confidence": sum(r.confidence for r in group) / len(group) if group else None,
        }
        for index, group in enumerate(members)
    ]


def expected_calibration_error(results: list[Scored]) -> float | None:
    """ECE of the label confidence over 10 equal-width bins (None for no results)."""
    if not results:
        return None
    return sum(
        b["count"] / len(results) * abs(b["accuracy"] - b["confidence"])
        for b in reliability(results)
        if b["count"]
    )


def report(figures: dict[str, Any], title: str, images: dict[str, str] | None = None) -> str:
    """A Markdown report of ``figures``: the scalar metrics, the confusion matrices as tables,
    and links to ``images`` (caption -> path relative to the report) when given."""
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key, value in figures.items():
        if not isinstance(value, dict | list):
            lines.append(f"| {key} | {_shown(value)} |")
    for name, columns in (
        ("by_category", ("count", "flagged", "category_accuracy")),
        ("by_tag", ("count", "label_accuracy")),
    ):
        if figures.get(name):
            lines += ["", f"## {name}", "", f"| {name[3:]} | " + " | ".join(columns) + " |"]
            lines.append("|---" * (len(columns) + 1) + "|")
            for key, row in figures[name].items():
                lines.append(f"| {key} | " + " | ".join(_shown(row[c]) for c in columns) + " |")
    for name in ("label_confusion", "category_confusion", "severity_confusion"):
        matrix = figures[name]
        columns = list(next(iter(matrix.values())))
        lines += ["", f"## {name} (rows: truth, columns: prediction)", ""]
        lines.append("| | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for truth, row in matrix.items():
            lines.append(f"| {truth} | " + " | ".join(str(row[c]) for c in columns) + " |")
    if images:
        lines += ["", "## Plots", ""]
        for caption, path in images.items():
            lines += [f"![{caption}]({path})", ""]
        lines.pop()
    return "\n".join(lines) + "\n"


def write_outputs(figures: dict[str, Any], out: Path, title: str) -> dict[str, Path]:
    """Write ``metrics.json``, the PNGs and ``report.md`` into ``out`` (created); returns them by
    name. Without matplotlib the PNGs are skipped with a warning and the report has no plots."""
    out.mkdir(parents=True, exist_ok=True)
    written = {"metrics": out / "metrics.json"}
    written["metrics"].write_text(json.dumps(figures, indent=2), encoding="utf-8")
    images: dict[str, str] = {}
    try:
        plots.confusion_png(
            figures["category_confusion"], figures["label_confusion"], out / "confusion.png"
        )
        plots.reliability_png(figures["reliability"], figures["ece"], out / "reliability.png")
    except ImportError:
        logger.warning("matplotlib is not installed (the train extra brings it): no PNGs")
    else:
        written |= {"confusion": out / "confusion.png", "reliability": out / "reliability.png"}
        images = {"confusion matrices": "confusion.png", "reliability diagram": "reliability.png"}
    written["report"] = out / "report.md"
    written["report"].write_text(report(figures, title, images), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a model on a dataset split.")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="a GGUF, scored by the serving engine")
    model.add_argument("--hf", help="a Hugging Face model (folder, catalog name or Hub id)")
    parser.add_argument("--adapter", type=Path, help="a peft adapter on top of --hf")
    parser.add_argument(
        "--data", type=Path, required=True, help="a split (test.jsonl) or a hand-written YAML set"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="evaluate only the first N examples")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.adapter and not args.hf:
        parser.error("--adapter goes with --hf")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    records = load_records(args.data)[: args.limit]
    if args.model:
        name = args.model.name
        results = score(args.model, records, args.threads)
    else:
        name = args.hf + (f" + {args.adapter.name}" if args.adapter else "")
        scorer = HFScorer(resolve_base(args.hf), adapter=args.adapter, threads=args.threads)
        results = score_with(scorer, records)
    title = f"{name} on {args.data.name} ({len(records)} examples)"
    written = write_outputs(metrics(results), args.out, title)
    print(written["report"])  # noqa: T201 - the CLI's result, for scripts
    return 0


def _shown(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


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
