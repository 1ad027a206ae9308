"""The HTTP contract: endpoints, response shapes and the shared error shape."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from algospeak import HARM_CATEGORIES
from service.app import create_app
from service.settings import Settings


def assert_error(response, status: int, error_type: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["message"]
    if error_type:
        assert body["error"]["type"] == error_type
    return body["error"]


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_503_without_a_model_and_says_why(client: TestClient) -> None:
    error = assert_error(client.get("/readyz"), 503, "model_unavailable")
    assert "not found" in error["message"]


def test_readyz_is_503_before_the_lifespan_has_loaded_anything() -> None:
    client = TestClient(create_app(Settings()))  # no `with`: the lifespan never runs
    error = assert_error(client.get("/readyz"), 503, "not_ready")
    assert "starting" in error["message"]
    assert client.get("/healthz").status_code == 200


def test_info_reports_version_and_lexicon(client: TestClient) -> None:
    info = client.get("/info").json()
    assert info["version"]
    lexicon = info["lexicon"]
    assert lexicon["codes"] >= 300
    assert len(lexicon["sha256"]) == 64
    assert set(lexicon["by_category"]) == set(HARM_CATEGORIES)
    assert info["max_text_chars"] == 2_000


def test_normalize_decodes_and_reports_spans_in_the_original(client: TestClient) -> None:
    text = "the character got unalived and s e x is trending"
    body = client.post("/normalize", json={"text": text}).json()
    assert body["text"] == text
    assert body["normalized"] == "the character got killed and sex is trending"
    assert body["changed"] is True
    for span in body["spans"]:
        assert text[span["start"] : span["end"]] == span["original"]
        assert set(span) == {"start", "end", "original", "replacement", "category", "rule", "entry"}
    rules = {span["original"]: span["rule"] for span in body["spans"]}
    assert rules == {"unalived": "lexicon", "s e x": "spacing"}


def test_normalize_reports_ambiguous_codes_as_candidates(client: TestClient) -> None:
    body = client.post("/normalize", json={"text": "grilled corn with lime"}).json()
    assert body["changed"] is False
    assert body["normalized"] == "grilled corn with lime"
    assert [c["original"] for c in body["candidates"]] == ["corn"]
    assert body["candidates"][0]["reason"]


def test_normalize_plain_text_is_unchanged(client: TestClient) -> None:
    body = client.post("/normalize", json={"text": "see you l8r, 2nd floor"}).json()
    assert body == {
        "text": "see you l8r, 2nd floor",
        "normalized": "see you l8r, 2nd floor",
        "changed": False,
        "spans": [],
        "candidates": [],
    }


def test_invalid_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/normalize",
        content=b'{"text": "unterminated',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400, "invalid_json")


def test_invalid_utf8_body_is_4xx(client: TestClient) -> None:
    response = client.post(
        "/normalize", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({}, "text"),
        ({"text": 42}, "text"),
        ({"text": None}, "text"),
        ({"text": ["a"]}, "text"),
        ({"text": "ok", "extra": 1}, "extra"),
        ([], "body"),
        ("just a string", "body"),
    ],
)
def test_bad_bodies_are_422_with_the_field_named(client: TestClient, payload, needle) -> None:
    error = assert_error(client.post("/normalize", json=payload), 422, "invalid_request")
    assert needle in error["message"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_422(client: TestClient, text: str) -> None:
    error = assert_error(client.post("/normalize", json={"text": text}), 422, "invalid_request")
    assert "empty" in error["message"]


def test_text_over_the_limit_is_422(client: TestClient) -> None:
    error = assert_error(
        client.post("/normalize", json={"text": "a" * 2_001}), 422, "text_too_long"
    )
    assert "2000" in error["message"]
    assert client.post("/normalize", json={"text": "a" * 2_000}).status_code == 200


def test_limit_comes_from_settings() -> None:
    with TestClient(create_app(Settings(max_text_chars=5))) as client:
        assert_error(client.post("/normalize", json={"text": "abcdef"}), 422, "text_too_long")


def test_lone_surrogates_are_422(client: TestClient) -> None:
    response = client.post(
        "/normalize",
        content=b'{"text": "bad \\ud800 text"}',
        headers={"content-type": "application/json"},
    )
    error = assert_error(response, 422, "invalid_request")
    assert error["message"] == "text: contains unpaired surrogates, which are not valid Unicode"


def test_unknown_route_and_wrong_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/normalize"), 405, "method_not_allowed")


def test_non_json_content_type_is_4xx(client: TestClient) -> None:
    response = client.post(
        "/normalize", content=b"text=hello", headers={"content-type": "text/plain"}
    )
    assert_error(response, 422)


def test_the_service_keeps_serving_after_bad_requests(client: TestClient) -> None:
    client.post("/normalize", content=b"{", headers={"content-type": "application/json"})
    client.post("/normalize", json={"text": "x" * 10_000})
    assert client.post("/normalize", json={"text": "k!ll"}).json()["normalized"] == "kill"


# What is not JSON: the playground page and Prometheus' text format; each declares its type.
PAGES_AND_TEXT = ("/", "/metrics")


def test_openapi_documents_every_route_with_a_response_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/healthz", "/readyz", "/info", "/normalize", "/classify", "/classify/batch"):
        assert path in spec["paths"]
    for path, methods in spec["paths"].items():
        for operation in methods.values():
            content = operation["responses"]["200"]["content"]
            if path in PAGES_AND_TEXT:
                assert content and "application/json" not in content, path
                continue
            assert content["application/json"]["schema"], f"{path} has no response schema"
    assert "/v1/moderations" in spec["paths"]


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in Settings.model_fields:
        assert f"`ALGOSPEAK_{name.upper()}`" in table, f"{name} is not in the README's table"
