"""The worker's Redis Streams I/O: reading and claiming posts, and writing results atomically.

Every step that acknowledges a post runs as one Lua script, so Redis applies it whole or not at
all: the result entry (and its routed copy), the post id's done key and the XACK together; or
the dead-letter entry and the XACK together. A worker that dies before such a step leaves the
post in the group's pending list, where another worker claims it; one that dies after it has
nothing left to do. The scripts first check that the post is still pending, so a post that a
slow worker and the worker that claimed it both finish gets one result, and a post that was
dead-lettered gets none.

In Redis Cluster every key a script touches must hash to one slot: give the stream names one
hash tag, e.g. ``{moderation}:posts`` and ``{moderation}:results`` (the done keys and the
failures hash are named after those streams, so they follow).
"""

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import redis

logger = logging.getLogger(__name__)

# KEYS: input stream, failures hash, done key, results stream[, routed stream]
# ARGV: group, message id, done key's time to live in seconds (0: none), field, value, ...
_WRITE_RESULT = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return {0, ''}
end
local status = 2
local entry = redis.call('GET', KEYS[3])
if not entry then
  local fields = {}
  for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
  entry = redis.call('XADD', KEYS[4], '*', unpack(fields))
  if #KEYS == 5 then redis.call('XADD', KEYS[5], '*', unpack(fields)) end
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then
    redis.call('SET', KEYS[3], entry, 'EX', ttl)
  else
    redis.call('SET', KEYS[3], entry)
  end
  status = 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return {status, entry}
"""

# KEYS: input stream, failures hash, dead-letter stream. ARGV: group, message id, field, value, ...
_DEAD_LETTER = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return ''
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local entry = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return entry
"""

# KEYS: input stream. ARGV: group, consumer. Deleting a consumer drops what it holds, so only
# one that holds nothing is deleted, checked in the same step.
_LEAVE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

WRITTEN, DUPLICATE, GONE = "written", "duplicate", "gone"


@dataclass(frozen=True, slots=True)
class Names:
    """Where a worker reads and writes: the streams, its group and its own consumer name."""

    stream: str
    group: str
    consumer: str
    results: str
    dead_letter: str
    routes: dict[str, str] = field(default_factory=dict)  # action -> stream

    def done_key(self, post_id: str | None, message_id: str) -> str:
        """The key that marks a post as having its result: per post id, or per input message
        for a post without a usable id."""
        if post_id is not None:
            return f"{self.results}:done:{post_id}"
        return f"{self.results}:done-message:{self.stream}:{message_id}"

    @property
    def failures(self) -> str:
        """The hash of each pending post's last unexpected error, by message id."""
        return f"{self.stream}:{self.group}:failures"


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of the input stream as delivered to this worker, and how often the group has
    delivered it (this delivery included)."""

    id: str
    fields: dict[str, bytes]
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class Backlog:
    """The group's state: entries not yet read by it (None when Redis cannot tell), and entries
    read but not acknowledged."""

    lag: int | None
    pending: int


class Queue:
    """One worker's view of the input stream, its consumer group and the output streams."""

    def __init__(self, client: redis.Redis, names: Names, *, result_ttl_s: int) -> None:
        self.client = client
        self.names = names
        self.result_ttl_s = result_ttl_s
        self._write_result = client.register_script(_WRITE_RESULT)
        self._dead_letter = client.register_script(_DEAD_LETTER)
        self._leave = client.register_script(_LEAVE)
        self._claim_cursor = "0-0"

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless it exists. A new group starts at
        the beginning of the stream, so posts added before the first worker are read too."""
        try:
            self.client.xgroup_create(self.names.stream, self.names.group, id="0", mkstream=True)
            logger.info("created consumer group %s on %s", self.names.group, self.names.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_new(self, count: int, block_ms: int) -> list[Message]:
        """Up to ``count`` posts never delivered to the group, waiting at most ``block_ms``."""
        return self._read(">", count, block_ms)[0]

    def read_own(self, after: str, count: int) -> tuple[list[Message], str | None]:
        """Up to ``count`` posts this consumer already holds, after id ``after`` ("0": from the
        first), with their delivery counts, and the id to read on from (None: none left).
        Entries deleted from the stream meanwhile are acknowledged and left out."""
        messages, last = self._read(after, count, None)
        return self._with_deliveries(messages), last

    def claim(self, count: int, min_idle_ms: int) -> tuple[list[Message], bool]:
        """Take over up to ``count`` posts that some consumer (this one included) has held for
        ``min_idle_ms`` without acknowledging them, with their delivery counts; and whether the
        scan of the pending list went round (False: call again for more)."""
        cursor, entries, *deleted = self.client.xautoclaim(
            self.names.stream,
            self.names.group,
            self.names.consumer,
            min_idle_time=min_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = _text(cursor)
        if deleted and deleted[0]:  # Redis 7 drops them from the pending list itself
            logger.warning("%d pending entries were deleted from the stream", len(deleted[0]))
            self.client.hdel(self.names.failures, *deleted[0])
        messages = []
        for entry_id, fields in entries:
            if fields is None:  # how Redis 6.2 reports a deleted entry: nothing to do
                self.client.xack(self.names.stream, self.names.group, entry_id)
                continue
            messages.append(Message(_text(entry_id), _fields(fields)))
        return self._with_deliveries(messages), self._claim_cursor == "0-0"

    def write_result(
        self, message: Message, post_id: str | None, fields: dict[str, str], action: str | None
    ) -> tuple[str, str]:
        """Write ``fields`` as the post's result entry (and to the stream for ``action``, if
        routed) and acknowledge it, in one step; unless the post id has a result already
        (DUPLICATE: only acknowledged) or the post is no longer pending (GONE: another worker
        finished or dead-lettered it). Returns the outcome and the result's entry id."""
        keys = [self.names.stream, self.names.failures]
        keys += [self.names.done_key(post_id, message.id), self.names.results]
        if action in self.names.routes:
            keys.append(self.names.routes[action])
        args: list[Any] = [self.names.group, message.id, self.result_ttl_s]
        for name, value in fields.items():
            args += [name, value]
        status, entry = self._write_result(keys=keys, args=args)
        outcome = {0: GONE, 1: WRITTEN, 2: DUPLICATE}[int(status)]
        return outcome, _text(entry)

    def dead_letter(self, message: Message, fields: dict[str, str]) -> str | None:
        """Write ``fields`` to the dead-letter stream and acknowledge the post, in one step;
        the entry id, or None when the post was no longer pending."""
        keys = [self.names.stream, self.names.failures, self.names.dead_letter]
        args: list[Any] = [self.names.group, message.id]
        for name, value in fields.items():
            args += [name, value]
        entry = _text(self._dead_letter(keys=keys, args=args))
        return entry or None

    def record_failure(self, message: Message, error: dict[str, str]) -> None:
        """Remember ``error`` as the post's last failure (for its dead-letter entry)."""
        self.client.hset(self.names.failures, message.id, json.dumps(error))

    def last_failure(self, message: Message) -> dict[str, str] | None:
        """The post's last recorded failure, if any."""
        raw = self.client.hget(self.names.failures, message.id)
        return json.loads(raw) if raw else None

    def backlog(self) -> Backlog:
        """The group's lag and pending count (XINFO GROUPS)."""
        for group in self.client.xinfo_groups(self.names.stream):
            if _text(group["name"]) == self.names.group:
                lag = group.get("lag")
                return Backlog(lag=None if lag is None else int(lag), pending=group["pending"])
        return Backlog(lag=None, pending=0)

    def leave(self) -> bool:
        """Delete this consumer from the group if it holds nothing; whether it did."""
        return bool(
            self._leave(keys=[self.names.stream], args=[self.names.group, self.names.consumer])
        )

    def _read(
        self, start: str, count: int, block_ms: int | None
    ) -> tuple[list[Message], str | None]:
        """XREADGROUP from ``start``: the messages, and the last entry id read (None: none)."""
        reply = self.client.xreadgroup(
            self.names.group,
            self.names.consumer,
            {self.names.stream: start},
            count=count,
            block=block_ms,
        )
        messages, last = [], None
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last = _text(entry_id)
                if not fields:  # deleted from the stream while this consumer held it
                    self.client.xack(self.names.stream, self.names.group, entry_id)
                    continue
                messages.append(Message(last, _fields(fields)))
        return messages, last

    def _with_deliveries(self, messages: list[Message]) -> list[Message]:
        counted = []
        for message in messages:
            pending = self.client.xpending_range(
                self.names.stream, self.names.group, min=message.id, max=message.id, count=1
            )
            deliveries = pending[0]["times_delivered"] if pending else message.deliveries
            counted.append(Message(message.id, message.fields, int(deliveries)))
        return counted


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(fields: dict[bytes, bytes]) -> dict[str, bytes]:
    return {name.decode("utf-8", "replace"): value for name, value in fields.items()}
