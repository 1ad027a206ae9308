"""The scorer's backend on llama-cpp-python: the only code that touches ``Llama``'s private
attributes (its context, batch and vocabulary), which change between releases; so it checks the
installed version before loading a model and refuses one it was not written for."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.scoring import log_softmax

# The releases this adapter was written and tested for (pyproject.toml pins the same range).
SUPPORTED = ((0, 3, 16), (0, 4, 0))  # from, up to but excluding
_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


class UnsupportedVersionError(RuntimeError):
    """The installed llama-cpp-python is outside :data:`SUPPORTED`."""


def check_version(version: str) -> None:
    """UnsupportedVersionError unless ``version`` is within :data:`SUPPORTED`."""
    match = _RELEASE.match(version)
    low, high = SUPPORTED
    if match is None or not low <= tuple(map(int, match.groups())) < high:
        wanted = f"llama-cpp-python>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        raise UnsupportedVersionError(
            f"llama-cpp-python {version} is not supported: the engine reads its internals and "
            f"was written for '{wanted}'; install that (pip install '{wanted}')"
        )


class LlamaBackend:
    """A GGUF model loaded by llama-cpp-python, as a :class:`service.scoring.Backend`."""

    def __init__(
        self, path: Path, *, threads: int, context: int, batch: int, lora_path: Path | None
    ) -> None:
        """Load the GGUF at ``path`` (with the GGUF LoRA adapter ``lora_path`` applied if
        given). UnsupportedVersionError first if llama-cpp-python is not a supported release;
        ValueError or RuntimeError from llama.cpp if the file cannot be loaded."""
        import llama_cpp  # heavy: only serving a GGUF needs it

        check_version(llama_cpp.__version__)
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=context,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=batch,
            logits_all=False,
            lora_path=str(lora_path) if lora_path is not None else None,
            verbose=False,
        )
        self.metadata: dict[str, Any] = dict(self._llm.metadata)
        self.chat_template: str | None = self.metadata.get("tokenizer.chat_template")
        adds_bos = self.metadata.get("tokenizer.ggml.add_bos_token") == "true"
        self.bos: int | None = self._llm.token_bos() if adds_bos else None
        self.context_size: int = self._llm.n_ctx()

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._llm.detokenize(list(tokens))

    def ends_turn(self, token: int) -> bool:
        from llama_cpp import llama_vocab_is_control, llama_vocab_is_eog

        vocab = self._llm._model.vocab
        return bool(llama_vocab_is_eog(vocab, token) or llama_vocab_is_control(vocab, token))

    def decode(self, start: int, tokens: Sequence[int], outputs: Sequence[int]) -> list[np.ndarray]:
        """Like ``Llama.eval`` from position ``start``, but asking llama.cpp for logits at
        several positions of one batch, so scoring needs fewer decode calls (and no
        ``logits_all`` buffer)."""
        from llama_cpp import llama_get_logits_ith

        llm = self._llm
        llm.n_tokens = start
        wanted = sorted(i % len(tokens) for i in outputs)
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        result: list[np.ndarray] = []
        for offset in range(0, len(tokens), llm.n_batch):
            chunk = list(tokens[offset : offset + llm.n_batch])
            llm._batch.set_batch(batch=chunk, n_past=llm.n_tokens, logits_all=False)
            here = [i - offset for i in wanted if offset <= i < offset + len(chunk)]
            for index in here:
                llm._batch.batch.logits[index] = True
            llm._ctx.decode(llm._batch)
            llm.input_ids[llm.n_tokens : llm.n_tokens + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
            for index in here:
                pointer = llama_get_logits_ith(llm._ctx.ctx, index)
                result.append(log_softmax(np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))))
        return result

    def evaluate(self, start: int, tokens: Sequence[int]) -> None:
        """One plain ``Llama.eval`` of ``tokens`` from position ``start``: the raw model cost
        that benchmarks compare scoring with."""
        self._llm.n_tokens = start
        self._llm.eval(list(tokens))

    def close(self) -> None:
        self._llm.close()
