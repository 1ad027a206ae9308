"""The one inference path: a GGUF model through llama-cpp-python, scoring the allowed answers.

No web imports here: the API, training's evaluation and conversion's verification all use this
module, so a number measured offline is the number served.

The engine never free-generates a decision. After the prompt and ``Label:`` it reads the model's
distribution over the allowed values (multi-token values scored by their whole token sequence),
renormalized over those values; then the category given ``harmful``, then the severity given
that category. The system prompt and the user-turn header are evaluated once; each request
rewinds the context to that prefix and evaluates only its own tokens. Only when asked, after a
decision, ``reason`` writes the contract's optional reason line for it; the decision is final
by then and cannot depend on the reason.

An ``Engine`` is not thread-safe (one context, one KV cache): callers serialize access.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    adapter: str | None = None  # a GGUF LoRA adapter applied on top: "<path> sha256:<hex>"
    # The build's manifest.json next to the file when there is one (how the model was made,
    # its evaluation figures); its own sha256 must match the file's.
    manifest: dict[str, Any] | None = None


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


class Engine:
    """A loaded GGUF classifier. ``close()`` frees it."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int,
        context: int,
        batch: int = 512,
        lora_path: Path | None = None,
    ) -> None:
        """Load the GGUF at ``path``, with the GGUF LoRA adapter ``lora_path`` applied if given."""
        from llama_cpp import Llama  # heavy: only the engine needs it

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        if lora_path is not None and not Path(lora_path).is_file():
            raise ModelError(f"LoRA adapter file {lora_path} does not exist")
        try:
            self._llm: Llama = Llama(
                model_path=str(path),
                n_ctx=context,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=batch,
                logits_all=False,
                lora_path=str(lora_path) if lora_path is not None else None,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            what = f"model file {path}" + (f" with adapter {lora_path}" if lora_path else "")
            raise ModelError(f"{what} could not be loaded (not a valid GGUF?)") from exc
        metadata = self._llm.metadata
        sha256 = _sha256(path)
        self.info = ModelInfo(
            path=str(path),
            name=metadata.get("general.name", path.stem),
            sha256=sha256,
            size_bytes=path.stat().st_size,
            architecture=metadata.get("general.architecture", "unknown"),
            quantization=_FILE_TYPES.get(int(metadata.get("general.file_type", -1)), "unknown"),
            context_size=self._llm.n_ctx(),
            threads=threads,
            adapter=f"{lora_path} sha256:{_sha256(Path(lora_path))}" if lora_path else None,
            manifest=_manifest(path, sha256),
        )
        head, tail = split_template(metadata.get("tokenizer.chat_template"))
        self._prefix = self._tokens(head, special=True) + self._tokens(USER_PREFIX)
        if metadata.get("tokenizer.ggml.add_bos_token") == "true":
            self._prefix = [self._llm.token_bos(), *self._prefix]
        self._tail = self._tokens(tail + LABEL_PREFIX, special=True)
        self._answer = AnswerTokens.of(self._tokens)
        self._prefix_ready = False
        # (context position after "Label:", the decided answer) of the last classify(), which
        # reason() continues; None when there is nothing to continue.
        self._answered: tuple[int, Answer] | None = None
        # The tokens the last classify() evaluated after the prefix, in order (benchmarks replay
        # them through a bare eval to measure the engine's own overhead).
        self.last_evaluated: list[int] = []
        logger.info("loaded %s (%s, %s)", path, self.info.architecture, self.info.quantization)

    def classify(self, text: str, normalization: Normalization) -> Classification:
        """Score ``text``; deterministic for a given model, text and thread count."""
        self._answered = None
        request = self.request_tokens(text, normalization)
        self.last_evaluated = []
        self._rewind(len(self._prefix))
        # One decode reads both the label distribution (after "Label:") and, since causal
        # attention never looks ahead, the category distribution after "harmful, Category:".
        answer = self._answer
        first = request + answer.to_category
        label_log_probs, category_log_probs = self._decode(first, (len(request) - 1, -1))
        label_fork = len(self._prefix) + len(request)
        category_fork = self._llm.n_tokens
        categories = self._distribution(answer.categories, category_log_probs, category_fork)
        top_category = max(categories, key=categories.__getitem__)
        self._rewind(category_fork)
        (severity_log_probs,) = self._decode(answer.categories[top_category] + answer.to_severity)
        severities = self._distribution(answer.severities, severity_log_probs, self._llm.n_tokens)
        labels = self._distribution(answer.labels, label_log_probs, label_fork)
        decision = decide(labels, categories, severities, len(self.last_evaluated))
        self._answered = (label_fork, Answer(decision.label, decision.category, decision.severity))
        return decision

    def reason(self, max_tokens: int) -> str:
        """The model's reason line for the last ``classify()`` decision: its answer line (as
        decided) and ``Reason:`` are appended, then at most ``max_tokens`` tokens are generated
        greedily, up to a newline or the end of the turn; stripped, possibly empty.

        Call it right after ``classify()`` on the same thread, holding the same slot: it reads
        the context that call left. It changes nothing ``classify()`` returned."""
        if self._answered is None:
            raise RuntimeError("reason() continues a classify() call; none preceded it")
        label_fork, answer = self._answered
        evaluated = self.last_evaluated
        self._rewind(label_fork)
        # The rest of the answer line and the reason prefix, tokenized in one piece as in
        # training (the split after "Label:" is the one scoring already makes).
        rest = format_answer(answer).removeprefix(LABEL_PREFIX) + "\n" + REASON_PREFIX
        tokens = self._tokens(rest)
        budget = min(max_tokens, self.info.context_size - self._llm.n_tokens - len(tokens))
        written = b""
        if budget > 0:
            (log_probs,) = self._decode(tokens)
            for step in range(budget):
                token = int(np.argmax(log_probs))
                if self._ends_turn(token):
                    break
                written += self._llm.detokenize([token])
                if b"\n" in written.lstrip():  # the line is complete (leading blanks aside)
                    break
                if step + 1 < budget:
                    (log_probs,) = self._decode([token])
        self.last_evaluated = evaluated  # benchmarks replay what classify() evaluated
        self._answered = None
        line = written.lstrip().split(b"\n", 1)[0]
        # A token cut off by the cap may end inside a UTF-8 sequence: drop that fragment.
        return line.decode("utf-8", errors="ignore").strip()

    def request_tokens(self, text: str, normalization: Normalization) -> list[int]:
        """The tokens a request adds after the fixed prefix, up to and including ``Label:``;
        InputTooLongError if they do not fit the context."""
        content = user_content(text, normalization).removeprefix(USER_PREFIX)
        request = self._tokens(content) + self._tail
        needed = len(self._prefix) + len(request) + _ANSWER_TOKENS
        if needed > self.info.context_size:
            raise InputTooLongError(
                f"the text needs {needed} tokens with the prompt; the model's context is "
                f"{self.info.context_size}"
            )
        return request

    def evaluate(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` right after the fixed prefix with one plain ``Llama.eval``:
        the raw model cost that benchmarks compare ``classify`` with."""
        self._answered = None
        self._rewind(len(self._prefix))
        self._llm.eval(tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._tokens(text))

    def close(self) -> None:
        self._llm.close()

    def _tokens(self, text: str, *, special: bool = False) -> list[int]:
        # special=False: "<|im_start|>" typed by a user stays text, never a control token.
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def _ends_turn(self, token: int) -> bool:
        """End of generation: end-of-turn/end-of-text, or any other control token."""
        from llama_cpp import llama_vocab_is_control, llama_vocab_is_eog

        vocab = self._llm._model.vocab
        return bool(llama_vocab_is_eog(vocab, token) or llama_vocab_is_control(vocab, token))

    def _rewind(self, position: int) -> None:
        """Forget every token after ``position``; the prefix is evaluated the first time."""
        if not self._prefix_ready:
            self._llm.reset()
            self._llm.eval(self._prefix)
            self._prefix_ready = True
        self._llm.n_tokens = position

    def _decode(self, tokens: list[int], outputs: Sequence[int] = (-1,)) -> list[np.ndarray]:
        """Evaluate ``tokens`` after the current position and return the next-token
        log-probabilities after each position in ``outputs`` (indices into ``tokens``).

        Like ``Llama.eval`` but asking llama.cpp for logits at several positions of one batch,
        so scoring needs fewer decode calls (and no ``logits_all`` buffer).
        """
        from llama_cpp import llama_get_logits_ith

        llm = self._llm
        wanted = sorted(i % len(tokens) for i in outputs)
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        result: list[np.ndarray] = []
        for offset in range(0, len(tokens), llm.n_batch):
            chunk = tokens[offset : offset + llm.n_batch]
            llm._batch.set_batch(batch=chunk, n_past=llm.n_tokens, logits_all=False)
            here = [i - offset for i in wanted if offset <= i < offset + len(chunk)]
            for index in here:
                llm._batch.batch.logits[index] = True
            llm._ctx.decode(llm._batch)
            llm.input_ids[llm.n_tokens : llm.n_tokens + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
            for index in here:
                pointer = llama_get_logits_ith(llm._ctx.ctx, index)
                result.append(_log_softmax(np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))))
        self.last_evaluated += tokens
        return result

    def _distribution(
        self, options: dict[str, list[int]], log_probs: np.ndarray, fork: int
    ) -> dict[str, float]:
        """P(option) renormalized over ``options``, each scored by its whole token sequence;
        ``log_probs`` are the next-token log-probabilities at context position ``fork``."""
        scores: dict[str, float] = {}
        for option, tokens in options.items():
            score = float(log_probs[tokens[0]])
            if len(tokens) > 1:
                self._rewind(fork)
                steps = self._decode(tokens[:-1], range(len(tokens) - 1))
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
    ``Classification`` describes. Every scorer of the prompt contract decides through here."""
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


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    top = values.max()
    return values - top - math.log(np.exp(values - top).sum())


def split_template(template: str | None) -> tuple[str, str]:
    """The rendered chat prompt around the user content: (system + user header, user footer +
    assistant header). ``None`` means ChatML. Public so that other scorers of the same model
    (training's Hugging Face scorer) build exactly the engine's prompt."""
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
        raise ModelError("the model's chat template does not render a user message")
    head, tail = rendered.split(_SENTINEL)
    return head, tail


def _manifest(path: Path, sha256: str) -> dict[str, Any] | None:
    """The manifest next to ``path`` (written by ``make model`` or ``python -m conversion``) if
    it describes this very file, else None."""
    try:
        manifest = json.loads(path.with_name("manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    recorded = manifest.get("artifacts", {}).get(path.name, {}).get("sha256")
    return manifest if sha256 in (manifest.get("sha256"), recorded) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
