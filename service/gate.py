"""Serialized access to one model, with a bounded wait: full queue or long wait -> BusyError.

A caller either holds the model alone (``slot``) or hands it items (``run``). Items waiting
together are evaluated together, up to ``batch_size`` at a time in the order they came, by
whichever waiting caller finds the model free first; the others wait for their results.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from service.metrics import QUEUE_DEPTH

Item = TypeVar("Item")
Result = TypeVar("Result")


class BusyError(Exception):
    """The model is busy: the queue is full or the wait timed out. Try again later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class _Job:
    """One item waiting for the model, or (no ``work``) a caller waiting to hold it alone."""

    item: Any = None
    work: Callable[[list[Any]], Sequence[Any]] | None = None
    taken: bool = False  # a caller is evaluating it (or, for a slot, holds the model)
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class Gate:
    """One user of the model at a time; at most ``queue_size`` more callers wait, each at most
    ``timeout`` s for the model to take something of theirs; ``run`` hands the model at most
    ``batch_size`` items at once."""

    def __init__(self, queue_size: int, timeout: float, batch_size: int = 1) -> None:
        self._ready = threading.Condition()
        self._waiting: deque[_Job] = deque()
        self._busy = False  # a caller is using the model
        self._inside = 0  # callers running or waiting
        self._queue_size = queue_size
        self._timeout = timeout
        self.batch_size = batch_size

    @property
    def depth(self) -> int:
        """Callers running or waiting now."""
        return self._inside

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold the model alone for the block, after everything queued before."""
        job = _Job()
        with self._queued([job]) as deadline:
            while True:
                with self._ready:
                    batch = self._next_batch([job], deadline)
                if batch == [job]:
                    break
                self._evaluate(batch)  # others' items at the front: evaluate them meanwhile
            try:
                yield
            finally:
                self._finish([job])

    def run(
        self, items: Sequence[Item], work: Callable[[list[Item]], Sequence[Result]]
    ) -> list[Result]:
        """``work``'s result for each of ``items``, in order. Items of callers that pass the
        same ``work`` are evaluated together when they wait together: ``work`` gets a list of
        items and returns their results in order. The caller counts once in the queue; it
        waits at most ``timeout`` s for the first of its items to be taken."""
        jobs = [_Job(item, work) for item in items]
        with self._queued(jobs) as deadline:
            while True:
                with self._ready:
                    batch = self._next_batch(jobs, deadline)
                if batch is None:
                    break
                self._evaluate(batch)
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [job.result for job in jobs]

    @contextmanager
    def _queued(self, jobs: list[_Job]) -> Iterator[float]:
        """Queue ``jobs`` for one caller (BusyError if the queue is full) until the block
        ends, yielding the caller's deadline; jobs still waiting then are withdrawn."""
        with self._ready:
            if self._inside > self._queue_size:
                raise BusyError(
                    f"the model queue is full ({self._queue_size} waiting)", retry_after=1
                )
            self._inside += 1
            QUEUE_DEPTH.inc()
            self._waiting.extend(jobs)
        try:
            yield time.monotonic() + self._timeout
        finally:
            with self._ready:
                for job in jobs:
                    if not job.taken:
                        self._waiting.remove(job)
                self._inside -= 1
                QUEUE_DEPTH.dec()
                self._ready.notify_all()

    def _next_batch(self, jobs: list[_Job], deadline: float) -> list[_Job] | None:
        """With the lock held, wait until all of ``jobs`` are done (None) or this caller takes
        the model (the jobs returned): for the items at the front of the queue, whoever's they
        are, or for its own slot. BusyError if ``deadline`` passes before any of ``jobs`` is
        taken."""
        while not all(job.done for job in jobs):
            if not self._busy and self._waiting:
                front = self._waiting[0]
                if front.work is not None:
                    return self._take(front.work)
                if front in jobs:  # a slot: only its own caller can use it
                    return self._take(None)
            if any(job.taken for job in jobs):  # under way: its results will come
                self._ready.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BusyError(f"waited {self._timeout:g}s for the model", retry_after=2)
            self._ready.wait(remaining)
        return None

    def _take(self, work: Callable | None) -> list[_Job]:
        """Take the model for the front of the queue: a slot alone, else the items there that
        share its ``work``, up to ``batch_size``."""
        batch = [self._waiting.popleft()]
        while (
            work is not None
            and self._waiting
            and self._waiting[0].work == work  # bound methods are equal, not identical
            and len(batch) < self.batch_size
        ):
            batch.append(self._waiting.popleft())
        for job in batch:
            job.taken = True
        self._busy = True
        return batch

    def _evaluate(self, batch: list[_Job]) -> None:
        """Run the batch's ``work`` (without the lock) and hand out its results or error."""
        for job in batch:  # what its callers see if the evaluation never returns
            job.error = RuntimeError("the evaluation was interrupted")
        try:
            results = list(batch[0].work([job.item for job in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except Exception as exc:  # each waiting caller re-raises it
            for job in batch:
                job.error = exc
        else:
            for job, result in zip(batch, results, strict=True):
                job.result, job.error = result, None
        finally:
            self._finish(batch)

    def _finish(self, batch: list[_Job]) -> None:
        with self._ready:
            for job in batch:
                job.done = True
            self._busy = False
            self._ready.notify_all()
