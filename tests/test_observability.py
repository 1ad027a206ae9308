"""JSON logs with request ids and no raw texts, Prometheus metrics, and several workers,
against the real service."""

import hashlib
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_server

pytestmark = pytest.mark.server

post = partial(httpx.post, timeout=120)  # the model may be slow on a busy machine
SECRET_TEXT = "my very private post about unaliving, 42 carrots"


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def logged_server(
    smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("logs") / "service.log"
    env = {"ALGOSPEAK_MODEL_PATH": str(smollm2_gguf), "ALGOSPEAK_THREADS": "2"}
    with running_server(env, log_path=log) as base:
        yield base, log


def test_every_log_line_is_json_and_requests_carry_their_id(
    logged_server: tuple[str, Path],
) -> None:
    base, log = logged_server
    given = post(
        f"{base}/classify", json={"text": SECRET_TEXT}, headers={"X-Request-ID": "abc-123"}
    )
    assert given.status_code == 200 and given.headers["x-request-id"] == "abc-123"
    generated = post(f"{base}/normalize", json={"text": "hi"}).headers["x-request-id"]
    hostile = httpx.get(f"{base}/healthz", headers={"X-Request-ID": "not/a plain id " + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])

    lines = log_lines(log)  # raises if any line is not JSON (uvicorn's own lines included)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    mine = [line for line in lines if line.get("request_id") == "abc-123"]
    access = next(line for line in mine if line["logger"] == "service.access")
    assert access["route"] == "/classify" and access["status"] == 200
    assert access["duration_ms"] > 0
    decision = next(line for line in mine if line["message"] == "classified")
    assert decision["text_sha256"] == hashlib.sha256(SECRET_TEXT.encode()).hexdigest()[:16]
    assert decision["text_chars"] == len(SECRET_TEXT)
    assert decision["label"] in ("harmful", "safe")


def test_raw_texts_are_not_logged(logged_server: tuple[str, Path]) -> None:
    base, log = logged_server
    post(f"{base}/classify", json={"text": SECRET_TEXT})
    post(f"{base}/normalize", json={"text": SECRET_TEXT})
    post(f"{base}/classify", json={"text": SECRET_TEXT + "x" * 30_000})  # refused: too long
    text = log.read_text()
    assert "private post" not in text and "carrots" not in text


def metric(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in exposition.splitlines():
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        if metric_name == name and ",".join(sorted(label_text.rstrip("}").split(","))) == wanted:
            return float(value)
    return 0.0


def test_metrics_count_requests_latency_model_work_and_decisions(
    logged_server: tuple[str, Path],
) -> None:
    base, _ = logged_server
    before = httpx.get(f"{base}/metrics").text
    texts = ["hello there", "time to unalive", "seggs tonight?"]
    verdicts = [post(f"{base}/classify", json={"text": t}).json() for t in texts]
    post(f"{base}/classify", json={"text": ""})
    after = httpx.get(f"{base}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    now = after.text

    def grew(name: str, **labels: str) -> float:
        return metric(now, name, **labels) - metric(before, name, **labels)

    assert grew("algospeak_requests_total", route="/classify", method="POST", status="200") == 3
    assert grew("algospeak_requests_total", route="/classify", method="POST", status="422") == 1
    assert grew("algospeak_request_duration_seconds_count", route="/classify") == 4
    assert grew("algospeak_model_seconds_count") == 3
    assert grew("algospeak_tokens_evaluated_total") > 3 * 10
    for verdict in verdicts:
        labels = {k: verdict[k] for k in ("label", "category", "action")}
        assert metric(now, "algospeak_decisions_total", **labels) >= 1
    assert metric(now, "algospeak_queue_depth") == 0
    unknown = httpx.get(f"{base}/no/such/path/{time.time()}")
    assert unknown.status_code == 404
    assert 'route="unmatched"' in httpx.get(f"{base}/metrics").text  # not one series per path


def test_two_workers_answer_concurrent_requests_and_metrics_add_up(
    smollm2_gguf: Path, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        "ALGOSPEAK_MODEL_PATH": str(smollm2_gguf),
        "ALGOSPEAK_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = tmp_path / "service.log"
    texts = [
        f"message {i}: unalive k!ll seggs" if i % 2 else f"hello number {i}" for i in range(16)
    ]
    with running_server(env, log_path=log) as base:
        # Both workers load their model; readiness only proves one of them.
        deadline = time.monotonic() + 60
        while sum("lexicon" in ln["message"] for ln in log_lines(log)) < 2:
            assert time.monotonic() < deadline, "the second worker never started"
            time.sleep(0.2)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda t: post(f"{base}/classify", json={"text": t}), texts))
        exposition = httpx.get(f"{base}/metrics").text
        served_by = {int(p.stem.rpartition("_")[2]) for p in metrics_dir.glob("counter_*.db")}
    assert [a.status_code for a in answers] == [200] * len(texts)
    assert (
        metric(
            exposition, "algospeak_requests_total", route="/classify", method="POST", status="200"
        )
        == 16
    )
    assert metric(exposition, "algospeak_model_seconds_count") == 16
    assert len(served_by) == 2, "metrics were not kept per worker process"
