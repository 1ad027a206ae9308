"""The worker's loop: read posts, classify them, write each result, acknowledge.

A post is a stream entry with fields ``id`` (the post id) and ``text``; every other field is
metadata, copied to the result. Its result entry has the fields ``id``, ``message_id`` (the
input entry's id), ``metadata`` (a JSON object of those fields) and either ``result`` (JSON:
what POST /classify returns for the text) or ``error`` (JSON: the API's ``{"type", "message"}``
for a record the API would refuse: no id, no text, empty, too long, not UTF-8). A bad record is
answered and acknowledged like any other; only unexpected failures are tried again.

Delivery is at least once, results are idempotent: see ``service.worker.stream``.
"""

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from algospeak import PolicyError
from service.classifier import Classifier
from service.records import error_body, outcome, read_fields
from service.schemas import Explain
from service.validation import TextProblem
from service.worker import metrics
from service.worker.stream import DUPLICATE, GONE, Message, Queue

logger = logging.getLogger(__name__)

POST_FIELDS = ("id", "text")  # every other field of a post is metadata


@dataclass(frozen=True, slots=True)
class Limits:
    """How a worker paces itself (the ``ALGOSPEAK_WORKER_*`` settings)."""

    prefetch: int = 1
    poll_s: float = 1.0
    claim_idle_s: float = 60.0
    max_attempts: int = 3
    max_text_chars: int = 20_000
    explain: Explain = False
    policy_check_s: float = 5.0


class Worker:
    """One consumer of the group: ``run`` until ``stop`` is called, one model, one post at a
    time. Reads at most ``prefetch`` posts at once and only when done with the previous ones,
    so a busy model leaves posts in the stream (visible as the group's lag), not in memory."""

    def __init__(self, classifier: Classifier, queue: Queue, limits: Limits) -> None:
        self.classifier = classifier
        self.queue = queue
        self.limits = limits
        self._stop = threading.Event()
        self._reload_policy = threading.Event()
        self._own_cursor: str | None = "0"  # first take back what this consumer still holds
        self._next_claim = 0.0
        self._next_backlog = 0.0
        self._next_policy_check = time.monotonic() + limits.policy_check_s

    def stop(self) -> None:
        """Ask the loop to end once the posts in hand are done (safe from a signal handler)."""
        self._stop.set()

    def reload_policy(self) -> None:
        """Ask the loop to reload the policy file before its next read (SIGHUP)."""
        self._reload_policy.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Work until ``stop``. Redis being unreachable or refusing a command is waited out
        (with growing pauses, each cut short by ``stop``); the posts in hand then stay pending
        and are taken back when Redis answers again. On the way out the consumer leaves the
        group if it holds nothing."""
        backoff = 0.0
        joined = ready = False
        while not self.stopping:
            try:
                if not ready:
                    self.queue.ensure_group()
                    joined = ready = True
                    names = self.queue.names
                    where = {"stream": names.stream, "group": names.group}
                    logger.info(
                        "worker ready", extra={"fields": where | {"consumer": names.consumer}}
                    )
                self._housekeeping()
                for message in self._next_batch():
                    self.handle(message)  # every post in hand is finished, stop or not
                backoff = 0.0
            except redis.RedisError as exc:
                backoff = min(30.0, max(0.5, backoff * 2))
                logger.warning("redis: %s; trying again in %.1fs", exc, backoff)
                ready = False  # if the stream or the group was deleted, create it again
                self._own_cursor = "0"  # what was in hand is still pending: take it back
                self._stop.wait(backoff)
        if joined:
            self._leave()

    def handle(self, message: Message) -> None:
        """Process one post: dead-letter it if it has been tried ``max_attempts`` times
        already, else classify it and write its result (or its error), acknowledging it in the
        same step. An unexpected failure is recorded and leaves the post pending, to be claimed
        again after ``claim_idle_s``, or dead-lettered if this was its last attempt. Redis
        errors propagate (the post stays pending)."""
        started = time.perf_counter()
        if message.deliveries > self.limits.max_attempts:
            error = self.queue.last_failure(message) or {
                "type": "worker_died",
                "message": f"delivered {message.deliveries - 1} times without a result: the "
                "workers that took it stopped before finishing (crashed or killed)",
            }
            self._dead_letter(message, error, message.deliveries - 1)
            return
        try:
            post_id, fields, action = self.answer(message)
        except Exception as exc:
            metrics.FAILURES.inc()
            error = {"type": "worker_error", "message": f"{type(exc).__name__}: {exc}"}
            logger.exception(
                "post failed (attempt %d of %d)",
                message.deliveries,
                self.limits.max_attempts,
                extra={"fields": {"message_id": message.id}},
            )
            if message.deliveries >= self.limits.max_attempts:
                self._dead_letter(message, error, message.deliveries)
            else:
                self.queue.record_failure(message, error)
            return
        outcome, entry = self.queue.write_result(message, post_id, fields, action)
        if outcome == GONE:
            logger.info("post %s was finished elsewhere meanwhile", message.id)
            return
        kind = "duplicate" if outcome == DUPLICATE else "error" if "error" in fields else "result"
        metrics.PROCESSED.labels(kind).inc()
        metrics.POST_SECONDS.observe(time.perf_counter() - started)
        logger.debug("post %s -> %s (%s)", message.id, entry, kind)

    def answer(self, message: Message) -> tuple[str | None, dict[str, str], str | None]:
        """The post's id (None if it has no usable one), its result entry's fields and the
        action to route it by (None for an error)."""
        post_id, problem = _post_id(message.fields.get("id"))
        if problem is None:
            text = _decoded_text(message.fields.get("text"), self.limits.max_text_chars)
            answered = outcome(self.classifier, text, explain=self.limits.explain)
        else:
            answered = {"error": error_body(problem)}
        metadata = {
            name: value.decode("utf-8", "replace")
            for name, value in message.fields.items()
            if name not in POST_FIELDS
        }
        fields = {"message_id": message.id, "metadata": _json(metadata)}
        if post_id is not None:
            fields = {"id": post_id, **fields}
        fields |= {kind: _json(body) for kind, body in answered.items()}
        action = answered["result"]["action"] if "result" in answered else None
        return post_id, fields, action

    def _dead_letter(self, message: Message, error: dict[str, str], attempts: int) -> None:
        post_id, _ = _post_id(message.fields.get("id"))
        original = {
            name: value.decode("utf-8", "replace") for name, value in message.fields.items()
        }
        fields = {"message_id": message.id, "error": _json(error), "attempts": str(attempts)}
        if post_id is not None:
            fields = {"id": post_id, **fields}
        fields |= {"fields": _json(original), "consumer": self.queue.names.consumer}
        if self.queue.dead_letter(message, fields) is not None:
            metrics.DEAD_LETTERED.inc()
            logger.error(
                "post dead-lettered after %d attempts: %s",
                attempts,
                error["message"],
                extra={"fields": {"message_id": message.id, "id": post_id}},
            )

    def _next_batch(self) -> list[Message]:
        """What to work on next: posts this consumer still holds (at start and after a Redis
        error), then posts held too long by any consumer, then new posts (waiting up to
        ``poll_s`` for them)."""
        count = self.limits.prefetch
        if self._own_cursor is not None:
            messages, self._own_cursor = self.queue.read_own(self._own_cursor, count)
            if messages:
                logger.info("taking back %d posts this consumer held", len(messages))
                return messages
        now = time.monotonic()
        if now >= self._next_claim:
            claim_idle_ms = max(1, round(self.limits.claim_idle_s * 1000))
            messages, scanned = self.queue.claim(count, claim_idle_ms)
            if scanned:  # the whole pending list was looked at: not again before a poll
                self._next_claim = now + min(self.limits.poll_s, self.limits.claim_idle_s)
            if messages:
                metrics.CLAIMED.inc(len(messages))
                logger.warning(
                    "claimed %d posts held over %gs",
                    len(messages),
                    self.limits.claim_idle_s,
                    extra={"fields": {"message_ids": [m.id for m in messages]}},
                )
                return messages
        return self.queue.read_new(count, max(1, round(self.limits.poll_s * 1000)))

    def _housekeeping(self) -> None:
        """Between batches: the backlog gauges, and the policy file reloaded when it changed
        (every ``policy_check_s``) or when asked to (SIGHUP)."""
        now = time.monotonic()
        if now >= self._next_backlog:
            self._next_backlog = now + self.limits.poll_s
            backlog = self.queue.backlog()
            metrics.LAG.set(float("nan") if backlog.lag is None else backlog.lag)
            metrics.PENDING.set(backlog.pending)
        policy = self.classifier.policy
        if self._reload_policy.is_set():
            self._reload_policy.clear()
            if policy.path is not None:
                with contextlib.suppress(PolicyError):  # logged by reload; the old one stays
                    policy.reload()
        elif self.limits.policy_check_s > 0 and now >= self._next_policy_check:
            self._next_policy_check = now + self.limits.policy_check_s
            policy.reload_if_changed()

    def _leave(self) -> None:
        try:
            if self.queue.leave():
                logger.info("left the group (held nothing)")
        except redis.RedisError as exc:
            logger.warning("could not leave the group: %s", exc)


def _post_id(raw: bytes | None) -> tuple[str | None, TextProblem | None]:
    """The post id, or why the post has no usable one."""
    if raw is None or not raw.strip():
        return None, TextProblem("invalid_request", "id: field required")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, TextProblem("invalid_request", "id: not valid UTF-8")


def _decoded_text(raw: bytes | None, max_chars: int) -> str | TextProblem:
    """The post's text if the API would accept it, else why not."""
    if raw is None:
        return read_fields({}, max_chars)[1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return TextProblem("invalid_request", "text: not valid UTF-8")
    return read_fields({"text": text}, max_chars)[1]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
