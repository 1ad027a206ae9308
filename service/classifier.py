"""Classification as the service offers it: normalize, score with the engine, decide an action.

No web imports: the CLI and the benchmarks use this too.
"""

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from algospeak import Normalization
from artifacts import shipped
from artifacts.bases import CatalogError, FetchError
from artifacts.merge import MergeError
from service import metrics
from service.calibration import Evidence
from service.engine import Engine, ModelError
from service.gate import Gate
from service.policy import PolicyHolder, Rules, Thresholds
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A text ready for the model: normalized under the rules in force when it came, and
    tokenized."""

    text: str
    rules: Rules
    normalization: Normalization
    tokens: list[int]
    evidence: Evidence  # what the normalizer found, which the calibration weighs
    started: float  # time.perf_counter() when it came


class Classifier:
    """The rules in force (``policy.rules``) + engine behind a gate: the whole classification
    path. Texts waiting for the model together are scored together (``Gate.run``); each
    answer is the one the text gets alone."""

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
        does not change them); raises ``InputTooLongError`` if it does not fit the model and
        ``BusyError`` when the model's queue is full. With ``reason``, the model then writes
        its reason line (at most ``reason_max_tokens``) in the same slot; the decision is made
        before it and does not depend on it."""
        return self.decide([self.prepare(text)], reason=reason)[0]

    def prepare(self, text: str) -> Prepared:
        """``text`` normalized under the rules in force now and tokenized for the model;
        InputTooLongError if it does not fit the model's context."""
        started = time.perf_counter()
        rules = self.policy.rules
        normalization = rules.normalizer.normalize(text)
        tokens = self.engine.request_tokens(text, normalization)
        evidence = Evidence.of(normalization)
        return Prepared(text, rules, normalization, tokens, evidence, started)

    def decide(self, texts: Sequence[Prepared], *, reason: bool = False) -> list[Verdict]:
        """The verdicts for ``texts``, in order: scored together with whatever else waits for
        the model, or, with ``reason``, one at a time with the reason line written after each
        decision. BusyError when the model's queue is full or the wait too long."""
        if reason:
            scored = [self._score_with_reason(prepared) for prepared in texts]
        else:
            batched = self.gate.run(list(texts), self._score)
            scored = [(classification, seconds, None) for classification, seconds in batched]
        verdicts = []
        for prepared, (classification, seconds, written) in zip(texts, scored, strict=True):
            verdict = self._verdict(prepared, classification, written)
            self._record(verdict, seconds)
            verdicts.append(verdict)
        return verdicts

    def _score(self, texts: list[Prepared]) -> list[tuple[Classification, float]]:
        """The gate's work: the texts scored together, each with its share of the model's
        time."""
        started = time.perf_counter()
        classifications = self.engine.score_many(
            [prepared.tokens for prepared in texts], [prepared.evidence for prepared in texts]
        )
        share = (time.perf_counter() - started) / len(texts)
        metrics.BATCH_TEXTS.observe(len(texts))
        return [(classification, share) for classification in classifications]

    def _score_with_reason(self, prepared: Prepared) -> tuple[Classification, float, str]:
        with self.gate.slot():
            started = time.perf_counter()
            classification = self.engine.score(prepared.tokens, prepared.evidence)
            written = self.engine.reason(self.reason_max_tokens)
            seconds = time.perf_counter() - started
        metrics.BATCH_TEXTS.observe(1)
        return classification, seconds, written

    def _verdict(
        self, prepared: Prepared, classification: Classification, reason: str | None
    ) -> Verdict:
        action, moderated = prepared.rules.decide(classification)
        return Verdict(
            text=prepared.text,
            normalization=prepared.normalization,
            classification=classification,
            action=action,
            model=self.engine.info.name,
            latency_ms=(time.perf_counter() - prepared.started) * 1000,
            moderated=moderated,
            thresholds=prepared.rules.thresholds,
            reason=reason,
        )

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
        Gate(settings.queue_size, settings.queue_timeout_s, settings.model_batch),
        log_texts=settings.log_texts,
        reason_max_tokens=settings.reason_max_tokens,
    )
