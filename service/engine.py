"""The one inference path: a GGUF model through llama-cpp-python, scoring the allowed answers.

No web imports here: the API, training's evaluation and conversion's verification all use this
module, so a number measured offline is the number served.

The engine never free-generates. After the prompt and ``Label:`` it reads the model's
distribution over the allowed values (multi-token values scored by their whole token sequence),
renormalized over those values; then the category given ``harmful``, then the severity given
that category. The system prompt and the user-turn header are evaluated once; each request
rewinds the context to that prefix and evaluates only its own tokens.

An ``Engine`` is not thread-safe (one context, one KV cache): callers serialize access.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from algospeak.normalizer import Normalization
from algospeak.prompt import (
    CATEGORY_PREFIX,
    HARM_CATEGORIES,
    HARM_SEVERITIES,
    LABEL_PREFIX,
    SEVERITY_PREFIX,
    SYSTEM,
    user_content,
    value,
)
from algospeak.taxonomy import LABELS

if TYPE_CHECKING:
    from llama_cpp import Llama

logger = logging.getLogger(__name__)

_SENTINEL = "\x00USER-CONTENT\x00"
# ChatML, for GGUF files that carry no chat template of their own.
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_ANSWER_TOKENS = 32  # room the answer path needs after the request's tokens
_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1"}
_FILE_TYPES |= {10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M"}
_FILE_TYPES |= {16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


class ModelError(RuntimeError):
    """The model file is missing or unusable; the message says what to run."""


class InputTooLongError(ValueError):
    """The prompt for a text does not fit the model's context."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: str
    name: str
    sha256: str
    size_bytes: int
    architecture: str
    quantization: str
    context_size: int
    threads: int


@dataclass(frozen=True, slots=True)
class Classification:
    """Decision and distributions. ``category``/``severity`` scores are joint: P(none) is
    P(safe), P(c) is P(harmful) * P(c | harmful); each distribution sums to 1."""

    label: str
    category: str
    severity: str
    confidence: float
    label_scores: dict[str, float]
    category_scores: dict[str, float]
    severity_scores: dict[str, float]
    tokens_evaluated: int


class Engine:
    """A loaded GGUF classifier. ``close()`` frees it."""

    def __init__(self, path: Path, *, threads: int, context: int, batch: int = 512) -> None:
        from llama_cpp import Llama  # heavy: only the engine needs it

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        try:
            self._llm: Llama = Llama(
                model_path=str(path),
                n_ctx=context,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=batch,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"model file {path} could not be loaded (not a valid GGUF?)") from exc
        metadata = self._llm.metadata
        self.info = ModelInfo(
            path=str(path),
            name=metadata.get("general.name", path.stem),
            sha256=_sha256(path),
            size_bytes=path.stat().st_size,
            architecture=metadata.get("general.architecture", "unknown"),
            quantization=_FILE_TYPES.get(int(metadata.get("general.file_type", -1)), "unknown"),
            context_size=self._llm.n_ctx(),
            threads=threads,
        )
        head, tail = _split_template(metadata.get("tokenizer.chat_template") or _CHATML, metadata)
        self._prefix = self._tokens(head, special=True)
        if metadata.get("tokenizer.ggml.add_bos_token") == "true":
            self._prefix = [self._llm.token_bos(), *self._prefix]
        self._tail = self._tokens(tail + LABEL_PREFIX, special=True)
        self._labels = {v: self._tokens(value(v)) for v in LABELS}
        self._categories = {v: self._tokens(value(v)) for v in HARM_CATEGORIES}
        self._severities = {v: self._tokens(value(v)) for v in HARM_SEVERITIES}
        self._to_category = self._labels["harmful"] + self._tokens(CATEGORY_PREFIX)
        self._to_severity = self._tokens(SEVERITY_PREFIX)
        self._prefix_ready = False
        self._evaluated = 0
        logger.info("loaded %s (%s, %s)", path, self.info.architecture, self.info.quantization)

    def classify(self, text: str, normalization: Normalization) -> Classification:
        """Score ``text``; deterministic for a given model, text and thread count."""
        request = self._tokens(user_content(text, normalization)) + self._tail
        needed = len(self._prefix) + len(request) + _ANSWER_TOKENS
        if needed > self.info.context_size:
            raise InputTooLongError(
                f"the text needs {needed} tokens with the prompt; the model's context is "
                f"{self.info.context_size}"
            )
        self._evaluated = 0
        self._rewind(len(self._prefix))
        logits = self._eval(request)
        start = self._llm.n_tokens
        labels = self._distribution(self._labels, logits)
        self._rewind(start)
        categories = self._distribution(self._categories, self._eval(self._to_category))
        top_category = max(categories, key=categories.__getitem__)
        after_category = self._llm.n_tokens
        self._rewind(after_category)
        to_severity = self._categories[top_category] + self._to_severity
        severities = self._distribution(self._severities, self._eval(to_severity))

        harmful = labels["harmful"]
        label = "harmful" if harmful > labels["safe"] else "safe"
        return Classification(
            label=label,
            category=top_category if label == "harmful" else "none",
            severity=max(severities, key=severities.__getitem__) if label == "harmful" else "none",
            confidence=labels[label],
            label_scores=labels,
            category_scores={"none": labels["safe"]}
            | {c: harmful * p for c, p in categories.items()},
            severity_scores={"none": labels["safe"]}
            | {s: harmful * p for s, p in severities.items()},
            tokens_evaluated=self._evaluated,
        )

    def count_tokens(self, text: str) -> int:
        return len(self._tokens(text))

    def close(self) -> None:
        self._llm.close()

    def _tokens(self, text: str, *, special: bool = False) -> list[int]:
        # special=False: "<|im_start|>" typed by a user stays text, never a control token.
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def _rewind(self, position: int) -> None:
        """Forget every token after ``position``; the prefix is evaluated the first time."""
        if not self._prefix_ready:
            self._llm.reset()
            self._llm.eval(self._prefix)
            self._prefix_ready = True
        self._llm.n_tokens = position

    def _eval(self, tokens: list[int]) -> np.ndarray:
        """Evaluate ``tokens`` after the current position; the next-token log-probabilities."""
        from llama_cpp import llama_get_logits_ith

        self._llm.eval(tokens)
        self._evaluated += len(tokens)
        pointer = llama_get_logits_ith(self._llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return logits - top - math.log(np.exp(logits - top).sum())

    def _distribution(
        self, options: dict[str, list[int]], log_probs: np.ndarray
    ) -> dict[str, float]:
        """P(option) renormalized over ``options``, each scored by its whole token sequence."""
        start = self._llm.n_tokens
        scores: dict[str, float] = {}
        for option, tokens in options.items():
            score = float(log_probs[tokens[0]])
            for index in range(1, len(tokens)):
                self._rewind(start + index - 1)
                score += float(self._eval([tokens[index - 1]])[tokens[index]])
            scores[option] = score
        self._rewind(start)
        top = max(scores.values())
        weights = {option: math.exp(score - top) for option, score in scores.items()}
        total = sum(weights.values())
        return {option: weight / total for option, weight in weights.items()}


def _split_template(template: str, metadata: dict[str, str]) -> tuple[str, str]:
    """The rendered chat prompt around the user content: (system + user header, user footer +
    assistant header)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    rendered = environment.from_string(template).render(
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": _SENTINEL},
        ],
        add_generation_prompt=True,
        bos_token="",
        eos_token="",
    )
    if rendered.count(_SENTINEL) != 1:
        raise ModelError("the model's chat template does not render a user message")
    head, tail = rendered.split(_SENTINEL)
    return head, tail


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
