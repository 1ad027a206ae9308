"""The model's gate: one user at a time, a bounded and timed queue, and items that wait together
handed over together."""

import threading
import time
from collections.abc import Callable

import pytest

from service.gate import BusyError, Gate
from service.metrics import QUEUE_DEPTH


class Recorder:
    """A work function that records the batches it gets and returns each item doubled."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        return [item * 2 for item in items]


def start(target: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """Run ``target`` in a thread; the dict gets its result or error."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_for_depth(gate: Gate, depth: int) -> None:
    deadline = time.monotonic() + 5
    while gate.depth < depth:
        assert time.monotonic() < deadline, f"depth stayed {gate.depth}"
        time.sleep(0.005)


def test_items_waiting_together_are_evaluated_together_in_order() -> None:
    gate, work = Gate(queue_size=16, timeout=5, batch_size=4), Recorder()
    with gate.slot():  # the model is busy: everyone below queues
        callers = []
        for first in (1, 10, 20):
            items = [first, first + 1] if first != 20 else [20]
            callers.append(start(lambda items=items: gate.run(items, work)))
            wait_for_depth(gate, len(callers) + 1)
    for thread, _ in callers:
        thread.join(5)
    assert [outcome["result"] for _, outcome in callers] == [[2, 4], [20, 22], [40]]
    assert work.batches == [[1, 2, 10, 11], [20]]  # at most batch_size, first come first


def test_a_lone_caller_is_evaluated_at_once() -> None:
    gate, work = Gate(queue_size=0, timeout=1, batch_size=8), Recorder()
    assert gate.run([3], work) == [6]
    assert gate.run([1, 2, 3], work) == [2, 4, 6]  # one caller's items go together too
    assert work.batches == [[3], [1, 2, 3]]
    assert gate.depth == 0


def test_a_full_queue_is_refused_and_counts_each_caller_once() -> None:
    gate, work = Gate(queue_size=1, timeout=5, batch_size=8), Recorder()
    with gate.slot():
        waiting, outcome = start(lambda: gate.run([1, 2, 3], work))  # three items, one place
        wait_for_depth(gate, 2)
        with pytest.raises(BusyError, match="queue is full") as refused:
            gate.run([4], work)
        assert refused.value.retry_after == 1
    waiting.join(5)
    assert outcome["result"] == [2, 4, 6]
    assert work.batches == [[1, 2, 3]]


def test_a_wait_past_the_timeout_is_refused_and_its_items_are_dropped() -> None:
    gate, work = Gate(queue_size=4, timeout=0.2, batch_size=8), Recorder()
    with gate.slot():
        with pytest.raises(BusyError, match=r"waited 0\.2s") as refused:
            gate.run([1], work)
        assert refused.value.retry_after == 2
    assert gate.run([5], work) == [10]
    assert work.batches == [[5]]  # the refused item was never evaluated


def test_an_error_reaches_every_caller_of_the_batch_and_the_gate_goes_on() -> None:
    gate = Gate(queue_size=8, timeout=5, batch_size=8)

    def failing(items: list[int]) -> list[int]:
        raise ValueError(f"bad batch {items}")

    with gate.slot():
        callers = [start(lambda item=item: gate.run([item], failing)) for item in (1, 2)]
        wait_for_depth(gate, 3)
    for thread, _ in callers:
        thread.join(5)
    assert [str(outcome["error"]) for _, outcome in callers] == ["bad batch [1, 2]"] * 2
    assert gate.run([7], Recorder()) == [14]


def test_slots_and_batches_keep_their_order_and_the_depth_gauge_returns() -> None:
    gate = Gate(queue_size=8, timeout=5, batch_size=8)
    order: list[str] = []  # what used the model, in the order it did

    def work(items: list[int]) -> list[int]:
        order.append(f"batch {items}")
        return items

    def alone() -> None:
        with gate.slot():
            order.append("slot")

    before = QUEUE_DEPTH._value.get()
    with gate.slot():
        callers = [start(lambda: gate.run([1], work))]
        wait_for_depth(gate, 2)
        callers.append(start(alone))
        wait_for_depth(gate, 3)
        callers.append(start(lambda: gate.run([2], work)))
        wait_for_depth(gate, 4)
    for thread, _ in callers:
        thread.join(5)
    assert order == ["batch [1]", "slot", "batch [2]"]  # a slot in between splits the batches
    assert QUEUE_DEPTH._value.get() == before
