"""The moderation-queue worker against a real ``redis-server`` (started here on a free loopback
port) and the real SmolLM2 model: one result per post, as the API answers it; a post held by a
killed worker is processed once by another; poison posts go to the dead-letter stream; a
graceful stop finishes the post in hand and a restart loses nothing.

Workers run in a thread of this process (sharing one loaded model) or, where a worker must be
killed or signalled, as ``python -m service.worker`` subprocesses (``tests.worker_faults``
holds one inside a chosen post). Every wait polls real state and is bounded.

Without ``redis-server`` these tests skip, except under CI (``CI`` set, or
``ALGOSPEAK_REQUIRE_REDIS=1`` as ``.ci/run`` sets), where they fail.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from service.classifier import FETCH_HINT, Classifier, build_classifier
from service.schemas import ClassifyResponse
from service.settings import Settings
from tests.conftest import free_port
from tests.redis_server import redis_server_or_skip, running_redis

if importlib.util.find_spec("redis") is None:  # the worker extra is not installed
    redis_server_or_skip(module_level=True)  # skips, or fails under CI

import redis

from service.worker.consumer import Limits, Worker
from service.worker.main import main
from service.worker.stream import Names, Queue

ROOT = Path(__file__).resolve().parent.parent
STREAM, GROUP, RESULTS, DEAD = "posts", "moderators", "results", "dead"
REVIEW, BLOCK = "results:review", "results:block"
TTL_S = 3600
# For every subprocess worker: the test model's settings, quick polls, plain log lines.
WORKER_ENV = {
    "ALGOSPEAK_THREADS": "1",
    "ALGOSPEAK_CONTEXT_SIZE": "1024",
    "ALGOSPEAK_MAX_TEXT_CHARS": "2000",
    "ALGOSPEAK_WORKER_STREAM": STREAM,
    "ALGOSPEAK_WORKER_GROUP": GROUP,
    "ALGOSPEAK_WORKER_RESULTS_STREAM": RESULTS,
    "ALGOSPEAK_WORKER_DEAD_LETTER_STREAM": DEAD,
    "ALGOSPEAK_WORKER_POLL_S": "0.2",
    "ALGOSPEAK_LOG_FORMAT": "text",
}


# ----- fixtures and helpers


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an empty database."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="module")
def classifier(model_settings: Settings) -> Iterator[Classifier]:
    """The classification path with the real model, as the API in ``model_client`` has it."""
    loaded = build_classifier(model_settings)
    yield loaded
    loaded.engine.close()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} (after {timeout:g}s)"
        time.sleep(0.02)


def names(consumer: str, routes: dict[str, str] | None = None) -> Names:
    return Names(STREAM, GROUP, consumer, RESULTS, DEAD, routes or {})


@contextmanager
def worker_thread(
    redis_url: str,
    classifier: Classifier,
    consumer: str = "thread",
    routes: dict[str, str] | None = None,
    **limits: object,
) -> Iterator[Worker]:
    """A worker running in a thread of this process until the block ends (then stopped and
    joined), with ``limits`` over quick test defaults; its exceptions fail the test."""
    client = redis.Redis.from_url(redis_url)
    queue = Queue(client, names(consumer, routes), result_ttl_s=TTL_S)
    settings = {"poll_s": 0.1, "max_text_chars": 2000, "policy_check_s": 0} | limits
    worker = Worker(classifier, queue, Limits(**settings))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            failures.append(exc)
            raise

    thread = threading.Thread(target=run, name=f"worker-{consumer}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=60)
        client.close()
    assert not thread.is_alive(), "the worker did not stop"
    assert not failures, failures


@contextmanager
def worker_process(
    redis_url: str, model: Path, log: Path, **env: str
) -> Iterator[subprocess.Popen]:
    """``python -m tests.worker_faults`` (the real worker, faults as ``env`` asks), killed at
    the end if still running; its output goes to ``log``."""
    full_env = {**os.environ, **WORKER_ENV, "ALGOSPEAK_REDIS_URL": redis_url}
    full_env |= {"ALGOSPEAK_MODEL_PATH": str(model), **env}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_faults"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def add_posts(db: redis.Redis, posts: list[dict]) -> list[str]:
    return [db.xadd(STREAM, post).decode() for post in posts]


def drained(db: redis.Redis) -> bool:
    """Every post read by the group and acknowledged."""
    groups = {g["name"].decode(): g for g in db.xinfo_groups(STREAM)} if db.exists(STREAM) else {}
    group = groups.get(GROUP)
    return group is not None and group["lag"] == 0 and group["pending"] == 0


def entries(db: redis.Redis, stream: str) -> list[dict[str, str]]:
    """A stream's entries, fields decoded, with the entry id as ``_entry``."""
    return [
        {"_entry": entry_id.decode()} | {k.decode(): v.decode() for k, v in fields.items()}
        for entry_id, fields in db.xrange(stream)
    ]


def pending(db: redis.Redis) -> list[dict]:
    return db.xpending_range(STREAM, GROUP, "-", "+", 100)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def api_answer(client: TestClient, text: str) -> dict:
    """What POST /classify answers for ``text``: the result without its latency, or the error."""
    response = client.post("/classify", json={"text": text})
    body = response.json()
    if response.status_code == 200:
        body.pop("latency_ms")
        return {"result": body}
    return body


# ----- the normal flow


POSTS: list[tuple[dict, str | None]] = [
    # (the post's fields, the API's text for it or None)
    ({"id": "a", "text": "the character got unalived in episode 3", "source": "app",
      "lang": "en"}, "the character got unalived in episode 3"),
    ({"id": "b", "text": "grilled corn with lime"}, "grilled corn with lime"),
    ({"id": "c", "text": "kys loser"}, "kys loser"),
    ({"id": "d", "text": "new 🌽 drop for subscribers"}, "new 🌽 drop for subscribers"),
    ({"id": "blank", "text": "  "}, "  "),
    ({"id": "long", "text": "a" * 2001}, "a" * 2001),
    # Under the character limit, over the model's context: the engine refuses it.
    ({"id": "context", "text": "漢" * 1500}, "漢" * 1500),
    ({"id": "no-text", "channel": "7"}, None),
    ({"text": "a post without an id"}, None),
    ({"id": "bytes", "text": b"\xff\xfe not utf-8"}, None),
]  # fmt: skip
OUTCOMES = ("result", "error", "duplicate")
NOT_API = {
    "no-text": {"type": "invalid_request", "message": "text: field required"},
    None: {"type": "invalid_request", "message": "id: field required"},
    "bytes": {"type": "invalid_request", "message": "text: not valid UTF-8"},
}


def test_every_post_gets_one_result_as_the_api_answers_it(
    db: redis.Redis, redis_url: str, classifier: Classifier, model_client: TestClient
) -> None:
    before = {k: metric("algospeak_worker_processed_total", outcome=k) for k in OUTCOMES}
    message_ids = add_posts(db, [post for post, _ in POSTS])
    # The same post id again, as a producer retrying its XADD would: no second result.
    duplicate_id = add_posts(db, [{"id": "c", "text": "kys loser"}])[0]
    routes = {"review": REVIEW, "block": BLOCK}
    with worker_thread(redis_url, classifier, routes=routes):
        wait_until(lambda: drained(db), "the worker did not finish the posts")

    results = entries(db, RESULTS)
    assert [r["message_id"] for r in results] == message_ids  # one each, in order
    assert duplicate_id not in {r["message_id"] for r in results}
    for record, (post, text), message_id in zip(results, POSTS, message_ids, strict=True):
        post_id = post.get("id")
        assert record.get("id") == post_id
        metadata = {k: v for k, v in post.items() if k not in ("id", "text")}
        assert json.loads(record["metadata"]) == metadata
        outcome = {"result"} if "result" in record else {"error"}
        assert set(record) - {"_entry", "id"} == {"message_id", "metadata"} | outcome
        if post_id is None:  # keyed by its message instead
            done = f"{RESULTS}:done-message:{STREAM}:{message_id}"
            assert db.get(done).decode() == record["_entry"]
        if text is None:
            assert json.loads(record["error"]) == NOT_API[post_id]
            continue
        expected = api_answer(model_client, text)
        if "result" in expected:
            result = json.loads(record["result"])
            ClassifyResponse.model_validate(result)
            result.pop("latency_ms")
            assert result == expected["result"], post_id
        else:
            assert json.loads(record["error"]) == expected["error"], post_id
        done = f"{RESULTS}:done:{post_id}" if post_id else None
        assert done is None or db.get(done).decode() == record["_entry"]
    assert 0 < db.ttl(f"{RESULTS}:done:a") <= TTL_S

    # review and block results are also in their own streams, unchanged.
    for action, stream in routes.items():
        routed = [{k: v for k, v in r.items() if k != "_entry"} for r in entries(db, stream)]
        expected = [
            {k: v for k, v in r.items() if k != "_entry"}
            for r in results
            if "result" in r and json.loads(r["result"])["action"] == action
        ]
        assert routed == expected
    assert entries(db, DEAD) == []
    after = {k: metric("algospeak_worker_processed_total", outcome=k) for k in OUTCOMES}
    errors = sum("error" in r for r in results)
    assert after["result"] - before["result"] == len(results) - errors
    assert after["error"] - before["error"] == errors
    assert after["duplicate"] - before["duplicate"] == 1


def test_explanations_are_added_when_configured(
    db: redis.Redis, redis_url: str, classifier: Classifier, model_client: TestClient
) -> None:
    add_posts(db, [{"id": "x", "text": "time to unalive myself"}])
    with worker_thread(redis_url, classifier, explain=True):
        wait_until(lambda: drained(db), "the worker did not finish the post")
    (record,) = entries(db, RESULTS)
    expected = model_client.post(
        "/classify", json={"text": "time to unalive myself", "explain": True}
    )
    assert json.loads(record["result"])["explanation"] == expected.json()["explanation"]


# ----- failures


def test_a_post_held_by_a_killed_worker_is_processed_once_by_another(
    db: redis.Redis, redis_url: str, classifier: Classifier, smollm2_gguf: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "holding"
    posts = [{"id": "first", "text": "kys loser"}, {"id": "held", "text": "hold this one"}]
    first_id, held_id = add_posts(db, posts)
    fault = {"ALGOSPEAK_TEST_HOLD_TEXT": "hold this one", "ALGOSPEAK_TEST_HOLD_MARKER": str(marker)}
    env = {"ALGOSPEAK_WORKER_CONSUMER": "doomed", "ALGOSPEAK_WORKER_CLAIM_IDLE_S": "3600"}
    with worker_process(redis_url, smollm2_gguf, tmp_path / "worker.log", **env, **fault) as doomed:
        wait_until(marker.exists, "the worker never reached the held post")
        (held,) = pending(db)
        assert (held["message_id"].decode(), held["consumer"]) == (held_id, b"doomed")
        assert held["times_delivered"] == 1
        doomed.kill()  # SIGKILL, mid-post: no result, no acknowledgement
        doomed.wait(timeout=30)
    assert [r["id"] for r in entries(db, RESULTS)] == ["first"]
    assert len(pending(db)) == 1

    claimed = metric("algospeak_worker_claimed_total")
    with worker_thread(redis_url, classifier, "rescuer", claim_idle_s=0.5):
        wait_until(lambda: drained(db), "nobody took over the held post")
    results = entries(db, RESULTS)
    assert [(r["id"], r["message_id"]) for r in results] == [("first", first_id), ("held", held_id)]
    ClassifyResponse.model_validate(json.loads(results[1]["result"]))
    assert metric("algospeak_worker_claimed_total") - claimed == 1
    assert entries(db, DEAD) == []


def test_a_slow_worker_whose_post_was_claimed_writes_no_second_result(
    db: redis.Redis, redis_url: str, classifier: Classifier, smollm2_gguf: Path, tmp_path: Path
) -> None:
    marker, release = tmp_path / "holding", tmp_path / "release"
    (held_id,) = add_posts(db, [{"id": "slow", "text": "hold this one"}])
    env = {
        "ALGOSPEAK_TEST_HOLD_TEXT": "hold this one",
        "ALGOSPEAK_TEST_HOLD_MARKER": str(marker),
        "ALGOSPEAK_TEST_RELEASE": str(release),
        "ALGOSPEAK_WORKER_CLAIM_IDLE_S": "3600",
    }
    log = tmp_path / "worker.log"
    with worker_process(redis_url, smollm2_gguf, log, **env) as slow:
        wait_until(marker.exists, "the worker never reached the held post")
        with worker_thread(redis_url, classifier, "fast", claim_idle_s=0.5):
            wait_until(lambda: drained(db), "nobody took over the held post")
        release.touch()  # the slow worker finishes too, after the fact
        wait_until(lambda: b"finished elsewhere" in log.read_bytes(), "the slow one never finished")
        slow.send_signal(signal.SIGTERM)
        assert slow.wait(timeout=60) == 0, log.read_text()
    assert [(r["id"], r["message_id"]) for r in entries(db, RESULTS)] == [("slow", held_id)]


def test_a_post_that_keeps_failing_goes_to_the_dead_letter_stream_with_its_error(
    db: redis.Redis,
    redis_url: str,
    classifier: Classifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    classify = classifier.classify

    def broken_on_poison(text: str, **kwargs: object):
        if text == "poison":
            raise RuntimeError("the model fell over")
        return classify(text, **kwargs)

    monkeypatch.setattr(classifier, "classify", broken_on_poison)
    counts = {name: metric(name) for name in ("algospeak_worker_failures_total",
                                               "algospeak_worker_dead_lettered_total")}  # fmt: skip
    posts = [
        {"id": "ok-1", "text": "grilled corn with lime"},
        {"id": "bad", "text": "poison", "source": "app"},
        {"id": "ok-2", "text": "kys loser"},
    ]
    message_ids = add_posts(db, posts)
    with worker_thread(redis_url, classifier, claim_idle_s=0.3, max_attempts=2):
        wait_until(lambda: drained(db), "the poison post was not dead-lettered")

    assert [r["id"] for r in entries(db, RESULTS)] == ["ok-1", "ok-2"]  # not held up by it
    (dead,) = entries(db, DEAD)
    assert dead["id"] == "bad"
    assert dead["message_id"] == message_ids[1]
    assert dead["attempts"] == "2"
    assert json.loads(dead["error"]) == {
        "type": "worker_error",
        "message": "RuntimeError: the model fell over",
    }
    assert json.loads(dead["fields"]) == posts[1]  # enough to send it again once fixed
    assert db.hlen(f"{STREAM}:{GROUP}:failures") == 0
    assert (
        metric("algospeak_worker_failures_total") - counts["algospeak_worker_failures_total"] == 2
    )
    dead_lettered = metric("algospeak_worker_dead_lettered_total")
    assert dead_lettered - counts["algospeak_worker_dead_lettered_total"] == 1


def test_a_post_that_kills_its_workers_goes_to_the_dead_letter_stream(
    db: redis.Redis, redis_url: str, classifier: Classifier, smollm2_gguf: Path, tmp_path: Path
) -> None:
    message_ids = add_posts(db, [{"id": "deadly", "text": "crash the model"}])
    fault = {"ALGOSPEAK_TEST_DIE_TEXT": "crash the model", "ALGOSPEAK_WORKER_CLAIM_IDLE_S": "0.3"}
    for attempt in (1, 2):  # the first reads it, the second claims it; each dies on it
        with worker_process(redis_url, smollm2_gguf, tmp_path / "worker.log", **fault) as victim:
            victim.wait(timeout=60)
            assert victim.returncode == -signal.SIGKILL
        (held,) = pending(db)
        assert held["times_delivered"] == attempt
    add_posts(db, [{"id": "fine", "text": "grilled corn with lime"}])

    with worker_thread(redis_url, classifier, claim_idle_s=0.3, max_attempts=2):
        wait_until(lambda: drained(db), "the deadly post was not dead-lettered")
    (dead,) = entries(db, DEAD)
    assert (dead["id"], dead["message_id"], dead["attempts"]) == ("deadly", message_ids[0], "2")
    error = json.loads(dead["error"])
    assert error["type"] == "worker_died"
    assert "delivered 2 times without a result" in error["message"]
    assert [r["id"] for r in entries(db, RESULTS)] == ["fine"]


# ----- stopping and restarting


def test_a_graceful_stop_finishes_the_post_in_hand_and_a_restart_loses_nothing(
    db: redis.Redis, redis_url: str, classifier: Classifier, smollm2_gguf: Path, tmp_path: Path
) -> None:
    marker, release = tmp_path / "holding", tmp_path / "release"
    texts = ["kys loser", "grilled corn with lime", "hold this one", "new 🌽 drop", "hi", "bye"]
    message_ids = add_posts(db, [{"id": f"p{n}", "text": t} for n, t in enumerate(texts)])
    port = free_port()
    env = {
        "ALGOSPEAK_TEST_HOLD_TEXT": "hold this one",
        "ALGOSPEAK_TEST_HOLD_MARKER": str(marker),
        "ALGOSPEAK_TEST_RELEASE": str(release),
        "ALGOSPEAK_WORKER_CONSUMER": "w1",
        "ALGOSPEAK_WORKER_METRICS_PORT": str(port),
    }
    log = tmp_path / "worker.log"
    with worker_process(redis_url, smollm2_gguf, log, **env) as worker:
        wait_until(marker.exists, "the worker never reached the held post")
        # Backpressure: it holds the one post it works on; the rest wait in the stream.
        assert [p["message_id"].decode() for p in pending(db)] == [message_ids[2]]
        assert db.xinfo_groups(STREAM)[0]["lag"] == 3
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'algospeak_worker_processed_total{outcome="result"} 2.0' in scraped
        assert "algospeak_worker_lag " in scraped
        assert "algospeak_decisions_total{" in scraped  # the classifier's own metrics too

        worker.send_signal(signal.SIGTERM)
        release.touch()  # only now may the post in hand finish
        assert worker.wait(timeout=60) == 0, log.read_text()

    assert [r["id"] for r in entries(db, RESULTS)] == ["p0", "p1", "p2"]
    assert pending(db) == []
    assert db.xinfo_groups(STREAM)[0]["lag"] == 3  # nothing more was taken
    assert db.xinfo_consumers(STREAM, GROUP) == []  # it left the group, holding nothing

    with worker_thread(redis_url, classifier, "restarted"):
        wait_until(lambda: drained(db), "the restarted worker did not finish the posts")
    results = entries(db, RESULTS)
    assert [r["message_id"] for r in results] == message_ids
    assert [r["id"] for r in results] == [f"p{n}" for n in range(len(texts))]


def test_a_worker_restarted_under_its_name_takes_back_what_it_held(
    db: redis.Redis, redis_url: str, classifier: Classifier, smollm2_gguf: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "holding"
    message_ids = add_posts(
        db, [{"id": "held", "text": "hold this one"}, {"id": "next", "text": "hi"}]
    )
    env = {
        "ALGOSPEAK_TEST_HOLD_TEXT": "hold this one",
        "ALGOSPEAK_TEST_HOLD_MARKER": str(marker),
        "ALGOSPEAK_WORKER_CONSUMER": "pod-0",
        "ALGOSPEAK_WORKER_CLAIM_IDLE_S": "3600",
    }
    with worker_process(redis_url, smollm2_gguf, tmp_path / "worker.log", **env) as worker:
        wait_until(marker.exists, "the worker never reached the held post")
        worker.kill()
        worker.wait(timeout=30)
    assert entries(db, RESULTS) == []

    # The same name, and no claim timeout to wait for: it reads what it held first.
    with worker_thread(redis_url, classifier, "pod-0", claim_idle_s=3600):
        wait_until(lambda: drained(db), "the restarted worker did not take back its post")
    assert [r["message_id"] for r in entries(db, RESULTS)] == message_ids


# ----- the command


def test_without_a_model_the_worker_exits_2_with_the_fetch_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert main(["--model", "/nonexistent/model.gguf", "--redis-url", "redis://127.0.0.1:1"]) == 2
    assert "/nonexistent/model.gguf not found" in caplog.text
    assert FETCH_HINT in caplog.text


def test_invalid_settings_exit_2(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--metrics-port", "70000"]) == 2
    assert "worker_metrics_port" in caplog.text


def test_redis_is_waited_for_and_the_worker_stops_on_request(
    classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens at the address: the worker keeps trying (logging why) until stopped."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with worker_thread(url, classifier, "patient"):
        wait_until(lambda: "trying again" in caplog.text, "no retry was logged", timeout=20)
