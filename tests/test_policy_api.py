"""Platform policies in the service: the rules they make, startup, /info, the admin reload,
SIGHUP, the file watch, the OpenAI endpoint, and reloads while requests keep coming."""

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from algospeak import PolicyError, load_lexicon, load_policy
from service.app import create_app
from service.policy import PolicyHolder, Rules, build_rules
from service.scoring import Classification
from service.settings import Settings
from tests.conftest import NO_MODEL, running_server, running_server_process

ADMIN_KEY = "admin-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HARM = ("self_harm", "hate", "sexual", "violence", "harassment", "drugs", "child_safety")

# Two valid policies that decode TEXT differently: a result that is neither is a mix.
TEXT = "zorblax and quuxfoo got unalived"
POLICY_ONE = """\
version: "one"
codes:
  - {id: zorblax_code, category: sexual, meaning: porn, variants: [zorblax]}
"""
POLICY_TWO = """\
version: "two"
codes:
  - {id: quuxfoo_code, category: violence, meaning: stab, variants: [quuxfoo]}
disable: [unalive]
"""
DECODED = {
    "one": "porn and quuxfoo got killed",
    "two": "zorblax and stab got unalived",
}
BAD_POLICY = 'version: "three"\nthresholds: {violense: {review: 0.1}}\n'


def write(path: Path, text: str) -> str:
    """Write ``text`` to ``path`` and return its sha256, as /info reports it."""
    path.write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()


def scored(harmful: float, top: str) -> Classification:
    """A model answer with P(harmful) = ``harmful``, most of it on category ``top``."""
    rest = harmful * 0.1 / (len(HARM) - 1)
    categories = {c: rest for c in HARM} | {top: harmful * 0.9, "none": 1 - harmful}
    return Classification(
        label="harmful" if harmful >= 0.5 else "safe",
        category=top if harmful >= 0.5 else "none",
        severity="high" if harmful >= 0.5 else "none",
        confidence=max(harmful, 1 - harmful),
        label_scores={"harmful": harmful, "safe": 1 - harmful},
        category_scores=categories,
        severity_scores={"none": 1 - harmful, "high": harmful},
        tokens_evaluated=10,
    )


# --- the rules a policy makes (no HTTP) ---


def rules_for(tmp_path: Path, body: str, **settings) -> Rules:
    write(tmp_path / "policy.yaml", body)
    policy = load_policy(tmp_path / "policy.yaml")
    return build_rules(Settings(model_path=NO_MODEL, **settings), load_lexicon(), policy)


def test_policy_thresholds_override_the_settings_key_by_key(tmp_path: Path) -> None:
    body = 'version: "1"\nreview: 0.3\nthresholds:\n  child_safety: {review: 0.1}\n'
    rules = rules_for(
        tmp_path,
        body,
        category_thresholds={"child_safety": {"block": 0.4}, "hate": {"review": 0.7}},
    )
    assert rules.decide(scored(0.15, "child_safety")) == ("review", True)  # policy's review
    assert rules.decide(scored(0.45, "child_safety")) == ("block", True)  # settings' block
    assert rules.decide(scored(0.35, "violence")) == ("review", True)  # policy's global review
    assert rules.decide(scored(0.5, "hate")) == ("allow", True)  # settings' hate review
    assert rules.decide(scored(0.95, "hate")) == ("block", True)  # settings' global block


def test_an_unmoderated_category_is_reported_but_never_flagged(tmp_path: Path) -> None:
    rules = rules_for(tmp_path, 'version: "1"\nunmoderated: [drugs]\nblock: 0.5\n')
    assert rules.decide(scored(0.99, "drugs")) == ("allow", False)
    assert rules.decide(scored(0.99, "violence")) == ("block", True)
    assert rules.decide(scored(0.1, "violence")) == ("allow", True)


def test_thresholds_that_cross_the_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"hate would have review 0\.95 above block 0\.9"):
        rules_for(tmp_path, 'version: "1"\nthresholds: {hate: {review: 0.95}}\n')


def test_a_refused_reload_keeps_the_rules_in_force(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, POLICY_ONE)
    holder = PolicyHolder(Settings(model_path=NO_MODEL, policy_path=path))
    before = holder.rules
    write(path, BAD_POLICY)
    with pytest.raises(PolicyError, match="violense"):
        holder.reload()
    assert holder.rules is before
    assert "policy.yaml" in holder.error and "violense" in holder.error
    write(path, POLICY_TWO)
    assert holder.reload() is holder.rules
    assert holder.rules.policy.version == "two" and holder.error is None


def test_the_file_check_reloads_each_change_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, POLICY_ONE)
    holder = PolicyHolder(Settings(model_path=NO_MODEL, policy_path=path))
    first = holder.rules
    assert holder.reload_if_changed() is False and holder.rules is first
    write(path, BAD_POLICY)
    assert holder.reload_if_changed() is True and holder.rules is first and holder.error
    assert holder.reload_if_changed() is False  # the same bad bytes are not tried again
    write(path, POLICY_TWO)
    assert holder.reload_if_changed() is True and holder.rules.policy.version == "two"
    path.unlink()
    assert holder.reload_if_changed() is True and "cannot read policy" in holder.error
    assert holder.rules.policy.version == "two"


def test_without_a_policy_file_there_is_nothing_to_reload() -> None:
    holder = PolicyHolder(Settings(model_path=NO_MODEL))
    assert holder.rules.policy is None
    assert holder.reload_if_changed() is False
    with pytest.raises(PolicyError, match="ALGOSPEAK_POLICY_PATH"):
        holder.reload()


# --- the service without a model ---


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    write(path, POLICY_ONE)
    return path


def app_client(**settings) -> TestClient:
    return TestClient(create_app(Settings(model_path=NO_MODEL, **settings)))


def decoded(client: TestClient | httpx.Client) -> str:
    response = client.post("/normalize", json={"text": TEXT})
    assert response.status_code == 200, response.text
    return response.json()["normalized"]


def test_the_policy_applies_from_startup_and_info_names_it(policy_path: Path) -> None:
    with app_client(policy_path=policy_path) as client:
        assert decoded(client) == DECODED["one"]
        info = client.get("/info").json()
    policy = info["policy"]
    assert policy["version"] == "one"
    assert policy["sha256"] == hashlib.sha256(policy_path.read_bytes()).hexdigest()
    assert policy["source"] == "policy.yaml"
    assert (policy["added"], policy["disabled"], policy["unmoderated"]) == (1, 0, [])
    assert policy["error"] is None and policy["loaded_at"]
    assert info["lexicon"]["version"].endswith("+policy-one")


def test_info_reports_no_policy_without_one(client: TestClient) -> None:
    assert client.get("/info").json()["policy"] is None


def test_a_bad_policy_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, BAD_POLICY)
    with pytest.raises(PolicyError, match="violense"), app_client(policy_path=path):
        pass


def test_the_admin_api_is_off_without_admin_keys(policy_path: Path) -> None:
    with app_client(policy_path=policy_path) as client:
        response = client.post("/admin/policy/reload", headers=ADMIN)
    assert response.status_code == 403
    assert "ALGOSPEAK_ADMIN_KEYS" in response.json()["error"]["message"]


def test_the_admin_api_takes_admin_keys_only(policy_path: Path) -> None:
    settings = {"policy_path": policy_path, "admin_keys": ADMIN_KEY, "api_keys": "api-key"}
    with app_client(**settings) as client:
        for headers in ({}, {"X-API-Key": "api-key"}, {"Authorization": "Bearer wrong"}):
            response = client.post("/admin/policy/reload", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["type"] == "unauthorized"
        assert client.post("/admin/policy/reload", headers=ADMIN).status_code == 200
        assert client.post("/admin/policy/reload", headers={"X-API-Key": ADMIN_KEY}).is_success
        # ... and an admin key is no API key.
        assert client.post("/normalize", json={"text": "hi"}, headers=ADMIN).status_code == 401


@pytest.mark.parametrize(
    "body", [b'{"version": "\\ud800"}', b'"\\udfff"', b"\xff not json", b'{"a": ["\\ud800"]}']
)
def test_the_admin_reload_ignores_any_body(policy_path: Path, body: bytes) -> None:
    """The reload takes no body: whatever is sent (lone surrogates too) changes nothing."""
    with app_client(policy_path=policy_path, admin_keys=ADMIN_KEY) as client:
        headers = ADMIN | {"content-type": "application/json"}
        response = client.post("/admin/policy/reload", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == "one"


def test_reloading_without_a_policy_file_is_409() -> None:
    with app_client(admin_keys=ADMIN_KEY) as client:
        response = client.post("/admin/policy/reload", headers=ADMIN)
    assert response.status_code == 409
    assert "ALGOSPEAK_POLICY_PATH" in response.json()["error"]["message"]


def test_an_admin_reload_puts_a_changed_policy_in_force_at_once(policy_path: Path) -> None:
    with app_client(policy_path=policy_path, admin_keys=ADMIN_KEY) as client:
        sha = write(policy_path, POLICY_TWO)
        assert decoded(client) == DECODED["one"]  # nothing changes before the reload
        response = client.post("/admin/policy/reload", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert (response.json()["version"], response.json()["sha256"]) == ("two", sha)
        assert response.json()["disabled"] == 1
        assert decoded(client) == DECODED["two"]
        assert client.get("/info").json()["policy"]["sha256"] == sha


def test_a_bad_policy_file_is_refused_and_changes_nothing(policy_path: Path) -> None:
    with app_client(policy_path=policy_path, admin_keys=ADMIN_KEY) as client:
        before = client.get("/info").json()
        write(policy_path, BAD_POLICY)
        response = client.post("/admin/policy/reload", headers=ADMIN)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["type"] == "invalid_policy"
        assert "policy.yaml: thresholds.violense" in error["message"]
        after = client.get("/info").json()
        assert decoded(client) == DECODED["one"]
    assert after["policy"]["sha256"] == before["policy"]["sha256"]
    assert after["policy"]["loaded_at"] == before["policy"]["loaded_at"]
    assert after["lexicon"] == before["lexicon"]
    assert after["policy"]["error"] == error["message"]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_changed_policy_file_is_picked_up_by_the_file_check(policy_path: Path) -> None:
    with app_client(policy_path=policy_path, policy_check_s=0.1) as client:
        write(policy_path, BAD_POLICY)
        wait_for(lambda: client.get("/info").json()["policy"]["error"] is not None)
        assert decoded(client) == DECODED["one"]
        sha = write(policy_path, POLICY_TWO)
        wait_for(lambda: client.get("/info").json()["policy"]["sha256"] == sha)
        assert decoded(client) == DECODED["two"]
        assert client.get("/info").json()["policy"]["error"] is None


# --- the real model ---

ALL_UNMODERATED = f'version: "quiet"\nunmoderated: [{", ".join(HARM)}]\n'
BLOCK_EVERYTHING = 'version: "strict"\nreview: 0\nblock: 0\n'


def test_classify_and_the_openai_endpoint_honour_the_policy(
    model_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    write(path, ALL_UNMODERATED + POLICY_ONE.split("\n", 1)[1])
    settings = model_settings.model_copy(update={"policy_path": path, "admin_keys": (ADMIN_KEY,)})
    with TestClient(create_app(settings)) as client:
        body = client.post("/classify", json={"text": TEXT}).json()
        assert (body["action"], body["moderated"]) == ("allow", False)
        assert body["normalized"] == DECODED["one"]
        moderation = client.post("/v1/moderations", json={"input": TEXT}).json()["results"][0]
        assert moderation["flagged"] is False
        assert not any(moderation["categories"].values())
        assert sum(moderation["category_scores"].values()) > 0  # scores are still reported

        write(path, BLOCK_EVERYTHING)
        assert client.post("/admin/policy/reload", headers=ADMIN).status_code == 200
        body = client.post("/classify", json={"text": TEXT}).json()
        assert (body["action"], body["moderated"]) == ("block", True)
        moderation = client.post("/v1/moderations", json={"input": TEXT}).json()["results"][0]
        assert moderation["flagged"] is True
        assert sum(moderation["categories"].values()) == 1


@pytest.fixture(scope="module")
def policy_server(
    smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, Path]]:
    """The real service with the model and POLICY_ONE, reloaded only on request (no file
    check): its URL, process id and policy file."""
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    write(path, POLICY_ONE)
    env = {
        "ALGOSPEAK_MODEL_PATH": str(smollm2_gguf),
        "ALGOSPEAK_THREADS": "1",
        "ALGOSPEAK_POLICY_PATH": str(path),
        "ALGOSPEAK_POLICY_CHECK_S": "0",
        "ALGOSPEAK_ADMIN_KEYS": ADMIN_KEY,
        "ALGOSPEAK_RATE_LIMIT_PER_MINUTE": "0",
    }
    with running_server_process(env) as (base, process):
        yield base, process.pid, path


@pytest.mark.server
def test_sighup_reloads_the_policy_of_a_running_server(
    policy_server: tuple[str, int, Path],
) -> None:
    base, pid, path = policy_server
    with httpx.Client(base_url=base, timeout=30) as client:
        sha = write(path, POLICY_TWO + "# sent a SIGHUP\n")  # bytes no other test writes
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: client.get("/info").json()["policy"]["sha256"] == sha)
        assert decoded(client) == DECODED["two"]
        write(path, BAD_POLICY)
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "violense" in (client.get("/info").json()["policy"]["error"] or ""))
        assert client.get("/info").json()["policy"]["sha256"] == sha
        assert decoded(client) == DECODED["two"]
        assert client.get("/healthz").status_code == 200


@pytest.mark.server
def test_reloads_keep_serving_under_concurrent_requests(
    policy_server: tuple[str, int, Path],
) -> None:
    """Threads send /normalize and /classify without pause while the policy flips between two
    valid files: every answer is 200 and decodes TEXT under one policy or the other."""
    base, _, path = policy_server
    stop = threading.Event()
    seen: list[tuple[str, int, str]] = []  # (path, status, normalized)

    def send(route: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                response = client.post(route, json={"text": TEXT})
                normalized = response.json().get("normalized", "") if response.is_success else ""
                seen.append((route, response.status_code, normalized))

    def classified() -> int:
        return sum(route == "/classify" for route, _, _ in seen)

    threads = [threading.Thread(target=send, args=("/normalize",)) for _ in range(3)]
    threads.append(threading.Thread(target=send, args=("/classify",)))
    for thread in threads:
        thread.start()
    try:
        with httpx.Client(base_url=base, timeout=30, headers=ADMIN) as admin:
            # At least 8 flips, and on until a few model calls have overlapped them.
            flips = 0
            while flips < 8 or (classified() < 3 and flips < 60):
                write(path, POLICY_TWO if flips % 2 == 0 else POLICY_ONE)
                assert admin.post("/admin/policy/reload").status_code == 200
                flips += 1
                time.sleep(0.25)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert all(status == 200 for _, status, _ in seen), {s for _, s, _ in seen}
    assert {normalized for _, _, normalized in seen} == set(DECODED.values())
    assert classified() >= 3
    assert sum(route == "/normalize" for route, _, _ in seen) >= 50


@pytest.mark.server
def test_every_worker_picks_up_a_changed_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, POLICY_ONE)
    env = {
        "ALGOSPEAK_MODEL_PATH": str(NO_MODEL),
        "ALGOSPEAK_WORKERS": "2",
        "ALGOSPEAK_POLICY_PATH": str(path),
        "ALGOSPEAK_POLICY_CHECK_S": "0.2",
        "ALGOSPEAK_RATE_LIMIT_PER_MINUTE": "0",
    }
    log = tmp_path / "server.log"
    with (
        running_server(env, ready="/healthz", log_path=log) as base,
        httpx.Client(base_url=base) as client,
    ):
        assert decoded(client) == DECODED["one"]
        write(path, POLICY_TWO)
        time.sleep(1.5)
        answers = set()
        for _ in range(20):
            # A fresh connection each time, so both workers answer some of them.
            with httpx.Client(base_url=base) as fresh:
                answers.add(decoded(fresh))
    assert answers == {DECODED["two"]}
    # Each worker says so itself.
    assert log.read_text().count("policy two (") == 2, log.read_text()
