"""The classifier's scoring on a Hugging Face model: ``service.scoring``'s algorithm over a
transformers backend, so an HF model (merged, or base + peft adapter) and its GGUF are scored
by the same code and can be compared answer by answer."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from algospeak.normalizer import Normalization
from service.calibration import Evidence
from service.scoring import Branch, Classification, Scorer, common_length


class HFBackend:
    """A transformers causal LM and its tokenizer as a :class:`service.scoring.Backend`.

    The key/value cache is kept as snapshots at the positions where evaluations ended; an
    evaluation continues from a copy of the latest snapshot at or before its start (evaluating
    any gap from the token history first). Copies rather than ``Cache.crop``, whose argument
    changed meaning across transformers versions."""

    def __init__(self, model: Any, tokenizer: Any, device: str) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        # transformers 5 renamed the forward's past_key_values to cache; 4.x has only the old name.
        bare = model.get_base_model() if hasattr(model, "get_base_model") else model
        forward = inspect.signature(bare.forward).parameters
        self._cache_argument = "cache" if "cache" in forward else "past_key_values"
        template = tokenizer.chat_template
        if isinstance(template, dict):  # several named templates: the engine uses the default
            template = template.get("default")
        self.chat_template: str | None = template
        bos = tokenizer.bos_token_id
        adds_bos = bos is not None and tokenizer("a", add_special_tokens=True).input_ids[:1] == [
            bos
        ]
        self.bos: int | None = bos if adds_bos else None
        self.context_size: int = model.config.max_position_embeddings
        self.max_branches: int = 1 << 16  # evaluated one by one: no limit of its own
        self._history: list[int] = []  # the tokens of the sequence evaluated so far
        self._snapshots: dict[int, Any] = {}  # position -> the cache holding that many tokens

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        return self.tokenizer.encode(
            text, add_special_tokens=False, split_special_tokens=not special
        )

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self.tokenizer.decode(list(tokens)).encode("utf-8")

    def ends_turn(self, token: int) -> bool:
        return token in self.tokenizer.all_special_ids

    def decode(self, start: int, tokens: Sequence[int], outputs: Sequence[int]) -> list[np.ndarray]:
        import torch  # heavy: only Hugging Face scoring needs it
        from transformers import DynamicCache

        base = max((p for p in self._snapshots if p <= start), default=0)
        cache = copy.deepcopy(self._snapshots[base]) if base else DynamicCache()
        sequence = self._history[base:start] + list(tokens)
        gap = start - base
        positions = sorted(gap + i % len(tokens) for i in outputs)
        # The output layer runs only from the first position asked for (at least the last).
        keep = len(sequence) - min(positions, default=len(sequence) - 1)
        ids = torch.tensor([sequence], device=self.device)
        arguments = {self._cache_argument: cache, "use_cache": True, "logits_to_keep": keep}
        with torch.inference_mode():
            logits = self.model(input_ids=ids, **arguments).logits[0]
        self._history = self._history[:start] + list(tokens)
        self._snapshots = {p: c for p, c in self._snapshots.items() if p <= start}
        self._snapshots[len(self._history)] = cache
        first = len(sequence) - keep
        return [
            torch.log_softmax(logits[p - first].double(), dim=-1).cpu().numpy() for p in positions
        ]

    def decode_branches(self, start: int, branches: Sequence[Branch]) -> list[list[np.ndarray]]:
        """:meth:`service.scoring.Backend.decode_branches`, one ``decode`` per branch, each
        after the tokens it shares with the one evaluated last (up to its first output)."""
        results = []
        for branch in branches:
            reusable = branch.tokens[: branch.outputs[0]] if branch.outputs else branch.tokens
            kept = common_length(tuple(self._history[start:]), reusable)
            outputs = [i - kept for i in branch.outputs]
            results.append(self.decode(start + kept, branch.tokens[kept:], outputs))
        return results


class HFScorer(Scorer):
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
        import torch  # heavy: only Hugging Face scoring needs it
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads is not None:
            # Process-wide. On a busy CPU, more torch threads than free cores is many times
            # slower than fewer (OpenMP workers wait on each other), so callers can cap it.
            torch.set_num_threads(threads)

        self._answers: dict[tuple[tuple[int, ...], Evidence], Classification] = {}
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
        super().__init__(HFBackend(model, tokenizer, device))

    def classify(self, text: str, normalization: Normalization) -> Classification:
        """Score ``text``: the engine's ``Classification``, computed by this model. Answers are
        remembered per prompt (the model is frozen), so verifying several GGUFs against one
        scorer computes each reference answer once."""
        request = self.request_tokens(text, normalization)
        evidence = Evidence.of(normalization)
        key = (tuple(request), evidence)
        if key not in self._answers:
            self._answers[key] = self.score(request, evidence)
        return self._answers[key]
