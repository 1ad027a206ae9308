"""Evaluation: the metrics' arithmetic, and a real run of the served GGUF on a built split."""

import json
import math
from pathlib import Path

import pytest

from training.evaluate import Scored, expected_calibration_error, main, metrics


def scored(label, category, predicted, predicted_category, confidence=0.9, family="x") -> Scored:
    return Scored(label, category, predicted, predicted_category, confidence, family)


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


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not() -> None:
    right = [scored("safe", "none", "safe", "none", confidence=1.0)] * 4
    assert expected_calibration_error(right) == pytest.approx(0.0)
    wrong = [scored("safe", "none", "harmful", "hate", confidence=0.95)] * 4
    assert expected_calibration_error(wrong) == pytest.approx(0.95)
    assert metrics([])["harmful_f1"] is None


def test_a_real_evaluation_of_the_gguf_writes_metrics_and_report(
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
    assert sum(sum(row.values()) for row in figures["label_confusion"].values()) == 8
    assert "label_confusion" in (out / "report.md").read_text()
