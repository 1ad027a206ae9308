"""Classification as the service offers it: normalize, score with the engine, decide an action.

No web imports: the CLI and the benchmarks use this too.
"""

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from algospeak import Normalization
from artifacts import shipped
from artifacts.bases import CatalogError, FetchError
from artifacts.merge import MergeError
from service import metrics
from service.engine import Engine, ModelError
from service.gate import Gate
from service.policy import PolicyHolder, Thresholds
from service.scoring import Classification
from service.settings import Settings

logger = logging.getLogger(__name__)

FETCH_HINT = (
    "unset ALGOSPEAK_MODEL_PATH to serve the shipped default model, or set it to a GGUF "
    "(e.g. the base `make base` prints)"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    text: str
    normalization: Normalization
    classification: Classification
    action: str
    model: str
    latency_ms: float
    thresholds: Thresholds  # the ones that decided `action` (a reload may follow)
    moderated: bool = True  # False: the policy does not moderate the top harm category
    reason: str | None = None  # the model's reason line, written after the decision if asked


class Classifier:
    """The rules in force (``policy.rules``) + engine behind a gate: the whole classification
    path."""

    def __init__(
        self,
        policy: PolicyHolder,
        engine: Engine,
        gate: Gate,
        *,
        log_texts: bool = False,
        reason_max_tokens: int = 48,
    ) -> None:
        self.policy = policy
        self.engine = engine
        self.gate = gate
        self.log_texts = log_texts
        self.reason_max_tokens = reason_max_tokens

    def classify(self, text: str, *, reason: bool = False) -> Verdict:
        """Classify one text under the rules in force when it starts (a reload meanwhile
        does not change them); raises ``BusyError`` when the model's queue is full. With
        ``reason``, the model then writes its reason line (at most ``reason_max_tokens``) in
        the same slot; the decision is made before it and does not depend on it."""
        started = time.perf_counter()
        rules = self.policy.rules
        normalization = rules.normalizer.normalize(text)
        with self.gate.slot():
            model_started = time.perf_counter()
            classification = self.engine.classify(text, normalization)
            written = self.engine.reason(self.reason_max_tokens) if reason else None
            model_seconds = time.perf_counter() - model_started
        action, moderated = rules.decide(classification)
        verdict = Verdict(
            text=text,
            normalization=normalization,
            classification=classification,
            action=action,
            model=self.engine.info.name,
            latency_ms=(time.perf_counter() - started) * 1000,
            moderated=moderated,
            thresholds=rules.thresholds,
            reason=written,
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


def model_file(settings: Settings) -> Path:
    """The configured model file, or the shipped default model's (prepared first if need be)
    when none is configured. ModelError, naming the file and saying what to do, when it is
    missing or cannot be prepared."""
    path = settings.model_path
    if path is None:
        try:
            path = shipped.prepare(threads=settings.threads)
        except (shipped.ShippedModelError, FetchError, CatalogError, MergeError) as exc:
            raise ModelError(f"the shipped default model cannot be prepared: {exc}") from exc
    if not path.is_file():
        raise ModelError(f"model file {path} not found: {FETCH_HINT}")
    return path


def load_engine(settings: Settings) -> Engine:
    """The engine for the configured model (and adapter), or for the shipped default model
    (prepared first if need be) when none is configured. A missing or unusable file raises
    ModelError whose message names the file and says what to do."""
    path = model_file(settings)
    try:
        return Engine(
            path,
            threads=settings.threads,
            context=settings.context_size,
            lora_path=settings.lora_path,
        )
    except ModelError as exc:
        raise ModelError(f"{exc}; {FETCH_HINT}") from exc


def build_classifier(settings: Settings, policy: PolicyHolder | None = None) -> Classifier:
    """The whole classification path as ``settings`` configure it: the rules of ``policy``
    (by default the configured lexicon, thresholds and policy file), the model's engine and
    its gate. Raises ModelError as ``load_engine`` does, PolicyError for a bad policy file;
    the caller closes ``classifier.engine``."""
    return Classifier(
        policy or PolicyHolder(settings),
        load_engine(settings),
        Gate(settings.queue_size, settings.queue_timeout_s),
        log_texts=settings.log_texts,
        reason_max_tokens=settings.reason_max_tokens,
    )
