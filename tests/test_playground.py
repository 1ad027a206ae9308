"""The playground page (GET /): served from the package with nothing fetched from elsewhere, and,
in Debian's chromium against the real service, showing exactly what the API returns."""

import os
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from service.app import create_app
from service.settings import Settings
from tests.conftest import NO_MODEL, running_server

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags chromium's own connections get in the way here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# An emoji span before another span: the page must count code points, as the API does.
TEXT = "no more seggs 🌽 time to unalive myself"
# The same, with the emoji and "corn" left as candidates (the context says grilled corn).
CANDIDATE_TEXT = "no more seggs 🌽 time to unalive myself. grilled corn with lime"
RESULT_TIMEOUT_MS = 60_000
# Refusals the page must explain: status, the API's message, what the page shows.
ERRORS = [
    (429, "rate limit exceeded.", "Too many requests: rate limit exceeded. Try again in 7 s."),
    (
        413,
        "body over 2097152 bytes",
        "The text is too large for the service: body over 2097152 bytes",
    ),
    (422, "text: must not be empty", "The text was not accepted: text: must not be empty"),
]


class _Links(HTMLParser):
    """Every src and href in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_page_and_assets_are_served_from_the_package_with_no_external_urls(
    client: TestClient,
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    parser = _Links()
    parser.feed(page.text)
    assert sorted(parser.links) == ["/static/playground.css", "/static/playground.js", "data:,"]
    script = client.get("/static/playground.js")
    style = client.get("/static/playground.css")
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    for body in (page.text, script.text, style.text):
        assert "http://" not in body and "https://" not in body and "//" + "cdn" not in body
        assert "@import" not in body
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
    assert client.get("/static/app.py").status_code == 404


def test_page_is_public_when_the_api_needs_keys() -> None:
    settings = Settings(model_path=NO_MODEL, api_keys=("k1",))
    with TestClient(create_app(settings)) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/playground.js").status_code == 200
        assert client.post("/normalize", json={"text": "seggs"}).status_code == 401


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by playwright (which never downloads a browser here)."""
    if not CHROMIUM.exists():
        if os.environ.get("ALGOSPEAK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and ALGOSPEAK_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A fresh tab on the playground, and the list its console errors (CSP ones too) go to."""
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{url}/")
    return page, problems


def check(page: Page, text: str) -> None:
    page.get_by_label("Text to check").fill(text)
    page.get_by_role("button", name="Check").click()


def refusal(status: int, message: str) -> Callable[[Route], None]:
    """A route handler answering like the API refusing a request."""

    def refuse(route: Route) -> None:
        body = {"error": {"type": "test", "message": message}}
        route.fulfill(status=status, json=body, headers={"Retry-After": "7"})

    return refuse


def marks(page: Page, selector: str) -> list[dict[str, str]]:
    return page.locator(selector).evaluate_all(
        "nodes => nodes.map(n => "
        "({text: n.textContent, start: n.dataset.start, end: n.dataset.end}))"
    )


def titles(page: Page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("nodes => nodes.map(n => n.title)")


def assert_text_views(page: Page, text: str, expected: dict[str, Any]) -> None:
    """The highlighted pieces are exactly the API's spans and candidates, at its offsets."""
    spans = expected["spans"]
    assert page.locator("#original").text_content() == text
    assert page.locator("#normalized").text_content() == expected["normalized"]
    assert marks(page, "#original mark.span") == [
        {"text": s["original"], "start": str(s["start"]), "end": str(s["end"])} for s in spans
    ]
    assert [m["text"] for m in marks(page, "#normalized mark.span")] == [
        s["replacement"] for s in spans if s["replacement"]
    ]
    assert marks(page, "#original mark.candidate") == [
        {"text": c["original"], "start": str(c["start"]), "end": str(c["end"])}
        for c in expected["candidates"]
    ]
    assert page.locator("#spans tr").count() == len(spans)
    shown = page.locator("#candidates li").all_text_contents()
    assert len(shown) == len(expected["candidates"])
    for item, candidate in zip(shown, expected["candidates"], strict=True):
        assert candidate["original"] in item and candidate["reason"] in item


def thresholds_line(answer: dict[str, Any]) -> str:
    """The thresholds line for a /classify answer, as a moderator should read it."""
    thresholds = answer["explanation"]["thresholds"]
    source = thresholds["source"]
    line = (
        f"Thresholds: review ≥ {thresholds['review']:g}, block ≥ {thresholds['block']:g} "
        f"({'default' if source == 'default' else f'{source} override'})"
    )
    return line if answer["moderated"] else f"{line} · not moderated by this platform's policy"


def assert_explanation(page: Page, answer: dict[str, Any]) -> None:
    """The verdict card shows the explanation's own summary and thresholds, and the text views
    use its sentences for each decoded span and each candidate left as is."""
    explanation = answer["explanation"]
    expect(page.locator("#summary")).to_have_text(explanation["summary"])
    assert page.locator("#summary").text_content() == explanation["summary"]
    assert page.locator("#thresholds").text_content() == thresholds_line(answer)
    applied = explanation["thresholds"]["applied"]
    assert page.locator("#thresholds .reached").evaluate_all(
        "nodes => nodes.map(n => n.dataset.threshold)"
    ) == ([applied] if applied else [])

    decoded = explanation["codes"] + explanation["cleanup"]
    said = {(d["start"], d["end"]): d["text"] for d in decoded}
    spans = [said[s["start"], s["end"]] for s in answer["spans"]]
    assert len(decoded) == len(spans)
    assert titles(page, "#spans tr") == spans
    assert titles(page, "#original mark.span") == spans
    not_codes = [n["text"] for n in explanation["not_codes"]]
    assert page.locator("#candidates li").all_text_contents() == not_codes
    assert titles(page, "#original mark.candidate") == not_codes


@pytest.mark.server
def test_page_shows_the_classification_the_api_returns(
    browser: Browser, model_server_url: str, tmp_path: Path
) -> None:
    """What the page shows is the /classify answer it got (captured, not assumed), with its
    explanation (asked for, without the slow model-written reason), and its spans are those
    /normalize returns for the text (asked separately)."""
    page, problems = open_page(browser, model_server_url)
    with page.expect_response(
        lambda r: r.url.endswith("/classify"), timeout=RESULT_TIMEOUT_MS
    ) as answer:
        check(page, TEXT)
    assert answer.value.status == 200
    assert answer.value.request.post_data_json == {"text": TEXT, "explain": True}
    expected = answer.value.json()
    page.locator("#verdict").wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)

    normalized = httpx.post(f"{model_server_url}/normalize", json={"text": TEXT}).json()
    assert [s["original"] for s in normalized["spans"]] == ["seggs", "🌽", "unalive"]
    for field in ("normalized", "spans", "candidates"):
        assert expected[field] == normalized[field]
    assert_text_views(page, TEXT, normalized)
    for field in ("label", "category", "severity", "action"):
        assert page.locator(f"#{field}").text_content() == expected[field]
    assert page.locator("#action").get_attribute("class") == f"action action-{expected['action']}"
    assert page.locator("#confidence").text_content() == f"{expected['confidence'] * 100:.1f}%"
    assert_explanation(page, expected)
    for group in ("label", "category", "severity"):
        rows = page.locator(f"#scores-{group} .bar-row").evaluate_all(
            """rows => rows.map(r => ({
                name: r.dataset.name,
                value: Number(r.dataset.value),
                chosen: r.classList.contains('chosen'),
                now: Number(r.querySelector('[role=meter]').getAttribute('aria-valuenow')),
                fill: r.querySelector('.bar-fill').getBoundingClientRect().width
                    / r.querySelector('.bar').getBoundingClientRect().width,
            }))"""
        )
        scores = expected["scores"][group]
        assert {r["name"]: r["value"] for r in rows} == scores
        assert [r["name"] for r in rows if r["chosen"]] == [expected[group]]
        for row in rows:
            assert row["now"] == pytest.approx(scores[row["name"]] * 100, abs=0.051)
            assert row["fill"] == pytest.approx(scores[row["name"]], abs=0.02)
    assert page.locator("#model-error").is_hidden() and page.locator("#error").is_hidden()
    assert problems == []

    whole = Image.open(BytesIO(page.screenshot(full_page=True))).convert("RGB")
    assert len(whole.getcolors(maxcolors=1 << 20) or ()) > 50  # text, marks, bars: not blank
    result = Image.open(BytesIO(page.locator("#results").screenshot(path=tmp_path / "r.png")))
    assert result.width > 600 and result.height > 400
    assert len(result.convert("RGB").getcolors(maxcolors=1 << 20) or ()) > 50

    # A text with candidates left as is: the list shows each not_code's own sentence.
    with page.expect_response(
        lambda r: r.url.endswith("/classify"), timeout=RESULT_TIMEOUT_MS
    ) as answer:
        check(page, CANDIDATE_TEXT)
    expected = answer.value.json()
    assert [n["original"] for n in expected["explanation"]["not_codes"]] == ["🌽", "corn"]
    assert_explanation(page, expected)
    assert_text_views(page, CANDIDATE_TEXT, expected)
    assert problems == []


@pytest.mark.server
def test_with_api_keys_the_page_asks_for_a_key_and_works_with_it(browser: Browser) -> None:
    """Without a key: a message asking for one. With it: the normalizer's result, and /classify's
    503 message (this server has no model), which also shows the key reached both calls."""
    env = {"ALGOSPEAK_MODEL_PATH": str(NO_MODEL), "ALGOSPEAK_API_KEYS": "k1"}
    with running_server(env, ready="/healthz") as url:
        expected = httpx.post(
            f"{url}/normalize", json={"text": CANDIDATE_TEXT}, headers={"X-API-Key": "k1"}
        ).json()
        page, problems = open_page(browser, url)
        check(page, CANDIDATE_TEXT)
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
        assert "needs an API key" in error.text_content()
        assert page.locator("#results").is_hidden()

        page.get_by_label("API key").fill("k1")
        page.get_by_role("button", name="Check").click()
        model_error = page.locator("#model-error")
        model_error.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
        assert "model is unavailable" in model_error.text_content()
        assert str(NO_MODEL) in model_error.text_content()
        assert error.is_hidden() and page.locator("#verdict").is_hidden()
        assert_text_views(page, CANDIDATE_TEXT, expected)

        page.reload()  # the key is kept for the tab
        assert page.get_by_label("API key").input_value() == "k1"

        for status, message, shown in ERRORS:  # what the page says to each refusal
            refuse = refusal(status, message)
            page.route("**/normalize", refuse)
            page.route("**/classify", refuse)
            check(page, CANDIDATE_TEXT)
            expect(error).to_have_text(shown, timeout=RESULT_TIMEOUT_MS)
            assert page.locator("#results").is_hidden()
            page.unroute_all()
        # Chromium logs each error answer as a failed load; nothing else may be logged.
        failed_load = "Failed to load resource: the server responded with a status of"
        assert [p for p in problems if not p.startswith(failed_load)] == []
