"""API keys, body and text limits, the rate limit, the request deadline and CORS, against the
real service (CORS through the app in-process)."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import NO_MODEL, running_server

pytestmark = pytest.mark.server

KEYS_FILE_KEY = "key-from-file"
RATE_LIMITED_KEY = "key-rate-limited"
BODY_LIMIT = 4096
BURST = 20  # room for every test's requests with one key; the rate-limit test uses its own


@pytest.fixture(scope="module")
def protected_url(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service with the model, three API keys (two from the environment, one from
    a file), a small body limit and a rate limit of BURST at once, then one every 10 s (slow, so a
    slow machine cannot refill the bucket while the rate-limit test empties it)."""
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text(f"# one key a line\n\n{KEYS_FILE_KEY}\n")
    env = {
        "ALGOSPEAK_MODEL_PATH": str(smollm2_gguf),
        "ALGOSPEAK_THREADS": "2",
        "ALGOSPEAK_API_KEYS": f"key-one, {RATE_LIMITED_KEY}",
        "ALGOSPEAK_API_KEYS_FILE": str(keys_file),
        "ALGOSPEAK_MAX_BODY_BYTES": str(BODY_LIMIT),
        "ALGOSPEAK_MAX_TEXT_CHARS": "500",
        "ALGOSPEAK_RATE_LIMIT_PER_MINUTE": "6",
        "ALGOSPEAK_RATE_LIMIT_BURST": str(BURST),
    }
    with running_server(env) as base:
        yield base


def assert_error(response: httpx.Response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_ and error["message"]
    return error


@pytest.mark.parametrize("path", ["/normalize", "/classify"])
def test_a_request_without_a_key_is_refused_with_401(protected_url: str, path: str) -> None:
    response = httpx.post(f"{protected_url}{path}", json={"text": "hello"})
    assert "API key" in assert_error(response, 401, "unauthorized")["message"]
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "key-on"},
        {"X-API-Key": "key-one-and-more"},
        {"Authorization": "Basic key-one"},
    ],
)
def test_a_wrong_key_is_refused(protected_url: str, headers: dict[str, str]) -> None:
    response = httpx.post(f"{protected_url}/normalize", json={"text": "hi"}, headers=headers)
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer key-one"},
        {"authorization": "bearer key-one"},
        {"X-API-Key": "key-one"},
        {"X-API-Key": KEYS_FILE_KEY},
    ],
)
def test_either_header_with_a_configured_key_is_accepted(
    protected_url: str, headers: dict[str, str]
) -> None:
    response = httpx.post(f"{protected_url}/normalize", json={"text": "unalive"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["normalized"] == "kill"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/"])
def test_probes_metrics_and_the_page_need_no_key(protected_url: str, path: str) -> None:
    assert httpx.get(f"{protected_url}{path}").status_code == 200


def test_info_and_the_openapi_schema_need_a_key(protected_url: str) -> None:
    for path in ("/info", "/openapi.json"):
        assert_error(httpx.get(f"{protected_url}{path}"), 401, "unauthorized")
    assert httpx.get(f"{protected_url}/info", headers={"X-API-Key": "key-one"}).status_code == 200


def test_the_openai_client_authenticates_with_its_own_header(protected_url: str) -> None:
    client = openai.OpenAI(base_url=f"{protected_url}/v1", api_key="key-one", max_retries=0)
    result = client.moderations.create(input="I want to unalive myself")
    assert len(result.results) == 1
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{protected_url}/v1", api_key="nope", max_retries=0
        ).moderations.create(input="hello")


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(protected_url: str) -> None:
    headers = {"X-API-Key": "key-one", "Content-Type": "application/json"}
    # Not even JSON: the size alone decides, so the body was never parsed.
    big = b"{" * (BODY_LIMIT + 1)
    response = httpx.post(f"{protected_url}/normalize", content=big, headers=headers)
    assert str(BODY_LIMIT) in assert_error(response, 413, "payload_too_large")["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        for _ in range(BODY_LIMIT // 512 + 2):
            yield b" " * 512

    response = httpx.post(f"{protected_url}/normalize", content=chunks(), headers=headers)
    assert_error(response, 413, "payload_too_large")
    small = httpx.post(f"{protected_url}/normalize", json={"text": "ok"}, headers=headers)
    assert small.status_code == 200


def test_a_text_over_the_limit_is_refused(protected_url: str) -> None:
    response = httpx.post(
        f"{protected_url}/classify", json={"text": "a" * 501}, headers={"X-API-Key": "key-one"}
    )
    assert "500" in assert_error(response, 422, "text_too_long")["message"]


def test_the_rate_limit_answers_429_with_retry_after_per_key(protected_url: str) -> None:
    limited = {"X-API-Key": RATE_LIMITED_KEY}
    statuses = [
        httpx.post(f"{protected_url}/normalize", json={"text": "x"}, headers=limited).status_code
        for _ in range(BURST + 4)
    ]
    assert statuses[:BURST] == [200] * BURST and 429 in statuses[BURST:]
    response = httpx.post(f"{protected_url}/normalize", json={"text": "x"}, headers=limited)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= 10
    # Another key has its own allowance.
    other = httpx.post(
        f"{protected_url}/normalize", json={"text": "x"}, headers={"X-API-Key": KEYS_FILE_KEY}
    )
    assert other.status_code == 200


def test_a_request_over_the_deadline_gets_504_and_the_service_stays_up(
    smollm2_gguf: Path,
) -> None:
    env = {
        "ALGOSPEAK_MODEL_PATH": str(smollm2_gguf),
        "ALGOSPEAK_THREADS": "2",
        "ALGOSPEAK_REQUEST_TIMEOUT_S": "0.3",
    }
    with running_server(env) as base:
        texts = [f"post number {i} about seggs and unaliving" for i in range(12)]
        response = httpx.post(f"{base}/classify/batch", json={"texts": texts}, timeout=60)
        assert "0.3s" in assert_error(response, 504, "timeout")["message"]
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.post(f"{base}/normalize", json={"text": "k!ll"}).status_code == 200


def test_cors_is_closed_unless_origins_are_configured() -> None:
    preflight = {
        "Origin": "https://moderation.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    closed = TestClient(create_app(Settings(model_path=NO_MODEL)))
    response = closed.post(
        "/normalize", json={"text": "hi"}, headers={"Origin": preflight["Origin"]}
    )
    assert "access-control-allow-origin" not in response.headers
    assert (
        "access-control-allow-origin" not in closed.options("/normalize", headers=preflight).headers
    )

    opened = TestClient(
        create_app(
            Settings(model_path=NO_MODEL, cors_origins="https://moderation.example", api_keys="k")
        )
    )
    answer = opened.options("/normalize", headers=preflight)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://moderation.example"
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    denied = opened.post("/normalize", json={"text": "hi"}, headers={"Origin": preflight["Origin"]})
    assert denied.status_code == 401  # CORS opens the door to the browser, not to the API
    assert denied.headers["access-control-allow-origin"] == "https://moderation.example"
    other = opened.options("/normalize", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_keys_settings_accept_comma_separated_values_and_a_file(tmp_path: Path) -> None:
    from service.auth import load_keys

    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\n a \n\nb\n")
    settings = Settings(api_keys=" x, ,y ", api_keys_file=keys_file)
    assert settings.api_keys == ("x", "y")
    assert load_keys(settings.api_keys, settings.api_keys_file) == ("x", "y", "a", "b")
    assert load_keys((), None) == ()
