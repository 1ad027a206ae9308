"""Evaluation: the metrics' arithmetic, the figures, and a real run of the served GGUF on a
built split."""

import json
import math
import sys
from pathlib import Path

import pytest

from training.evaluate import (
    Scored,
    expected_calibration_error,
    main,
    metrics,
    reliability,
    score_with,
    severity_mean_absolute_error,
    write_outputs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scored(
    label,
    category,
    predicted,
    predicted_category,
    confidence=0.9,
    family="x",
    severity=None,
    predicted_severity=None,
) -> Scored:
    """A result whose severities default to what the labels imply (none for safe, else high)."""
    severity = severity or ("none" if label == "safe" else "high")
    predicted_severity = predicted_severity or ("none" if predicted == "safe" else "high")
    return Scored(
        label,
        category,
        severity,
        predicted,
        predicted_category,
        predicted_severity,
        confidence,
        family,
    )


def assert_png(path: Path, min_bytes: int = 5_000) -> tuple[int, ...]:
    """``path`` is a real, non-trivial PNG image; returns its pixel array's shape."""
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes
    shape = imread(path).shape
    assert len(shape) == 3 and shape[0] > 300 and shape[1] > 300 and shape[2] in (3, 4)
    return shape


def test_metrics_arithmetic_on_known_predictions() -> None:
    results = [
        scored("harmful", "hate", "harmful", "hate"),  # tp, category right
        scored("harmful", "drugs", "harmful", "sexual"),  # tp, category wrong
        scored("harmful", "violence", "safe", "none"),  # fn
        scored("safe", "none", "harmful", "hate", family="injection_safe"),  # fp, injection wrong
        scored("safe", "none", "safe", "none", family="injection_safe"),  # tn, injection right
    ]
    figures = metrics(results)
    assert figures["harmful_precision"] == pytest.approx(2 / 3)
    assert figures["harmful_recall"] == pytest.approx(2 / 3)
    assert figures["harmful_f1"] == pytest.approx(2 / 3)
    assert figures["category_accuracy_on_harmful"] == pytest.approx(1 / 3)
    assert figures["false_positive_rate_on_safe"] == pytest.approx(1 / 2)
    assert figures["injection_accuracy"] == pytest.approx(1 / 2)
    assert figures["label_confusion"] == {
        "harmful": {"harmful": 2, "safe": 1},
        "safe": {"harmful": 1, "safe": 1},
    }
    assert sum(sum(row.values()) for row in figures["category_confusion"].values()) == 5


def test_severity_accuracy_and_mean_absolute_error_on_known_predictions() -> None:
    results = [
        # harmful, exact: distance 0
        scored("harmful", "hate", "harmful", "hate", severity="high", predicted_severity="high"),
        # harmful, one step low: 1
        scored("harmful", "hate", "harmful", "hate", severity="high", predicted_severity="medium"),
        # harmful, missed entirely (extreme -> none): 4
        scored("harmful", "violence", "safe", "none", severity="extreme"),
        # safe called harmful at "low": 1 (counts in MAE, not in the accuracy on harmful)
        scored("safe", "none", "harmful", "sexual", predicted_severity="low"),
        # safe, right: 0
        scored("safe", "none", "safe", "none"),
    ]
    figures = metrics(results)
    assert figures["severity_accuracy_on_harmful"] == pytest.approx(1 / 3)
    assert figures["severity_mae"] == pytest.approx((0 + 1 + 4 + 1 + 0) / 5)
    assert severity_mean_absolute_error(results[:1]) == 0.0
    assert severity_mean_absolute_error([]) is None
    assert figures["severity_confusion"]["extreme"]["none"] == 1
    assert figures["severity_confusion"]["none"]["low"] == 1
    only_safe = metrics([scored("safe", "none", "safe", "none")])
    assert only_safe["severity_accuracy_on_harmful"] is None
    assert only_safe["severity_mae"] == 0.0


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not() -> None:
    right = [scored("safe", "none", "safe", "none", confidence=1.0)] * 4
    assert expected_calibration_error(right) == pytest.approx(0.0)
    wrong = [scored("safe", "none", "harmful", "hate", confidence=0.95)] * 4
    assert expected_calibration_error(wrong) == pytest.approx(0.95)
    assert metrics([])["harmful_f1"] is None


def test_reliability_bins_count_accuracy_and_mean_confidence() -> None:
    results = [
        scored("safe", "none", "safe", "none", confidence=0.55),
        scored("safe", "none", "harmful", "hate", confidence=0.57),
        scored("harmful", "hate", "harmful", "hate", confidence=1.0),  # lands in the last bin
    ]
    bins = reliability(results)
    assert len(bins) == 10 and [b["count"] for b in bins] == [0] * 5 + [2, 0, 0, 0, 1]
    assert bins[5]["accuracy"] == pytest.approx(0.5)
    assert bins[5]["confidence"] == pytest.approx(0.56)
    assert bins[0]["accuracy"] is None and bins[0]["confidence"] is None
    # ECE is the count-weighted gap of the same bins.
    assert expected_calibration_error(results) == pytest.approx(2 / 3 * 0.06)


class _Fixed:
    """A stand-in classifier with the engine's signature: harmful iff the text says "kill"."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def classify(self, text, normalization):
        from service.scoring import Classification

        self.seen.append((text, normalization.normalized))
        harmful = "kill" in normalization.normalized
        return Classification(
            label="harmful" if harmful else "safe",
            category="violence" if harmful else "none",
            severity="high" if harmful else "none",
            confidence=0.8,
            label_scores={},
            category_scores={},
            severity_scores={},
            tokens_evaluated=1,
        )


def test_score_with_takes_any_classifier_and_passes_the_normalization() -> None:
    records = [
        {
            "text": "i will k!ll him",
            "label": "harmful",
            "category": "violence",
            "severity": "extreme",
            "provenance": {"family": "threat"},
        },
        {"text": "corn on the cob", "label": "safe", "category": "none", "severity": "none"},
    ]
    classifier = _Fixed()
    results = score_with(classifier, records)
    assert [text for text, _ in classifier.seen] == [r["text"] for r in records]
    assert "kill" in classifier.seen[0][1]  # the classifier saw the normalized text
    assert results[0] == Scored(
        "harmful", "violence", "extreme", "harmful", "violence", "high", 0.8, "threat"
    )
    assert results[1].family == "" and results[1].predicted_label == "safe"


def test_outputs_include_valid_pngs_linked_from_the_report(tmp_path: Path) -> None:
    results = [
        scored("harmful", "hate", "harmful", "hate", confidence=0.91),
        scored("harmful", "drugs", "safe", "none", confidence=0.62),
        scored("safe", "none", "safe", "none", confidence=0.77),
        scored("safe", "none", "harmful", "sexual", confidence=0.55),
    ]
    written = write_outputs(metrics(results), tmp_path / "eval", "known predictions")
    assert set(written) == {"metrics", "confusion", "reliability", "report"}
    confusion = assert_png(written["confusion"])
    reliability_shape = assert_png(written["reliability"])
    assert confusion[1] > confusion[0]  # two panels side by side
    assert reliability_shape[0] >= reliability_shape[1]  # diagram above the count histogram
    text = written["report"].read_text()
    assert "](confusion.png)" in text and "](reliability.png)" in text
    figures = json.loads(written["metrics"].read_text())
    assert figures["severity_mae"] == pytest.approx(metrics(results)["severity_mae"])


def test_without_matplotlib_the_metrics_and_report_are_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    written = write_outputs(metrics([scored("safe", "none", "safe", "none")]), tmp_path, "t")
    assert set(written) == {"metrics", "report"}
    assert not (tmp_path / "confusion.png").exists()
    assert ".png" not in written["report"].read_text()


def test_a_real_evaluation_of_the_gguf_writes_metrics_report_and_plots(
    tmp_path: Path, smollm2_gguf: Path
) -> None:
    from training.dataset import build, write

    write(build(seed=5, size=400), tmp_path / "data")
    out = tmp_path / "eval"
    argv = ["--model", str(smollm2_gguf), "--data", str(tmp_path / "data" / "test.jsonl")]
    assert main([*argv, "--out", str(out), "--limit", "8", "--threads", "2"]) == 0
    figures = json.loads((out / "metrics.json").read_text())
    assert figures["examples"] == 8
    for key in ("label_accuracy", "ece"):
        assert 0.0 <= figures[key] <= 1.0 and math.isfinite(figures[key])
    assert 0.0 <= figures["severity_mae"] <= 4.0
    harmful = sum(figures["label_confusion"]["harmful"].values())
    if harmful:
        assert 0.0 <= figures["severity_accuracy_on_harmful"] <= 1.0
    else:
        assert figures["severity_accuracy_on_harmful"] is None
    assert sum(sum(row.values()) for row in figures["label_confusion"].values()) == 8
    assert sum(sum(row.values()) for row in figures["severity_confusion"].values()) == 8
    assert sum(b["count"] for b in figures["reliability"]) == 8
    report = (out / "report.md").read_text()
    assert "label_confusion" in report and "severity_mae" in report
    assert "](confusion.png)" in report and "](reliability.png)" in report
    assert_png(out / "confusion.png")
    assert_png(out / "reliability.png")


def test_an_hf_model_with_an_adapter_is_evaluated_by_the_same_metrics(
    tmp_path: Path, smollm2_hf: Path
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tests.tiny_models import tiny_base
    from training.dataset import build, write

    write(build(seed=5, size=400), tmp_path / "data")
    base = tiny_base("llama", smollm2_hf, tmp_path / "tiny")
    adapted = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4))
    adapted.save_pretrained(tmp_path / "adapter")
    data = str(tmp_path / "data" / "test.jsonl")
    argv = ["--hf", str(base), "--adapter", str(tmp_path / "adapter"), "--data", data]
    assert main([*argv, "--out", str(tmp_path / "eval"), "--limit", "4", "--threads", "1"]) == 0
    figures = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert figures["examples"] == 4
    assert "tiny + adapter" in (tmp_path / "eval" / "report.md").read_text()
