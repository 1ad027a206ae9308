"""The real service process, over real HTTP."""

import httpx
import pytest

pytestmark = pytest.mark.server


def test_real_server_answers_health_info_and_normalize(server_url: str) -> None:
    assert httpx.get(f"{server_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server_url}/readyz").status_code == 200
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
