"""The real service process, over real HTTP."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import OpenAI

pytestmark = pytest.mark.server


def test_real_server_answers_health_info_and_normalize(server_url: str) -> None:
    assert httpx.get(f"{server_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server_url}/readyz").status_code == 503  # no model in this one
    assert httpx.get(f"{server_url}/info").json()["lexicon"]["codes"] >= 300
    response = httpx.post(f"{server_url}/normalize", json={"text": "thinking about sewer slide"})
    assert response.status_code == 200
    assert response.json()["normalized"] == "thinking about suicide"


def test_real_server_rejects_bad_input_and_stays_up(server_url: str) -> None:
    response = httpx.post(
        f"{server_url}/normalize",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_json"
    response = httpx.post(f"{server_url}/normalize", json={"text": "x" * 20_001})
    assert response.status_code == 422
    assert httpx.get(f"{server_url}/healthz").status_code == 200


def test_concurrent_requests_are_all_answered_like_serial_ones(model_server_url: str) -> None:
    texts = [f"message {i}: unalive" if i % 2 else f"grilled corn number {i}" for i in range(20)]

    def classify(text: str) -> dict:
        response = httpx.post(f"{model_server_url}/classify", json={"text": text}, timeout=120)
        assert response.status_code == 200, response.text
        return {k: v for k, v in response.json().items() if k != "latency_ms"}

    with ThreadPoolExecutor(max_workers=20) as pool:
        concurrent = list(pool.map(classify, texts))
    assert concurrent == [classify(text) for text in texts]


def test_the_official_openai_client_works_unchanged(model_server_url: str) -> None:
    client = OpenAI(base_url=f"{model_server_url}/v1", api_key="unused")
    response = client.moderations.create(input=["kys loser", "grilled corn with lime"])
    assert len(response.results) == 2
    first = response.results[0]
    assert isinstance(first.flagged, bool)
    assert 0.0 <= first.category_scores.self_harm <= 1.0
    assert 0.0 <= first.category_scores.sexual_minors <= 1.0
    assert first.categories.harassment in (True, False)
    single = client.moderations.create(input="kys loser", model="algospeak")
    assert single.model == "algospeak"
    assert single.results[0].category_scores == first.category_scores
