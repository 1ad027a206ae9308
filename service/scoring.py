"""The one scoring algorithm of the prompt contract, over a small backend interface.

A scorer never free-generates a decision. Right after the prompt (the assistant header) it reads
the model's distribution over the allowed labels (a value of several tokens, as a tokenizer may
split one, is scored by its whole token sequence; renormalized over the allowed values); then
the category given ``harmful``; then the severity given the top category, each probability
calibrated (``service.calibration``) before it decides. The system prompt and the user-turn
header are evaluated once; each request continues from that prefix and evaluates only its own
tokens, in at most two model calls: its own tokens with the harmful answer's lead-in
`` harmful,`` (which give the labels and the categories), and, as a branch of the same call, the
severity after the category the normalizer's findings point to (``Evidence.likely_category``);
then,
only if the model's top category is another, everything else at once as separate branches
(with the contract's one-token values, just the severity after the top category, `` self,``).
The numbers are the same either way. Several requests are scored together, each on its own
branches, in the same calls. Only
when asked, after a decision, ``reason`` writes the contract's optional reason line for it; the
decision is final by then and cannot depend on the reason.

A backend (``service.llama_backend`` for GGUF files, ``training.hf_scorer`` for Hugging Face
models) tokenizes and evaluates tokens; everything else is here, so a number measured offline is
the number served. No llama_cpp or torch here. A scorer is not thread-safe (one cache).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
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
from service.calibration import NO_EVIDENCE, Calibration, Evidence

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


class BackendFullError(RuntimeError):
    """A ``decode_branches`` call holds more than the backend can take at once; it evaluated
    nothing, and fewer branches may fit."""


TokenPath = tuple[int, ...]  # tokens after the fixed prefix, naming the position after the last one
# A request and the normalizer's evidence about it (see Scorer.score).
_WithEvidence = tuple[TokenPath, Evidence]


@dataclass(frozen=True, slots=True)
class Branch:
    """Tokens to evaluate as one continuation, and the indices into them (ascending) after
    which the next-token log-probabilities are wanted."""

    tokens: TokenPath
    outputs: tuple[int, ...]


class Backend(Protocol):
    """What a scorer needs from a model: its tokenizer and a way to evaluate tokens."""

    chat_template: str | None  # the model's Jinja chat template; None for ChatML
    bos: int | None  # the token every sequence starts with, None if the model wants none
    context_size: int  # most tokens one sequence may hold
    max_branches: int  # most branches one decode_branches call may hold

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """``text``'s tokens; with ``special`` false, control-token text stays plain text."""
        ...

    def decode(self, start: int, tokens: Sequence[int], outputs: Sequence[int]) -> list[np.ndarray]:
        """Evaluate ``tokens`` right after the first ``start`` tokens evaluated so far
        (forgetting any later ones) and return the next-token log-probabilities (float64)
        after each position in ``outputs`` (indices into ``tokens``; negative ones count from
        the end), in ascending position order."""
        ...

    def decode_branches(self, start: int, branches: Sequence[Branch]) -> list[list[np.ndarray]]:
        """Evaluate each branch as its own continuation of the first ``start`` tokens that
        ``decode`` evaluated (no branch sees another's tokens; those ``start`` tokens stay) and
        return, per branch, the next-token log-probabilities (float64) after each of its
        ``outputs``. The evaluation of a branch's leading tokens (up to its first output) that
        a branch of the previous call from the same ``start`` began with may be reused, so a
        call that continues the previous one's branches evaluates only the new tokens.

        A call may hold at most ``max_branches`` branches and ``context_size`` distinct
        positions after ``start`` (reused ones included); more may fail."""
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

    labels: dict[str, TokenPath]
    categories: dict[str, TokenPath]
    severities: dict[str, TokenPath]
    to_category: TokenPath  # " harmful,"
    to_severity: TokenPath  # "," (after the top category's tokens)

    @classmethod
    def of(cls, tokenize: Callable[[str], list[int]]) -> AnswerTokens:
        def tokens(text: str) -> TokenPath:
            return tuple(tokenize(text))

        labels = {v: tokens(value(v)) for v in LABELS}
        return cls(
            labels=labels,
            categories={v: tokens(value(v)) for v in HARM_CATEGORIES},
            severities={v: tokens(value(v)) for v in HARM_SEVERITIES},
            to_category=labels["harmful"] + tokens(CATEGORY_PREFIX),
            to_severity=tokens(SEVERITY_PREFIX),
        )


class Scorer:
    """The prompt contract's scoring on ``backend``, its probabilities corrected by
    ``calibration`` (none by default) before the decision.

    Scoring reads next-token log-probabilities at *paths*: token sequences after the fixed
    prefix, each naming the position after its last token. A value is scored by its whole
    token sequence: the log-probability of its first token at the fork, plus that of each
    further token at the path that leads to it."""

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
        # (request tokens, the decided answer) of the last score(), which reason() continues;
        # None when there is nothing to continue.
        self._answered: tuple[TokenPath, Answer] | None = None
        # The tokens the last scoring evaluated after the prefix (benchmarks replay them through
        # a bare evaluation to measure the scorer's own overhead).
        self.last_evaluated: list[int] = []
        # Whether the first call scores every category exactly (each is one token, as the
        # contract's are for the tokenizers it was made for): then the second reads the
        # severity after the top category only, else after each (see _contenders).
        self._categories_known = all(len(t) == 1 for t in self._answer.categories.values())
        # What the answer adds to a request at most: positions, and branches in one backend
        # call; a one-token stand-in request measures it.
        categories = tuple(self._answer.categories)
        answer = self._needed((0,), categories[:1] if self._categories_known else categories)
        self._answer_positions = len(evaluated_tokens(answer)) - 1
        self._answer_branches = len(branches_for(sorted(set(answer))))

    def request_tokens(self, text: str, normalization: Normalization) -> list[int]:
        """The tokens a request adds after the fixed prefix, up to the answer's start;
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
        request = self.request_tokens(text, normalization)
        return self.score(request, Evidence.of(normalization))

    def score(self, request: list[int], evidence: Evidence = NO_EVIDENCE) -> Classification:
        """Score the request tokens ``request`` (from :meth:`request_tokens`); ``reason``
        may follow. ``evidence``: what the normalizer found in the text, which the calibration
        weighs; its ``likely_category`` is the category to read the severity after in the
        first call, which saves a call when it is the top and changes no number."""
        (result,) = self.score_many([request], [evidence])
        self._answered = (tuple(request), Answer(result.label, result.category, result.severity))
        return result

    def score_many(
        self, requests: Sequence[list[int]], evidence: Sequence[Evidence] | None = None
    ) -> list[Classification]:
        """Score several requests (each from :meth:`request_tokens`, with its ``evidence`` as
        :meth:`score` takes it) together: at most two backend calls for as many as fit the
        backend at once (more calls for more), and for each the answer ``score`` gives it
        alone."""
        self._answered = None
        self.last_evaluated = []
        evidence = evidence if evidence is not None else [NO_EVIDENCE] * len(requests)
        pairs = zip(requests, evidence, strict=True)
        results: list[Classification] = []
        for group in self._groups([(tuple(request), found) for request, found in pairs]):
            results += self._score_fitting(group)
        return results

    def reason(self, max_tokens: int) -> str:
        """The model's reason line for the last ``score()`` decision: its answer line (as
        decided) and ``Reason:`` are appended, then at most ``max_tokens`` tokens are generated
        greedily, up to a newline or the end of the turn; stripped, possibly empty.

        Call it right after ``score()`` on the same thread, holding the same slot: it
        continues the cache that call left. It changes nothing ``score()`` returned."""
        if self._answered is None:
            raise RuntimeError("reason() continues a classify() call; none preceded it")
        request, answer = self._answered
        self._answered = None
        # The rest of the answer line and the reason prefix, tokenized in one piece as in
        # training (the split before the label is the one scoring already makes).
        rest = format_answer(answer).removeprefix(LABEL_PREFIX) + "\n" + REASON_PREFIX
        path = request + tuple(self._tokens(rest))
        start = self.prefix_end()
        budget = min(max_tokens, self.backend.context_size - start - len(path))
        written = b""
        if budget > 0:
            log_probs = self._next(start, path)
            for step in range(budget):
                token = int(np.argmax(log_probs))
                if self.backend.ends_turn(token):
                    break
                written += self.backend.detokenize([token])
                if b"\n" in written.lstrip():  # the line is complete (leading blanks aside)
                    break
                if step + 1 < budget:
                    path += (token,)
                    log_probs = self._next(start, path)
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

    def _groups(self, requests: Sequence[_WithEvidence]) -> Iterator[list[_WithEvidence]]:
        """``requests`` in order, in groups that one backend call can take: at most
        ``context_size`` positions and ``max_branches`` branches (a request that fits the
        context alone is a group)."""
        most = max(1, self.backend.max_branches // self._answer_branches)
        group: list[_WithEvidence] = []
        positions = 0
        for request in requests:
            needs = len(request[0]) + self._answer_positions
            if group and (positions + needs > self.backend.context_size or len(group) == most):
                yield group
                group, positions = [], 0
            group.append(request)
            positions += needs
        if group:
            yield group

    def _score_fitting(self, requests: list[_WithEvidence]) -> list[Classification]:
        """Score ``requests`` together, in halves (recursively) where the backend cannot take
        them at once: each answer is the same either way."""
        try:
            return self._score_group(requests)
        except BackendFullError:
            if len(requests) == 1:
                raise
            half = len(requests) // 2
            return self._score_fitting(requests[:half]) + self._score_fitting(requests[half:])

    def _score_group(self, requests: list[_WithEvidence]) -> list[Classification]:
        start = self.prefix_end()
        found: dict[TokenPath, np.ndarray] = {}
        # First call: each request and the harmful answer's lead-in, which give the labels'
        # first tokens (at the answer's start) and, since causal attention never looks ahead,
        # the categories' first tokens (after " harmful,"); with them, the severity after the
        # guessed category, which is all the second call would read when the guess is the top.
        first = [self._first(request, e.likely_category) for request, e in requests]
        self._find(start, found, first)
        # Second call, for what is still missing: every other continuation, with the severity
        # after each category that may be the top (none when every guess was the top).
        second = [self._needed(r, self._contenders(r, e, found)) for r, e in requests]
        self._find(start, found, second)
        results = []
        for (request, evidence), read, paths in zip(requests, first, second, strict=True):
            evaluated = evaluated_tokens(read + paths)
            self.last_evaluated += evaluated
            results.append(self._decide(request, evidence, found, len(evaluated)))
        return results

    def _needed(self, request: TokenPath, categories: Sequence[str]) -> list[TokenPath]:
        """The paths scoring ``request`` reads, with the severity read after each of
        ``categories``."""
        answer = self._answer
        paths = _option_paths(request, answer.labels)
        paths += _option_paths(request + answer.to_category, answer.categories)
        for category in categories:
            paths += self._severity_paths(request, category)
        return paths

    def _first(self, request: TokenPath, guess: str | None) -> list[TokenPath]:
        """What the first call reads for ``request``: the paths on the way to " harmful,"
        (the labels' first tokens, every category's first token), and the severity after
        ``guess`` when the first call can tell whether it is the top (every category one
        token)."""
        fork = request + self._answer.to_category
        paths = [p for p in self._needed(request, ()) if _starts(fork, p)]
        if guess is not None and self._categories_known:
            paths += self._severity_paths(request, guess)
        return paths

    def _severity_paths(self, request: TokenPath, category: str) -> list[TokenPath]:
        """The paths that score the severity after ``category``."""
        answer = self._answer
        fork = request + answer.to_category + answer.categories[category] + answer.to_severity
        return _option_paths(fork, answer.severities)

    def _contenders(
        self, request: TokenPath, evidence: Evidence, found: dict[TokenPath, np.ndarray]
    ) -> tuple[str, ...]:
        """The categories that may be the top once all are scored: the top itself when the
        first call scored them all, else every category (the calibration may reorder them, so
        no bound from a value's first token rules one out)."""
        if self._categories_known:
            return (top(self._categories(request, evidence, found)),)
        return tuple(self._answer.categories)

    def _categories(
        self, request: TokenPath, evidence: Evidence, found: dict[TokenPath, np.ndarray]
    ) -> dict[str, float]:
        """P(category | harmful) for ``request``, calibrated."""
        fork = request + self._answer.to_category
        scores = _option_scores(found, fork, self._answer.categories)
        return self.calibration.categories(scores, evidence)

    def _decide(
        self,
        request: TokenPath,
        evidence: Evidence,
        found: dict[TokenPath, np.ndarray],
        evaluated: int,
    ) -> Classification:
        answer = self._answer
        categories = self._categories(request, evidence, found)
        chosen = answer.categories[top(categories)]
        severity_fork = request + answer.to_category + chosen + answer.to_severity
        return decide(
            self.calibration.labels(_option_scores(found, request, answer.labels), evidence),
            categories,
            _option_scores(found, severity_fork, answer.severities),
            evaluated,
        )

    def _find(
        self, start: int, found: dict[TokenPath, np.ndarray], wanted: Sequence[Sequence[TokenPath]]
    ) -> None:
        """Add the log-probabilities at every path of ``wanted`` (per request) not yet in
        ``found``, in one ``decode_branches`` call (none if nothing is missing)."""
        missing = sorted({path for paths in wanted for path in paths if path not in found})
        if not missing:
            return
        planned = branches_for(missing)
        results = self.backend.decode_branches(start, [branch for branch, _ in planned])
        for (_, paths), log_probs in zip(planned, results, strict=True):
            found.update(zip(paths, log_probs, strict=True))

    def _next(self, start: int, path: TokenPath) -> np.ndarray:
        """The next-token log-probabilities after ``path``."""
        ((log_probs,),) = self.backend.decode_branches(start, [Branch(path, (len(path) - 1,))])
        return log_probs


def _option_paths(fork: TokenPath, options: dict[str, TokenPath]) -> list[TokenPath]:
    """The paths that scoring ``options`` after ``fork`` reads."""
    return [fork] + [
        fork + tokens[:k] for tokens in options.values() for k in range(1, len(tokens))
    ]


def _option_scores(
    found: dict[TokenPath, np.ndarray], fork: TokenPath, options: dict[str, TokenPath]
) -> dict[str, float]:
    """P(option) after ``fork`` renormalized over ``options``, each scored by its whole token
    sequence."""
    return renormalize(
        {
            option: sum(float(found[fork + tokens[:k]][t]) for k, t in enumerate(tokens))
            for option, tokens in options.items()
        }
    )


def _starts(path: TokenPath, prefix: TokenPath) -> bool:
    return path[: len(prefix)] == prefix


def branches_for(paths: Sequence[TokenPath]) -> list[tuple[Branch, list[TokenPath]]]:
    """The fewest branches that read every one of ``paths`` (distinct, sorted, non-empty):
    each path that another extends is read along that one. Per branch, the paths its outputs
    stand for, in order."""
    chains: list[list[TokenPath]] = []  # each from its longest path down
    for path in reversed(paths):
        # In sorted order, a path that any other extends is extended by the very next one.
        extended = chains and _starts(chains[-1][-1], path) and len(chains[-1][-1]) > len(path)
        if extended:
            chains[-1].append(path)
        else:
            chains.append([path])
    planned = []
    for chain in reversed(chains):
        chain.reverse()
        planned.append((Branch(chain[-1], tuple(len(p) - 1 for p in chain)), chain))
    return planned


def evaluated_tokens(paths: Sequence[TokenPath]) -> list[int]:
    """The tokens at the distinct positions on ``paths``, each once (a tree's nodes in
    order)."""
    tokens: list[int] = []
    previous: TokenPath = ()
    for path in sorted(set(paths)):
        # Sorted, a path shares the most with the one just before it.
        tokens += path[common_length(previous, path) :]
        previous = path
    return tokens


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    shortest = min(len(a), len(b))
    if a[:shortest] == b[:shortest]:  # the usual case: one continues the other
        return shortest
    low, high = 0, shortest - 1
    while low < high:  # binary search with slice comparisons: long requests compare in C
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


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
        category=top(categories) if label == "harmful" else "none",
        severity=top(severities) if label == "harmful" else "none",
        confidence=labels[label],
        label_scores=labels,
        category_scores={"none": labels["safe"]} | {c: harmful * p for c, p in categories.items()},
        severity_scores={"none": labels["safe"]} | {s: harmful * p for s, p in severities.items()},
        tokens_evaluated=tokens_evaluated,
    )


def top(scores: dict[str, float]) -> str:
    """The option with the highest score (the first of equals)."""
    return max(scores, key=scores.__getitem__)


def renormalize(log_scores: dict[str, float]) -> dict[str, float]:
    """Probabilities from log-scores, renormalized over the options given (a stable softmax)."""
    best = max(log_scores.values())
    weights = {option: math.exp(score - best) for option, score in log_scores.items()}
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
