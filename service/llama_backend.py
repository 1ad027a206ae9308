"""The scorer's backend on llama-cpp-python: the only code that touches ``Llama``'s private
attributes (its context, batch and vocabulary) and llama.cpp's cache, which change between
releases; so it checks the installed version before loading a model and refuses one it was not
written for.

Where a token's key and value sit in llama.cpp's cache changes its results: the CPU kernels sum
attention over cache cells in SIMD lanes and groups picked by cell index, and a small quantized
model turns those last-bit differences into probabilities up to about 0.05 apart. A lone
sequence evaluated in one piece has its token at position p in cell p. Every sequence here is
laid out so that the kernels cannot tell the difference, whatever else the cache holds: each
:data:`BLOCK` of its positions sits in one block of cells congruent to them modulo
:data:`ALIGN`, in order, and where a run of new tokens starts inside a block, copies of that
block's earlier cells (the sequence's own) are put right before it. So a text gets bit for bit
the numbers it gets alone on a fresh cache, in a batch, or in one call or several.

llama.cpp puts new tokens (and restored sequence state) in the lowest free cells, in order; so
before an evaluation every free cell below the chosen ones is filled with throwaway copies of
prefix cells (restored saved state: a memory copy, no evaluation), and those over the chosen
cells are freed again just before their turn.

How many tokens share a decode call must not matter either, yet two of llama.cpp's CPU matrix
kernels for quantized weights choose their summation by it: K-quant weights (Q4_K_M's) are
multiplied by a tiled kernel from 8 rows on and row by row below, and repacked weights (Q4_K,
Q4_0, Q8_0) four rows at a time with the rest row by row. Both are off here (the tiled kernel
by its environment variable, set on import; repacking at load), so each row is computed the
same way in any batch.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.scoring import BackendFullError, Branch, log_softmax

# The releases this adapter was written and tested for (pyproject.toml pins the same range).
SUPPORTED = ((0, 3, 16), (0, 4, 0))  # from, up to but excluding
_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# A token's cell index matters modulo this (the widest SIMD accumulation pattern, with room).
ALIGN = 64
# Cells summed as one group in the attention's softmax (AVX-512: 16, AVX2: 8).
BLOCK = 16
# Cells beyond two contexts, for the alignment of a request's runs (at most a row each).
SPARE_CELLS = 16 * ALIGN
MAX_BRANCHES = 64  # per call: the previous call's, the new ones and the fillers share 256 ids

# llama.cpp reads it once per process, at its first matrix product: set before any model runs
# (see the module's docstring).
os.environ["GGML_CPU_TILED_MM"] = "0"
_LOADING = threading.Lock()  # one model load at a time may wrap llama.cpp's default parameters


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
    """Tokens to evaluate on ``sequence`` from position ``first``, continuing the first
    ``first`` positions of ``source`` (which may be ``sequence`` itself), with the indices into
    them whose next-token log-probabilities are wanted."""

    sequence: int
    source: int
    first: int
    tokens: Sequence[int]
    outputs: frozenset[int]

    @property
    def block(self) -> int:
        """The first position of the block where the run starts: from there on, the run's
        sequence holds its own cells (copies, then the new tokens')."""
        return self.first - self.first % BLOCK


class _Cells:
    """Which cache cells each sequence holds, by position, and how many holders each cell has
    (a mirror of llama.cpp's bookkeeping, kept by making every change to the cache through this
    backend); and where a run may go under the module's layout."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.users = [0] * size  # holders of each cell; 0: free
        self.of: dict[int, list[int]] = {}  # sequence -> its cell at each position

    def clear(self) -> None:
        self.users = [0] * self.size
        self.of = {}

    def hold(self, sequence: int, cells: Sequence[int]) -> None:
        """``sequence`` holds ``cells`` at its next positions."""
        self.of.setdefault(sequence, []).extend(cells)
        self.take(cells)

    def release(self, sequence: int, start: int = 0) -> None:
        """``sequence`` lets go of its cells from position ``start`` on."""
        cells = self.of.get(sequence, [])
        self.give(cells[start:])
        if start:
            del cells[start:]
        else:
            self.of.pop(sequence, None)

    def take(self, cells: Sequence[int]) -> None:
        for cell in cells:
            self.users[cell] += 1

    def give(self, cells: Sequence[int]) -> None:
        for cell in cells:
            self.users[cell] -= 1

    def free_below(self, end: int) -> list[int]:
        """The free cells below ``end``, lowest first: where llama.cpp puts what comes next."""
        return [cell for cell in range(end) if not self.users[cell]]

    def plan(self, spans: Sequence[tuple[int, int, int]]) -> list[range]:
        """Cells for each ``(sequence, first position, count)`` span (starting a block), above
        the sequence's cells and congruent to the positions modulo ALIGN, the lowest such
        free ones; BackendFullError if the cache has no room."""
        taken: set[int] = set()
        placed = []
        for sequence, first, count in spans:
            own = self.of.get(sequence, [])
            floor = -(-(own[-1] + 1) // BLOCK) * BLOCK if own else 0
            cell = floor + (first - floor) % ALIGN
            while not self._free(cell, count, taken):
                cell += ALIGN
                if cell + count > self.size:
                    raise BackendFullError("the cache has no room for these branches")
            placed.append(range(cell, cell + count))
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
        with _weights_as_stored():
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
        self._scratch = sequences - 1  # where cells are saved from (filler, copies)
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
        elif start < self._branch_start:  # the branches continued what is rewritten now
            self._drop_branches()
        wanted = frozenset(i % len(tokens) for i in outputs)
        run = _Run(0, 0, start, tokens, wanted)
        (log_probs,) = self._evaluate([run], self._begin([run]))
        return log_probs

    def decode_branches(self, start: int, branches: Sequence[Branch]) -> list[list[np.ndarray]]:
        """:meth:`service.scoring.Backend.decode_branches`: each branch on a sequence of its
        own, all in one llama_decode call (or one per ``n_batch`` tokens). A branch reuses a
        branch of the previous call only as a whole (one that its tokens before their first
        output begin with), so how a text's tokens are split into runs never depends on what
        else was evaluated."""
        free = [s for s in self._ids if s not in self._branches]
        if len(branches) > min(self.max_branches, len(free)):
            raise BackendFullError(f"{len(branches)} branches; one call takes {self.max_branches}")
        if start != self._branch_start:
            self._drop_branches()
            self._branch_start = start
        runs = []
        for branch, sequence in zip(branches, free, strict=False):
            source, kept = self._continued(branch)
            outputs = frozenset(i - kept for i in branch.outputs)
            runs.append(_Run(sequence, source, start + kept, branch.tokens[kept:], outputs))
        copies = self._begin(runs)
        self._drop_branches()  # what the new branches reuse is theirs now too
        self._branches = {run.sequence: b.tokens for run, b in zip(runs, branches, strict=True)}
        try:
            return self._evaluate(runs, copies)
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

    def _begin(self, runs: Sequence[_Run]) -> list[Any]:
        """Let each run's sequence hold its source's whole blocks before the run; per run, the
        saved state of its source's cells from there to the run's start (None if none), which
        go next to the run."""
        copies = [
            self._saved(run.source, run.block, run.first) if run.block < run.first else None
            for run in runs
        ]
        for run in runs:
            if run.sequence == run.source:
                self._forget(run.sequence, run.block)
            else:
                self._alias(run.source, run.sequence, run.block)
        return copies

    def _evaluate(self, runs: Sequence[_Run], copies: Sequence[Any]) -> list[list[np.ndarray]]:
        """Evaluate ``runs`` (set up by ``_begin``, with its ``copies``) where the layout puts
        them, ``n_batch`` tokens per llama_decode call; per run, the log-probabilities at its
        outputs in order."""
        placed = self._cells.plan(
            [(run.sequence, run.block, run.first - run.block + len(run.tokens)) for run in runs]
        )
        copied = [cells[: run.first - run.block] for run, cells in zip(runs, placed, strict=True)]
        fresh = [cells[run.first - run.block :] for run, cells in zip(runs, placed, strict=True)]
        fillers, holding = self._fill_below(placed, any(c is not None for c in copies))
        try:
            # Each restore takes the lowest free cells: the copies go in first, with only their
            # cells free; then the new tokens' cells are freed for the evaluation.
            self._free_cells([cell for cells in copied for cell in cells], holding)
            spare = next(s for s in self._ids if s not in self._branches and s not in fillers)
            for run, cells, state in sorted(
                zip(runs, copied, copies, strict=True), key=lambda item: item[1].start
            ):
                if state is not None:
                    self._copy_in(state, run, cells, spare)
            self._free_cells([cell for cells in fresh for cell in cells], holding)
            results = self._decode_runs(runs, fresh)
        except Exception:
            for run in runs:  # llama.cpp may hold some of them; the mirror holds none
                self._remove(run.sequence, run.first, -1)
            raise
        finally:
            for sequence in fillers:
                self._remove(sequence, 0, -1)
            self._cells.give(list(holding))
        for run, cells in zip(runs, fresh, strict=True):
            self._cells.hold(run.sequence, cells)
        return results

    def _decode_runs(self, runs: Sequence[_Run], placed: Sequence[range]) -> list[list[np.ndarray]]:
        """Evaluate the runs' tokens, which go to the lowest free cells (``placed``, once all
        others are filled), in order of those cells."""
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
                logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))
                found.append((run, log_softmax(logits)))
        return found

    def _fill_below(
        self, placed: Sequence[range], copies: bool
    ) -> tuple[list[int], dict[int, tuple[int, int]]]:
        """Occupy every free cell below the last of ``placed`` with restored copies of prefix
        cells (none if those free cells are just the ones ``placed`` and no ``copies`` go in
        before the evaluation); the filler sequences, and for each cell (filler sequence,
        position) to free it again."""
        free = self._cells.free_below(max(cells[-1] for cells in placed) + 1)
        if not copies and len(free) == sum(len(cells) for cells in placed):
            return [], {}
        size = len(self._cells.of[0])  # the prefix's cells are the fillers' source
        chunks = [free[offset : offset + size] for offset in range(0, len(free), size)]
        fillers = [s for s in self._ids if s not in self._branches][: len(chunks) + 1]
        if len(fillers) <= len(chunks):  # one more id stays free for copying runs' blocks
            raise BackendFullError("no sequence left for the fillers that place these branches")
        fillers = fillers[: len(chunks)]
        try:
            for sequence, cells in zip(fillers, chunks, strict=True):
                self._restore(self._filler(len(cells)), sequence)
        except Exception:
            for sequence in fillers:
                self._remove(sequence, 0, -1)
            raise
        self._cells.take(free)
        holding = {
            cell: (sequence, position)
            for sequence, cells in zip(fillers, chunks, strict=True)
            for position, cell in enumerate(cells)
        }
        return fillers, holding

    def _free_cells(self, cells: Sequence[int], holding: dict[int, tuple[int, int]]) -> None:
        """Free those of ``cells`` that fillers are ``holding``."""
        for cell in cells:
            if cell in holding:
                sequence, position = holding.pop(cell)
                self._remove(sequence, position, position + 1)
                self._cells.give([cell])

    def _copy_in(self, state: Any, run: _Run, cells: Sequence[int], spare: int) -> None:
        """Give ``run``'s sequence the saved ``state`` (its source's cells from the run's block
        to its start), restored through the unused sequence ``spare`` into the lowest free
        cells: ``cells``."""
        from llama_cpp import llama_memory_seq_cp

        self._restore(state, spare)
        llama_memory_seq_cp(self._llm._ctx.memory, spare, run.sequence, run.block, run.first)
        self._remove(spare, 0, -1)
        self._cells.hold(run.sequence, cells)

    def _filler(self, count: int) -> Any:
        """The saved state of the main sequence's first ``count`` cells (kept for reuse)."""
        state = self._fillers.get(count)
        if state is None:
            state = self._fillers[count] = self._saved(0, 0, count)
        return state

    def _restore(self, state: Any, sequence: int) -> None:
        """Put saved ``state`` in ``sequence``, in the lowest free cells."""
        from llama_cpp import llama_state_seq_set_data

        if llama_state_seq_set_data(self._llm._ctx.ctx, state, len(state), sequence) == 0:
            raise RuntimeError("llama.cpp could not restore saved cache cells")

    def _saved(self, sequence: int, start: int, end: int) -> Any:
        """The saved state of ``sequence``'s cells for positions ``start`` to ``end``."""
        from llama_cpp import (
            llama_memory_seq_cp,
            llama_state_seq_get_data,
            llama_state_seq_get_size,
        )

        context = self._llm._ctx
        llama_memory_seq_cp(context.memory, sequence, self._scratch, start, end)
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


@contextmanager
def _weights_as_stored() -> Iterator[None]:
    """Models loaded in the block keep their weights as the file stores them, in no repacked
    copy (see the module's docstring). ``Llama`` does not expose llama.cpp's
    ``use_extra_bufts``; it starts from ``llama_model_default_params()``, so that is wrapped
    meanwhile."""
    import llama_cpp.llama as module

    with _LOADING:
        defaults = module.llama_cpp.llama_model_default_params

        def as_stored() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        module.llama_cpp.llama_model_default_params = as_stored
        try:
            yield
        finally:
            module.llama_cpp.llama_model_default_params = defaults


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
