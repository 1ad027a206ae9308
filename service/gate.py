"""Serialized access to one model, with a bounded wait: full queue or long wait -> BusyError."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.metrics import QUEUE_DEPTH


class BusyError(Exception):
    """The model is busy: the queue is full or the wait timed out. Try again later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Gate:
    """One caller at a time; at most ``queue_size`` more wait, each at most ``timeout`` s."""

    def __init__(self, queue_size: int, timeout: float) -> None:
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._inside = 0  # running + waiting
        self._queue_size = queue_size
        self._timeout = timeout

    @property
    def depth(self) -> int:
        """Callers running or waiting now."""
        return self._inside

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._count_lock:
            if self._inside > self._queue_size:
                raise BusyError(
                    f"the model queue is full ({self._queue_size} waiting)", retry_after=1
                )
            self._inside += 1
            QUEUE_DEPTH.inc()
        try:
            if not self._lock.acquire(timeout=self._timeout):
                raise BusyError(f"waited {self._timeout:g}s for the model", retry_after=2)
            try:
                yield
            finally:
                self._lock.release()
        finally:
            with self._count_lock:
                self._inside -= 1
                QUEUE_DEPTH.dec()
