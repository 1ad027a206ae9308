"""Classification as the service offers it: normalize, score with the engine, decide an action.

No web imports: the CLI and the benchmarks use this too.
"""

import time
from dataclasses import dataclass, field

from algospeak import Normalization, Normalizer
from service.engine import Classification, Engine
from service.gate import Gate


@dataclass(frozen=True, slots=True)
class Thresholds:
    """P(harmful) at or above ``review`` -> review, at or above ``block`` -> block; a category
    may override both (keyed by the most likely harm category)."""

    review: float = 0.5
    block: float = 0.9
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)

    def action(self, classification: Classification) -> str:
        scores = classification.category_scores
        category = max((c for c in scores if c != "none"), key=scores.__getitem__)
        override = self.per_category.get(category, {})
        harmful = classification.label_scores["harmful"]
        if harmful >= override.get("block", self.block):
            return "block"
        if harmful >= override.get("review", self.review):
            return "review"
        return "allow"


@dataclass(frozen=True, slots=True)
class Verdict:
    text: str
    normalization: Normalization
    classification: Classification
    action: str
    model: str
    latency_ms: float


class Classifier:
    """Normalizer + engine behind a gate: the whole classification path."""

    def __init__(
        self, normalizer: Normalizer, engine: Engine, gate: Gate, thresholds: Thresholds
    ) -> None:
        self.normalizer = normalizer
        self.engine = engine
        self.gate = gate
        self.thresholds = thresholds

    def classify(self, text: str) -> Verdict:
        """Classify one text; raises ``BusyError`` when the model's queue is full."""
        started = time.perf_counter()
        normalization = self.normalizer.normalize(text)
        with self.gate.slot():
            classification = self.engine.classify(text, normalization)
        return Verdict(
            text=text,
            normalization=normalization,
            classification=classification,
            action=self.thresholds.action(classification),
            model=self.engine.info.name,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
