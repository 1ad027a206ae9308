"""The one scoring algorithm of the prompt contract, over a small backend interface.

A scorer never free-generates a decision. After the prompt and ``Label:`` it reads the model's
distribution over the allowed labels (multi-token values scored by their whole token sequence,
renormalized over the allowed values); then the category given ``harmful``; then the severity
given the top category. The system prompt and the user-turn header are evaluated once; each
request continues from that prefix and evaluates only its own tokens. Only when asked, after a
decision, ``reason`` writes the contract's optional reason line for it; the decision is final
by then and cannot depend on the reason.

A backend (``service.llama_backend`` for GGUF files, ``training.hf_scorer`` for Hugging Face
models) tokenizes and evaluates tokens; everything else is here, so a number measured offline is
the number served. No llama_cpp or torch here. A scorer is not thread-safe (one cache).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from algospeak.normalizer import Normalization
from algospeak.prompt import (
    CATEGORY_PREFIX,
    HARM_CATEGORIES,
    HARM_SEVERITIES,
    LABEL_PREFIX,
    REASON_PREFIX,
    SEVERITY_PREFIX,
    SYSTEM,
    USER_PREFIX,
    Answer,
    format_answer,
    user_content,
    value,
)
from algospeak.taxonomy import LABELS
from service.calibration import Calibration

ANSWER_TOKENS = 32  # room the answer path needs after the request's tokens
_SENTINEL = "\x00USER-CONTENT\x00"
# ChatML, for models that carry no chat template of their own.
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class TemplateError(ValueError):
    """The model's chat template cannot frame the prompt contract."""


class InputTooLongError(ValueError):
    """The prompt for a text does not fit the model's context."""


class Backend(Protocol):
    """What a scorer needs from a model: its tokenizer and a way to evaluate tokens."""

    chat_template: str | None  # the model's Jinja chat template; None for ChatML
    bos: int | None  # the token every sequence starts with, None if the model wants none
    context_size: int  # most tokens one sequence may hold

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """``text``'s tokens; with ``special`` false, control-token text stays plain text."""
        ...

    def decode(self, start: int, tokens: Sequence[int], outputs: Sequence[int]) -> list[np.ndarray]:
        """Evaluate ``tokens`` right after the first ``start`` tokens evaluated so far
        (forgetting any later ones) and return the next-token log-probabilities (float64)
        after each position in ``outputs`` (indices into ``tokens``; negative ones count from
        the end), in ascending position order."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> bytes: ...

    def ends_turn(self, token: int) -> bool:
        """True for end-of-turn, end-of-text and any other control token."""
        ...


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


@dataclass(frozen=True, slots=True)
class AnswerTokens:
    """The answer line's pieces in a model's tokens: each allowed value as scored after its
    prefix, and the tokens that lead from one decided value to the next question."""

    labels: dict[str, list[int]]
    categories: dict[str, list[int]]
    severities: dict[str, list[int]]
    to_category: list[int]  # " harmful, Category:"
    to_severity: list[int]  # ", Severity:" (after the top category's tokens)

    @classmethod
    def of(cls, tokenize: Callable[[str], list[int]]) -> AnswerTokens:
        labels = {v: tokenize(value(v)) for v in LABELS}
        return cls(
            labels=labels,
            categories={v: tokenize(value(v)) for v in HARM_CATEGORIES},
            severities={v: tokenize(value(v)) for v in HARM_SEVERITIES},
            to_category=labels["harmful"] + tokenize(CATEGORY_PREFIX),
            to_severity=tokenize(SEVERITY_PREFIX),
        )


class Scorer:
    """The prompt contract's scoring on ``backend``, its probabilities corrected by
    ``calibration`` (none by default) before the decision."""

    def __init__(self, backend: Backend, calibration: Calibration | None = None) -> None:
        self.backend = backend
        self.calibration = calibration or Calibration()
        head, tail = split_template(backend.chat_template)
        self.prefix = self._tokens(head, special=True) + self._tokens(USER_PREFIX)
        if backend.bos is not None:
            self.prefix = [backend.bos, *self.prefix]
        self._tail = self._tokens(tail + LABEL_PREFIX, special=True)
        self._answer = AnswerTokens.of(self._tokens)
        self._prefix_ready = False
        # (position after "Label:", the decided answer) of the last classify(), which reason()
        # continues; None when there is nothing to continue.
        self._answered: tuple[int, Answer] | None = None
        # The tokens the last classify() evaluated after the prefix, in order (benchmarks replay
        # them through a bare evaluation to measure the scorer's own overhead).
        self.last_evaluated: list[int] = []

    def request_tokens(self, text: str, normalization: Normalization) -> list[int]:
        """The tokens a request adds after the fixed prefix, up to and including ``Label:``;
        InputTooLongError if they do not fit the context."""
        content = user_content(normalization).removeprefix(USER_PREFIX)
        request = self._tokens(content) + self._tail
        needed = len(self.prefix) + len(request) + ANSWER_TOKENS
        if needed > self.backend.context_size:
            raise InputTooLongError(
                f"the text needs {needed} tokens with the prompt; the model's context is "
                f"{self.backend.context_size}"
            )
        return request

    def classify(self, text: str, normalization: Normalization) -> Classification:
        """Score ``text``; deterministic for a given model, text and thread count."""
        return self.score(self.request_tokens(text, normalization))

    def score(self, request: list[int]) -> Classification:
        """Score the request tokens ``request`` (from :meth:`request_tokens`)."""
        self._answered = None
        self.last_evaluated = []
        start = self.prefix_end()
        # One decode reads both the label distribution (after "Label:") and, since causal
        # attention never looks ahead, the category distribution after "harmful, Category:".
        answer = self._answer
        first = request + answer.to_category
        label_log_probs, category_log_probs = self._decode(start, first, (len(request) - 1, -1))
        label_fork = start + len(request)
        category_fork = start + len(first)
        categories = self._distribution(answer.categories, category_log_probs, category_fork)
        categories = self.calibration.categories(categories)
        top_category = max(categories, key=categories.__getitem__)
        to_severity = answer.categories[top_category] + answer.to_severity
        (severity_log_probs,) = self._decode(category_fork, to_severity)
        severity_fork = category_fork + len(to_severity)
        severities = self._distribution(answer.severities, severity_log_probs, severity_fork)
        labels = self.calibration.labels(
            self._distribution(answer.labels, label_log_probs, label_fork)
        )
        decision = decide(labels, categories, severities, len(self.last_evaluated))
        self._answered = (label_fork, Answer(decision.label, decision.category, decision.severity))
        return decision

    def reason(self, max_tokens: int) -> str:
        """The model's reason line for the last ``classify()`` decision: its answer line (as
        decided) and ``Reason:`` are appended, then at most ``max_tokens`` tokens are generated
        greedily, up to a newline or the end of the turn; stripped, possibly empty.

        Call it right after ``classify()`` on the same thread, holding the same slot: it reads
        the cache that call left. It changes nothing ``classify()`` returned."""
        if self._answered is None:
            raise RuntimeError("reason() continues a classify() call; none preceded it")
        position, answer = self._answered
        self._answered = None
        # The rest of the answer line and the reason prefix, tokenized in one piece as in
        # training (the split after "Label:" is the one scoring already makes).
        rest = format_answer(answer).removeprefix(LABEL_PREFIX) + "\n" + REASON_PREFIX
        tokens = self._tokens(rest)
        budget = min(max_tokens, self.backend.context_size - position - len(tokens))
        written = b""
        if budget > 0:
            (log_probs,) = self.backend.decode(position, tokens, (-1,))
            position += len(tokens)
            for step in range(budget):
                token = int(np.argmax(log_probs))
                if self.backend.ends_turn(token):
                    break
                written += self.backend.detokenize([token])
                if b"\n" in written.lstrip():  # the line is complete (leading blanks aside)
                    break
                if step + 1 < budget:
                    (log_probs,) = self.backend.decode(position, [token], (-1,))
                    position += 1
        line = written.lstrip().split(b"\n", 1)[0]
        # A token cut off by the cap may end inside a UTF-8 sequence: drop that fragment.
        return line.decode("utf-8", errors="ignore").strip()

    def prefix_end(self) -> int:
        """The position right after the fixed prefix, which is evaluated the first time."""
        if not self._prefix_ready:
            self.backend.decode(0, self.prefix, ())
            self._prefix_ready = True
        return len(self.prefix)

    def count_tokens(self, text: str) -> int:
        return len(self._tokens(text))

    def _tokens(self, text: str, *, special: bool = False) -> list[int]:
        # special=False: "<|im_start|>" typed by a user stays text, never a control token.
        return self.backend.tokenize(text, special=special)

    def _decode(
        self, start: int, tokens: list[int], outputs: Sequence[int] = (-1,)
    ) -> list[np.ndarray]:
        self.last_evaluated += tokens
        return self.backend.decode(start, tokens, outputs)

    def _distribution(
        self, options: dict[str, list[int]], log_probs: np.ndarray, fork: int
    ) -> dict[str, float]:
        """P(option) renormalized over ``options``, each scored by its whole token sequence;
        ``log_probs`` are the next-token log-probabilities at position ``fork``."""
        scores: dict[str, float] = {}
        for option, tokens in options.items():
            score = float(log_probs[tokens[0]])
            if len(tokens) > 1:
                steps = self._decode(fork, tokens[:-1], range(len(tokens) - 1))
                score += sum(float(step[t]) for step, t in zip(steps, tokens[1:], strict=True))
            scores[option] = score
        return renormalize(scores)


def decide(
    labels: dict[str, float],
    categories: dict[str, float],
    severities: dict[str, float],
    tokens_evaluated: int,
) -> Classification:
    """The decision from the three distributions: the label with the larger probability, and
    for ``harmful`` the top category and (given it) the top severity; joint scores as
    ``Classification`` describes."""
    harmful = labels["harmful"]
    label = "harmful" if harmful > labels["safe"] else "safe"
    return Classification(
        label=label,
        category=max(categories, key=categories.__getitem__) if label == "harmful" else "none",
        severity=max(severities, key=severities.__getitem__) if label == "harmful" else "none",
        confidence=labels[label],
        label_scores=labels,
        category_scores={"none": labels["safe"]} | {c: harmful * p for c, p in categories.items()},
        severity_scores={"none": labels["safe"]} | {s: harmful * p for s, p in severities.items()},
        tokens_evaluated=tokens_evaluated,
    )


def renormalize(log_scores: dict[str, float]) -> dict[str, float]:
    """Probabilities from log-scores, renormalized over the options given (a stable softmax)."""
    top = max(log_scores.values())
    weights = {option: math.exp(score - top) for option, score in log_scores.items()}
    total = sum(weights.values())
    return {option: weight / total for option, weight in weights.items()}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities (float64) from one position's logits."""
    values = logits.astype(np.float64)
    top = values.max()
    return values - top - math.log(np.exp(values - top).sum())


def split_template(template: str | None) -> tuple[str, str]:
    """The rendered chat prompt around the user content: (system + user header, user footer +
    assistant header). ``None`` means ChatML."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    rendered = environment.from_string(template or _CHATML).render(
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": _SENTINEL},
        ],
        add_generation_prompt=True,
        bos_token="",
        eos_token="",
    )
    if rendered.count(_SENTINEL) != 1:
        raise TemplateError("the model's chat template does not render a user message")
    head, tail = rendered.split(_SENTINEL)
    return head, tail
