"""/classify, /classify/batch and /v1/moderations on the real SmolLM2 GGUF, plus their errors."""

import json
import math
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.test_api import assert_error
from tests.test_observability import metric

TEXTS = ["I want to unalive myself", "grilled corn with lime", "new 🌽 drop for subscribers"]


def test_classify_returns_the_contract(model_client: TestClient) -> None:
    body = model_client.post("/classify", json={"text": TEXTS[0]}).json()
    assert body["label"] in ("harmful", "safe")
    assert body["action"] in ("allow", "review", "block")
    assert body["confidence"] == body["scores"]["label"][body["label"]]
    for scores in body["scores"].values():
        assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-9)
    assert body["normalized"] == "I want to kill myself"
    assert body["spans"][0]["original"] == "unalive"
    assert body["model"]
    assert body["latency_ms"] > 0


def test_batch_equals_singles(model_client: TestClient) -> None:
    batch = model_client.post("/classify/batch", json={"texts": TEXTS}).json()["results"]
    singles = [model_client.post("/classify", json={"text": t}).json() for t in TEXTS]
    strip = lambda r: {k: v for k, v in r.items() if k != "latency_ms"}  # noqa: E731
    assert [strip(r) for r in batch] == [strip(r) for r in singles]


def test_moderations_accepts_a_string_or_a_list(model_client: TestClient) -> None:
    one = model_client.post("/v1/moderations", json={"input": TEXTS[0]}).json()
    assert one["id"].startswith("modr-")
    assert len(one["results"]) == 1
    result = one["results"][0]
    assert set(result["categories"]) == set(result["category_scores"])
    assert "self-harm" in result["categories"] and "sexual/minors" in result["categories"]
    assert result["flagged"] == any(result["categories"].values())
    many = model_client.post("/v1/moderations", json={"input": TEXTS}).json()
    assert len(many["results"]) == 3
    assert many["results"][0]["category_scores"] == result["category_scores"]


def test_info_describes_the_model(model_client: TestClient, smollm2_gguf: Path) -> None:
    info = model_client.get("/info").json()
    assert info["model"]["file"] == smollm2_gguf.name
    assert str(smollm2_gguf.parent) not in json.dumps(info)  # no paths of the machine
    assert info["model"]["architecture"] == "llama"
    assert len(info["model"]["sha256"]) == 64
    assert info["model_error"] is None
    assert model_client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("path", "payload", "status", "needle"),
    [
        ("/classify", {"text": ""}, 422, "empty"),
        ("/classify", {"text": "x" * 2001}, 422, "limit"),
        ("/classify", {"text": 3}, 422, "text"),
        ("/classify/batch", {"texts": []}, 422, "at least one"),
        ("/classify/batch", {"texts": ["ok"] * 65}, 413, "batch limit of 64"),
        ("/classify/batch", {"texts": ["ok", ""]}, 422, "texts[1]"),
        ("/classify/batch", {"texts": "not a list"}, 422, "texts"),
        ("/v1/moderations", {"input": 5}, 422, "input"),
        ("/v1/moderations", {"input": []}, 422, "at least one"),
        ("/v1/moderations", {"input": ["ok", 5]}, 422, "input"),
        ("/v1/moderations", {}, 422, "input"),
    ],
)
def test_bad_input_is_4xx_with_the_error_shape(model_client, path, payload, status, needle) -> None:
    error = assert_error(model_client.post(path, json=payload), status)
    assert needle in error["message"]


# Unpaired surrogates (JSON's "\ud800") in any field, echoed or not, are 422 naming the field.
# The first row was a 500 once: the moderation response echoes "model" and JSON cannot encode it.
SURROGATE_BODIES = [
    ("/v1/moderations", b'{"input": "ok", "model": "\\ud800"}', "model: contains unpaired"),
    ("/v1/moderations", b'{"input": "a \\udfff b"}', "input: contains unpaired"),
    ("/v1/moderations", b'{"input": ["ok", "\\udc00"]}', "input: item [1] contains unpaired"),
    ("/classify", b'{"text": "a \\ud800 b"}', "text: contains unpaired"),
    ("/classify", b'{"text": "ok", "explain": "\\ud800"}', "explain: must be true, false"),
    ("/classify/batch", b'{"texts": ["ok", "\\udbff"]}', "texts: item [1] contains unpaired"),
    ("/classify/batch", b'{"texts": ["ok"], "explain": "\\udfff"}', "explain: must be"),
    ("/classify", b'{"text": "ok", "\\ud800": 1}', "body: Input should be a valid string"),
]


@pytest.mark.parametrize(("path", "body", "needle"), SURROGATE_BODIES)
def test_unpaired_surrogates_anywhere_are_422_naming_the_field(
    model_client: TestClient, path: str, body: bytes, needle: str
) -> None:
    response = model_client.post(path, content=body, headers={"content-type": "application/json"})
    assert needle in assert_error(response, 422, "invalid_request")["message"]


def test_a_valid_surrogate_pair_is_an_ordinary_character(model_client: TestClient) -> None:
    body = b'{"input": "ok \\ud83d\\ude00", "model": "mine \\ud83d\\ude00"}'
    response = model_client.post(
        "/v1/moderations", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "mine 😀"


def test_a_full_queue_answers_503_with_retry_after(smollm2_gguf: Path) -> None:
    settings = Settings(model_path=smollm2_gguf, threads=1, context_size=1024, queue_size=0)
    with TestClient(create_app(settings)) as client:
        gate = client.app.state.classifier.gate
        with gate.slot():  # the model is busy with someone else's request
            response = client.post("/classify", json={"text": "hello"})
        error = assert_error(response, 503, "busy")
        assert "queue is full" in error["message"]
        assert response.headers["retry-after"]
        assert client.post("/classify", json={"text": "hello"}).status_code == 200


def test_a_long_wait_answers_503_instead_of_hanging(smollm2_gguf: Path) -> None:
    settings = Settings(
        model_path=smollm2_gguf, threads=1, context_size=1024, queue_size=4, queue_timeout_s=0.3
    )
    with TestClient(create_app(settings)) as client:
        release = threading.Event()
        held = threading.Event()

        def hold() -> None:
            with client.app.state.classifier.gate.slot():
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(5)
        response = client.post("/classify", json={"text": "hello"})
        release.set()
        holder.join()
        error = assert_error(response, 503, "busy")
        assert "waited" in error["message"]


@pytest.mark.parametrize("content", [None, b"GGUF" + b"\x00" * 64, b"not a model at all"])
def test_a_missing_or_corrupt_model_keeps_the_service_up(tmp_path: Path, content) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with TestClient(create_app(Settings(model_path=path))) as client:
        error = assert_error(
            client.post("/classify", json={"text": "hi"}), 503, "model_unavailable"
        )
        assert str(path) in error["message"]
        assert "ALGOSPEAK_MODEL_PATH" in error["message"]  # says what to do
        assert_error(client.get("/readyz"), 503, "model_unavailable")
        assert_error(client.post("/v1/moderations", json={"input": "hi"}), 503)
        assert client.post("/normalize", json={"text": "kys"}).json()["normalized"] == (
            "kill yourself"
        )
        info = client.get("/info").json()
        assert info["model"] is None and str(path) in info["model_error"]


class BrokenEngine:
    """Routing fake: the real engine's tokenizer, then a model call that fails in a way the
    service does not expect."""

    def __init__(self, real) -> None:
        self.info = real.info
        self.request_tokens = real.request_tokens

    def score_many(self, requests):
        raise RuntimeError("llama_decode returned -1")


def test_a_failing_model_call_is_500_and_the_service_keeps_serving(smollm2_gguf: Path) -> None:
    settings = Settings(model_path=smollm2_gguf, threads=1, context_size=1024)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        classifier = client.app.state.classifier
        real = classifier.engine
        classifier.engine = BrokenEngine(real)
        try:
            assert_error(client.post("/classify", json={"text": "hi"}), 500, "internal_error")
        finally:
            classifier.engine = real
        assert client.post("/classify", json={"text": "hi"}).status_code == 200
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/classify", {"text": "漢" * 1500}, "text"),
        ("/classify/batch", {"texts": ["hello", "漢" * 1500]}, "texts[1]"),
        ("/v1/moderations", {"input": "漢" * 1500}, "input"),
        ("/v1/moderations", {"input": ["hello", "漢" * 1500]}, "input[1]"),
    ],
)
def test_a_text_over_the_models_context_is_422_naming_its_field(
    model_client: TestClient, path: str, body: dict, field: str
) -> None:
    # Under the character limit (2,000), over the model's context (1,024 tokens).
    error = assert_error(model_client.post(path, json=body), 422, "text_too_long")
    assert error["message"].startswith(f"{field}: ") and "context" in error["message"]


def test_concurrent_requests_are_scored_together_with_the_answers_they_get_alone(
    smollm2_gguf: Path,
) -> None:
    texts = [*TEXTS, "kys loser", "see you l8r", "got some snow for the party", "ok " * 120]
    settings = Settings(
        model_path=smollm2_gguf, threads=2, context_size=1024, rate_limit_per_minute=0
    )
    with TestClient(create_app(settings)) as client:
        alone = [strip(client.post("/classify", json={"text": t}).json()) for t in texts]
        before = client.get("/metrics").text
        gate = client.app.state.classifier.gate
        answers: dict[int, dict] = {}

        def send(i: int) -> None:
            answers[i] = client.post("/classify", json={"text": texts[i]}).json()

        # While the model is busy the requests queue; freed, it takes them all in one batch.
        with gate.slot():
            threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while gate.depth < 1 + len(texts):
                assert time.monotonic() < deadline, "the requests did not all queue"
                time.sleep(0.01)
        for thread in threads:
            thread.join(120)
        assert [strip(answers[i]) for i in range(len(texts))] == alone
        after = client.get("/metrics").text
        batches = metric(after, "algospeak_model_batch_texts_count") - metric(
            before, "algospeak_model_batch_texts_count"
        )
        scored = metric(after, "algospeak_model_batch_texts_sum") - metric(
            before, "algospeak_model_batch_texts_sum"
        )
        assert (batches, scored) == (1, len(texts))
        # A batch request's texts go to the model together too.
        before = after
        batch = client.post("/classify/batch", json={"texts": texts}).json()["results"]
        assert [strip(result) for result in batch] == alone
        after = client.get("/metrics").text
        assert (
            metric(after, "algospeak_model_batch_texts_count")
            - metric(before, "algospeak_model_batch_texts_count")
            == 1
        )


def strip(result: dict) -> dict:
    """A /classify answer without what differs between runs."""
    return {key: value for key, value in result.items() if key != "latency_ms"}
