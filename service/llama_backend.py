"""The scorer's backend on llama-cpp-python: the only code that touches ``Llama``'s private
attributes (its context, batch and vocabulary) and llama.cpp's cache, which change between
releases; so it checks the installed version before loading a model and refuses one it was not
written for.

Where a token's key and value sit in llama.cpp's cache changes its results: the CPU kernels sum
attention over cache cells in SIMD lanes and groups picked by cell index, and a small quantized
model turns those last-bit differences into probabilities about 1e-2 apart. So every token goes
where one rule puts it, whatever else the cache holds: in a cell congruent to its position modulo
:data:`ALIGN`, above its sequence's other cells, and each run of a sequence's tokens evaluated in
one call starts in a :data:`ISOLATE`-cell group holding no other cell of that sequence. A sequence
then gets the same numbers alone or beside others. llama.cpp puts new tokens (and restored
sequence state) in the lowest free cells, in order, so before an evaluation the free cells below
and between the chosen ones are filled with throwaway copies of the prefix's cells (a memory copy
of saved state, no evaluation), which go again afterwards.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.scoring import BackendFullError, Branch, log_softmax

# The releases this adapter was written and tested for (pyproject.toml pins the same range).
SUPPORTED = ((0, 3, 16), (0, 4, 0))  # from, up to but excluding
_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Cells a token's cell index matters modulo (the widest SIMD accumulation pattern, with room).
ALIGN = 64
# Cells summed together as one group in the attention's softmax (AVX-512: 16, AVX2: 8).
ISOLATE = 16
# Cells beyond two contexts, for the alignment of a request's runs (at most a row each).
SPARE_CELLS = 16 * ALIGN
MAX_BRANCHES = 64  # per call: the previous call's, the new ones and the fillers share 256 ids


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


@dataclass(frozen=True, slots=True)
class _Run:
    """Tokens of one sequence to evaluate from position ``first``, with the indices into them
    whose next-token log-probabilities are wanted."""

    sequence: int
    first: int
    tokens: Sequence[int]
    outputs: frozenset[int]


class _Cells:
    """Which cache cells each sequence holds, by position (a mirror of llama.cpp's own
    bookkeeping, kept by making every change to the cache through this backend), and where a
    run may go under the module's placement rule."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.users = [0] * size  # sequences holding each cell; 0: free
        self.of: dict[int, list[int]] = {}  # sequence -> its cell at each position

    def clear(self) -> None:
        self.users = [0] * self.size
        self.of = {}

    def hold(self, sequence: int, cells: Sequence[int]) -> None:
        """``sequence`` holds ``cells`` at its next positions."""
        self.of.setdefault(sequence, []).extend(cells)
        for cell in cells:
            self.users[cell] += 1

    def release(self, sequence: int, start: int = 0) -> None:
        """``sequence`` lets go of its cells from position ``start`` on."""
        cells = self.of.get(sequence, [])
        for cell in cells[start:]:
            self.users[cell] -= 1
        if start:
            del cells[start:]
        else:
            self.of.pop(sequence, None)

    def free_below(self, end: int) -> list[int]:
        """The free cells below ``end``, lowest first: where llama.cpp puts what comes next."""
        return [cell for cell in range(end) if not self.users[cell]]

    def plan(self, runs: Sequence[_Run]) -> list[range]:
        """The cells for each run under the placement rule, lowest first where there is a
        choice; BackendFullError if the cache has no room."""
        taken: set[int] = set()
        placed = []
        for run in runs:
            own = self.of.get(run.sequence, [])
            floor = -(-(own[-1] + 1) // ISOLATE) * ISOLATE if own else 0
            cell = floor + (run.first - floor) % ALIGN
            while not self._free(cell, len(run.tokens), taken):
                cell += ALIGN
                if cell + len(run.tokens) > self.size:
                    raise BackendFullError("the cache has no room for these branches")
            placed.append(range(cell, cell + len(run.tokens)))
            taken.update(placed[-1])
        return placed

    def _free(self, cell: int, count: int, taken: set[int]) -> bool:
        end = cell + count
        return end <= self.size and not any(self.users[c] or c in taken for c in range(cell, end))


class LlamaBackend:
    """A GGUF model loaded by llama-cpp-python, as a :class:`service.scoring.Backend`.

    Its context holds several sequences over one shared ("unified") key/value cache: sequence
    0 is the main one (``decode``); the others hold the branches of the last
    ``decode_branches`` call, sharing the cells of the positions they have in common. The cache
    has room for two contexts and :data:`SPARE_CELLS` for the placement rule."""

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
        self.context_size: int = self._llm.n_ctx()  # per sequence, as llama.cpp rounded it
        sequences = llama_cpp.llama_max_parallel_sequences()
        cells = 2 * self.context_size + SPARE_CELLS
        _branching_context(self._llm, cells=cells, sequences=sequences)
        self._cells = _Cells(self._llm._ctx.n_ctx())
        self.max_branches: int = MAX_BRANCHES
        self._scratch = sequences - 1  # where filler state is cut from the prefix
        self._ids = range(1, self._scratch)
        self._branches: dict[int, tuple[int, ...]] = {}  # sequence -> its tokens after the start
        self._branch_start = 0
        self._fillers: dict[int, Any] = {}  # cells -> saved state of that many prefix cells
        self.decode_calls = 0  # llama_decode calls so far (what a request's cost is counted in)

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._llm.detokenize(list(tokens))

    def ends_turn(self, token: int) -> bool:
        from llama_cpp import llama_vocab_is_control, llama_vocab_is_eog

        vocab = self._llm._model.vocab
        return bool(llama_vocab_is_eog(vocab, token) or llama_vocab_is_control(vocab, token))

    def decode(self, start: int, tokens: Sequence[int], outputs: Sequence[int]) -> list[np.ndarray]:
        """Evaluate ``tokens`` on the main sequence from position ``start`` (forgetting its
        later ones), asking llama.cpp for logits at several positions of one batch, so scoring
        needs fewer decode calls (and no ``logits_all`` buffer). From position 0 the cache
        starts over."""
        if start == 0:
            self._clear()
        else:
            if start < self._branch_start:  # the branches continued what is rewritten now
                self._drop_branches()
            self._forget(0, start)
        wanted = frozenset(i % len(tokens) for i in outputs)
        (log_probs,) = self._evaluate([_Run(0, start, tokens, wanted)])
        return log_probs

    def decode_branches(self, start: int, branches: Sequence[Branch]) -> list[list[np.ndarray]]:
        """:meth:`service.scoring.Backend.decode_branches`: each branch on a sequence of its
        own, all in one llama_decode call (or one per ``n_batch`` tokens). A branch reuses
        a branch of the previous call only as a whole (one that its tokens before their first
        output begin with), so that where runs start never depends on what else was
        evaluated."""
        free = [s for s in self._ids if s not in self._branches]
        if len(branches) > min(self.max_branches, len(free)):
            raise BackendFullError(f"{len(branches)} branches; one call takes {self.max_branches}")
        if start != self._branch_start:
            self._drop_branches()
            self._branch_start = start
        sources = [self._continued(branch) for branch in branches]
        runs = []
        for branch, (source, kept), sequence in zip(branches, sources, free, strict=False):
            self._alias(source, sequence, start + kept)
            outputs = frozenset(i - kept for i in branch.outputs)
            runs.append(_Run(sequence, start + kept, branch.tokens[kept:], outputs))
        self._drop_branches()  # what the new branches reuse is theirs now too
        self._branches = {run.sequence: b.tokens for run, b in zip(runs, branches, strict=True)}
        try:
            return self._evaluate(runs)
        except Exception:
            self._drop_branches()  # half-written: trust none of it
            raise

    def evaluate(self, start: int, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` on the main sequence from position ``start`` with no outputs
        but the last: the raw model cost that benchmarks compare scoring with."""
        self.decode(start, tokens, (-1,))

    def close(self) -> None:
        self._llm.close()

    def _continued(self, branch: Branch) -> tuple[int, int]:
        """(the sequence ``branch`` continues, how many of its tokens that one holds): the
        longest branch of the last call that its tokens before the first output begin with,
        or the main sequence (holding none of them)."""
        reusable = branch.tokens[: branch.outputs[0]] if branch.outputs else branch.tokens
        best = (0, 0)
        for sequence, tokens in self._branches.items():
            if best[1] < len(tokens) <= len(reusable) and reusable[: len(tokens)] == tokens:
                best = (sequence, len(tokens))
        return best

    def _evaluate(self, runs: Sequence[_Run]) -> list[list[np.ndarray]]:
        """Evaluate ``runs`` where the placement rule puts them, ``n_batch`` tokens per
        llama_decode call; per run, the log-probabilities at its outputs in order."""
        placed = self._cells.plan(runs)
        fillers = self._fill_around(placed)
        try:
            entries = sorted(
                (cell, run.tokens[i], run.first + i, run.sequence, i in run.outputs, r)
                for r, (run, cells) in enumerate(zip(runs, placed, strict=True))
                for i, cell in enumerate(cells)
            )
            results: list[list[np.ndarray]] = [[] for _ in runs]
            for offset in range(0, len(entries), self._llm.n_batch):
                chunk = entries[offset : offset + self._llm.n_batch]
                for r, log_probs in self._decode_chunk([entry[1:] for entry in chunk]):
                    results[r].append(log_probs)
        except Exception:
            for run in runs:  # llama.cpp may hold some of them; the mirror holds none
                self._remove(run.sequence, run.first, -1)
            raise
        finally:
            for sequence in fillers:
                self._forget(sequence, 0)
        for run, cells in zip(runs, placed, strict=True):
            self._cells.hold(run.sequence, cells)
        return results

    def _decode_chunk(
        self, chunk: Sequence[tuple[int, int, int, bool, int]]
    ) -> list[tuple[int, np.ndarray]]:
        """One llama_decode of ``(token, position, sequence, output, run)`` entries, which go
        to the lowest free cells in order; (run, log-probabilities) at each output."""
        from llama_cpp import llama_get_logits_ith

        llm = self._llm
        batch = llm._batch.batch
        batch.n_tokens = len(chunk)
        for i, (token, position, sequence, output, _) in enumerate(chunk):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = output
        llm._ctx.decode(llm._batch)
        self.decode_calls += 1
        found = []
        for i, (_, _, _, output, run) in enumerate(chunk):
            if output:
                pointer = llama_get_logits_ith(llm._ctx.ctx, i)
                found.append(
                    (run, log_softmax(np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))))
                )
        return found

    def _fill_around(self, placed: Sequence[range]) -> list[int]:
        """Occupy every free cell below the last of ``placed`` but those (with restored copies
        of prefix cells), so that the next evaluation lands exactly there; the filler
        sequences."""
        targets = {cell for cells in placed for cell in cells}
        free = self._cells.free_below(max(targets) + 1)
        if len(free) == len(targets):
            return []
        size = len(self._cells.of[0])  # the prefix's cells are the fillers' source
        chunks = [free[offset : offset + size] for offset in range(0, len(free), size)]
        fillers = [s for s in self._ids if s not in self._branches][: len(chunks)]
        if len(fillers) < len(chunks):
            raise BackendFullError("no sequence left for the fillers that place these branches")
        try:
            for sequence, cells in zip(fillers, chunks, strict=True):
                self._restore(sequence, len(cells))
        except Exception:
            for sequence in fillers:
                self._remove(sequence, 0, -1)
            raise
        # Then free the targets again (all fillers first: each restore takes the lowest free
        # cells); the evaluation fills them, in this order.
        for sequence, cells in zip(fillers, chunks, strict=True):
            for position, cell in enumerate(cells):
                if cell in targets:
                    self._remove(sequence, position, position + 1)
            self._cells.hold(sequence, [cell for cell in cells if cell not in targets])
        return fillers

    def _restore(self, sequence: int, count: int) -> None:
        """Put a copy of the prefix's first ``count`` cells in sequence ``sequence``, in the
        lowest free cells."""
        from llama_cpp import llama_state_seq_set_data

        state = self._fillers.get(count)
        if state is None:
            state = self._fillers[count] = self._saved_prefix(count)
        if llama_state_seq_set_data(self._llm._ctx.ctx, state, len(state), sequence) == 0:
            raise RuntimeError("llama.cpp could not restore filler cells")

    def _saved_prefix(self, count: int) -> Any:
        """The saved state of the main sequence's first ``count`` cells."""
        from llama_cpp import (
            llama_memory_seq_cp,
            llama_state_seq_get_data,
            llama_state_seq_get_size,
        )

        context = self._llm._ctx
        llama_memory_seq_cp(context.memory, 0, self._scratch, 0, count)
        try:
            size = llama_state_seq_get_size(context.ctx, self._scratch)
            state = (ctypes.c_uint8 * size)()
            llama_state_seq_get_data(context.ctx, state, size, self._scratch)
        finally:
            self._remove(self._scratch, 0, -1)
        return state

    def _alias(self, source: int, target: int, end: int) -> None:
        """Let sequence ``target`` hold sequence ``source``'s positions before ``end`` (the
        cache shares their cells: only bookkeeping changes)."""
        from llama_cpp import llama_memory_seq_cp

        self._forget(target, 0)
        llama_memory_seq_cp(self._llm._ctx.memory, source, target, 0, end)
        self._cells.hold(target, self._cells.of.get(source, [])[:end])

    def _forget(self, sequence: int, start: int) -> None:
        """Sequence ``sequence`` lets go of its positions from ``start`` on."""
        self._remove(sequence, start, -1)
        self._cells.release(sequence, start)

    def _remove(self, sequence: int, start: int, end: int) -> None:
        from llama_cpp import llama_memory_seq_rm

        llama_memory_seq_rm(self._llm._ctx.memory, sequence, start, end)

    def _drop_branches(self) -> None:
        for sequence in self._branches:
            self._forget(sequence, 0)
        self._branches = {}

    def _clear(self) -> None:
        """Empty the cache (llama.cpp then starts filling it from cell 0)."""
        from llama_cpp import llama_memory_clear

        llama_memory_clear(self._llm._ctx.memory, True)
        self._cells.clear()
        self._branches = {}
        self._branch_start = 0
        self._fillers = {}


def _branching_context(llm: Any, *, cells: int, sequences: int) -> None:
    """Replace ``llm``'s context with one made the same way but holding ``sequences``
    sequences over one cache of ``cells`` cells, shared between them. (``Llama`` exposes
    neither setting; it sets them only for embeddings.)"""
    from llama_cpp import llama_adapter_lora_p_ctypes, llama_set_adapters_lora
    from llama_cpp._internals import LlamaContext

    params = llm.context_params
    params.n_ctx = cells
    params.n_seq_max = sequences
    params.kv_unified = True
    # llama.cpp keeps room for the logits of at least one output per sequence.
    params.n_outputs_max = max(params.n_batch, sequences)
    context = LlamaContext(model=llm._model, params=params, verbose=False)
    if llm._lora_adapter is not None:  # an adapter is set per context
        adapters = (llama_adapter_lora_p_ctypes * 1)(llm._lora_adapter)
        scales = (ctypes.c_float * 1)(llm.lora_scale)
        if llama_set_adapters_lora(context.ctx, adapters, 1, scales):
            context.close()
            raise RuntimeError(f"could not apply the LoRA adapter {llm.lora_path}")
    llm._ctx.close()
    llm._ctx = context
