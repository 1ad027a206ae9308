"""The classifier's scoring on a Hugging Face model: the same prompt, tokens and arithmetic as
``service.engine.Engine``, so an HF model (merged, or base + peft adapter) and its GGUF can be
compared answer by answer.

Like the engine it reads the label distribution after ``Label:`` (multi-token values scored by
their whole token sequence, renormalized over the allowed values), then the category given
``harmful, Category:``, then the severity given the top category. The fixed prefix (system
prompt and user-turn header) is evaluated once and its key/value cache reused for every text.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

from algospeak.normalizer import Normalization
from algospeak.prompt import (
    LABEL_PREFIX,
    USER_PREFIX,
    user_content,
)
from service.engine import AnswerTokens, Classification, decide, renormalize, split_template


class HFScorer:
    """Scores texts with a Hugging Face causal LM exactly as the GGUF engine does.

    ``model`` is a model folder (or Hub id) or a loaded model; ``tokenizer`` defaults to the
    one in ``adapter`` (training saves it there) or in ``model``. With ``adapter`` (a peft
    adapter folder) the model is wrapped unmerged, for "base + adapter" evaluation. ``dtype``
    is a torch dtype name or "auto" (the precision the checkpoint is stored in). Not
    thread-safe (one cache).
    """

    def __init__(
        self,
        model: str | Path | Any,
        tokenizer: Any | None = None,
        device: str = "cpu",
        *,
        adapter: str | Path | None = None,
        dtype: str = "float32",
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads is not None:
            # Process-wide. On a busy CPU, more torch threads than free cores is many times
            # slower than fewer (OpenMP workers wait on each other), so callers can cap it.
            torch.set_num_threads(threads)

        self._answers: dict[tuple[int, ...], Classification] = {}
        self.source = f"{type(model).__name__} object"
        if isinstance(model, str | Path):
            source = self.source = str(model)
            precision = "auto" if dtype == "auto" else getattr(torch, dtype)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=precision)
            if tokenizer is None:
                has_own = adapter is not None and (Path(adapter) / "tokenizer.json").is_file()
                tokenizer = AutoTokenizer.from_pretrained(str(adapter) if has_own else source)
        if tokenizer is None:
            raise ValueError("pass the tokenizer with a loaded model")
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
            self.source += f" + {adapter}"
        self.model = model.to(device).eval()
        # transformers 5 renamed the forward's past_key_values to cache; 4.x has only the old name.
        bare = model.get_base_model() if hasattr(model, "get_base_model") else model
        forward = inspect.signature(bare.forward).parameters
        self._cache_argument = "cache" if "cache" in forward else "past_key_values"
        self.tokenizer = tokenizer
        self.device = device

        template = tokenizer.chat_template
        if isinstance(template, dict):  # several named templates: the engine uses the default
            template = template.get("default")
        head, tail = split_template(template)
        self.prefix = self._tokens(head, special=True) + self._tokens(USER_PREFIX)
        bos = tokenizer.bos_token_id
        if bos is not None and tokenizer("a", add_special_tokens=True).input_ids[:1] == [bos]:
            self.prefix = [bos, *self.prefix]
        self._tail = self._tokens(tail + LABEL_PREFIX, special=True)
        self._answer = AnswerTokens.of(self._tokens)
        self._prefix_cache: Any = None
        self._evaluated = 0

    def request_tokens(self, text: str, normalization: Normalization) -> list[int]:
        """The tokens after the fixed prefix, up to and including ``Label:`` (as the engine's)."""
        content = user_content(text, normalization).removeprefix(USER_PREFIX)
        return self._tokens(content) + self._tail

    def classify(self, text: str, normalization: Normalization) -> Classification:
        """Score ``text``: the engine's ``Classification``, computed by this model. Answers are
        remembered per prompt (the model is frozen), so verifying several GGUFs against one
        scorer computes each reference answer once."""
        request = self.request_tokens(text, normalization)
        key = tuple(request)
        if key not in self._answers:
            self._answers[key] = self._classify(request)
        return self._answers[key]

    def _classify(self, request: list[int]) -> Classification:
        prefix = self._prefix_state()
        self._evaluated = 0
        cache = self._fork(prefix)
        (label_log_probs,) = self._decode(cache, request)
        labels = self._distribution(self._answer.labels, label_log_probs, cache)
        (category_log_probs,) = self._decode(cache, self._answer.to_category)
        categories = self._distribution(self._answer.categories, category_log_probs, cache)
        top_category = max(categories, key=categories.__getitem__)
        (severity_log_probs,) = self._decode(
            cache, self._answer.categories[top_category] + self._answer.to_severity
        )
        severities = self._distribution(self._answer.severities, severity_log_probs, cache)
        return decide(labels, categories, severities, self._evaluated)

    def _tokens(self, text: str, *, special: bool = False) -> list[int]:
        # special=False: "<|im_start|>" typed by a user stays text, as in the engine.
        return self.tokenizer.encode(
            text, add_special_tokens=False, split_special_tokens=not special
        )

    def _prefix_state(self) -> Any:
        if self._prefix_cache is None:
            from transformers import DynamicCache

            self._prefix_cache = DynamicCache()
            self._decode(self._prefix_cache, self.prefix)
        return self._prefix_cache

    @staticmethod
    def _fork(cache: Any) -> Any:
        # A copy rather than cropping in place: Cache.crop changed meaning across transformers
        # versions, and a copy of a few hundred positions is cheap next to a forward pass.
        return copy.deepcopy(cache)

    def _decode(self, cache: Any, tokens: list[int], outputs: range | None = None) -> list[Any]:
        """Run ``tokens`` after ``cache`` (extending it) and return the next-token
        log-probabilities (float64) after each position in ``outputs`` (default: the last)."""
        import torch

        positions = list(outputs) if outputs is not None else [len(tokens) - 1]
        keep = len(tokens) - min(positions)  # the output layer runs on these positions only
        ids = torch.tensor([tokens], device=self.device)
        arguments = {self._cache_argument: cache, "use_cache": True, "logits_to_keep": keep}
        with torch.inference_mode():
            logits = self.model(input_ids=ids, **arguments).logits[0]
        self._evaluated += len(tokens)
        first = len(tokens) - keep
        return [torch.log_softmax(logits[p - first].double(), dim=-1).cpu() for p in positions]

    def _distribution(
        self, options: dict[str, list[int]], log_probs: Any, cache: Any
    ) -> dict[str, float]:
        """P(option) renormalized over ``options``; ``log_probs`` follow the context in
        ``cache``, which multi-token options extend on copies (never in place)."""
        scores: dict[str, float] = {}
        for option, tokens in options.items():
            score = float(log_probs[tokens[0]])
            if len(tokens) > 1:
                steps = self._decode(self._fork(cache), tokens[:-1], range(len(tokens) - 1))
                score += sum(float(step[t]) for step, t in zip(steps, tokens[1:], strict=True))
            scores[option] = score
        return renormalize(scores)
