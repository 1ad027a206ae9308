"""Classification as the service offers it: normalize, score with the engine, decide an action.

No web imports: the CLI and the benchmarks use this too.
"""

import hashlib
import logging
import time
from dataclasses import dataclass, field

from algospeak import Normalization, Normalizer, load_lexicon
from service import metrics
from service.engine import Classification, Engine, ModelError
from service.gate import Gate
from service.settings import Settings

logger = logging.getLogger(__name__)

FETCH_HINT = (
    "build the default model with `make model` (about 20 minutes on a laptop CPU), or set "
    "ALGOSPEAK_MODEL_PATH to a GGUF (e.g. the base `make base` prints)"
)


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
        self,
        normalizer: Normalizer,
        engine: Engine,
        gate: Gate,
        thresholds: Thresholds,
        *,
        log_texts: bool = False,
    ) -> None:
        self.normalizer = normalizer
        self.engine = engine
        self.gate = gate
        self.thresholds = thresholds
        self.log_texts = log_texts

    def classify(self, text: str) -> Verdict:
        """Classify one text; raises ``BusyError`` when the model's queue is full."""
        started = time.perf_counter()
        normalization = self.normalizer.normalize(text)
        with self.gate.slot():
            model_started = time.perf_counter()
            classification = self.engine.classify(text, normalization)
            model_seconds = time.perf_counter() - model_started
        verdict = Verdict(
            text=text,
            normalization=normalization,
            classification=classification,
            action=self.thresholds.action(classification),
            model=self.engine.info.name,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        self._record(verdict, model_seconds)
        return verdict

    def _record(self, verdict: Verdict, model_seconds: float) -> None:
        """Count the decision and log it, naming the text by hash and length only (unless
        ``log_texts``)."""
        c = verdict.classification
        metrics.MODEL_SECONDS.observe(model_seconds)
        metrics.TOKENS.inc(c.tokens_evaluated)
        metrics.DECISIONS.labels(c.label, c.category, verdict.action).inc()
        fields = {
            "text_sha256": hashlib.sha256(verdict.text.encode()).hexdigest()[:16],
            "text_chars": len(verdict.text),
            "label": c.label,
            "category": c.category,
            "action": verdict.action,
            "confidence": round(c.confidence, 4),
            "model_ms": round(model_seconds * 1000, 1),
        }
        if self.log_texts:
            fields["text"] = verdict.text
        logger.info("classified", extra={"fields": fields})


def load_engine(settings: Settings) -> Engine:
    """The engine for the configured model (and adapter). A missing or unusable file raises
    ModelError whose message names the file and ends with ``FETCH_HINT``."""
    path = settings.model_path
    if not path.is_file():
        raise ModelError(f"model file {path} not found: {FETCH_HINT}")
    try:
        return Engine(
            path,
            threads=settings.threads,
            context=settings.context_size,
            lora_path=settings.lora_path,
        )
    except ModelError as exc:
        raise ModelError(f"{exc}; {FETCH_HINT}") from exc


def build_classifier(settings: Settings, normalizer: Normalizer | None = None) -> Classifier:
    """The whole classification path as ``settings`` configure it: ``normalizer`` (by default
    one for the configured lexicon), the model's engine, its gate and the thresholds. Raises
    ModelError as ``load_engine`` does; the caller closes ``classifier.engine``."""
    if normalizer is None:
        normalizer = Normalizer(load_lexicon(settings.lexicon_path))
    return Classifier(
        normalizer,
        load_engine(settings),
        Gate(settings.queue_size, settings.queue_timeout_s),
        Thresholds(
            settings.review_threshold, settings.block_threshold, settings.category_thresholds
        ),
        log_texts=settings.log_texts,
    )
