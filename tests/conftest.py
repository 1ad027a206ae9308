"""Shared fixtures: apps with their lifespan run (with and without the real SmolLM2 model),
and real server processes."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from artifacts import shipped
from artifacts.bases import fetch
from service.app import create_app
from service.settings import Settings
from training.hf_base import resolve_base

# Property tests. "ci" (chosen when CI is set): the same examples on every run, stored nowhere
# and with no deadline, so a submission passes or fails on its own code. "explore" (otherwise):
# new random examples each run, with failures kept in .hypothesis/ and replayed. Choose either
# with `pytest --hypothesis-profile=NAME`; `--hypothesis-seed=N` replays one exploring run.
# Both derive from hypothesis' own defaults, whatever it loaded on seeing CI.
_DEFAULTS = hypothesis_settings.get_profile("default")
hypothesis_settings.register_profile(
    "ci", _DEFAULTS, derandomize=True, database=None, deadline=None, print_blob=True
)
hypothesis_settings.register_profile("explore", _DEFAULTS)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_profile", None) is None:  # the command line's choice wins
        hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "explore")


NO_MODEL = Path("/nonexistent/model.gguf")
# The serve command after the interpreter; the Dockerfile's CMD is the same.
SERVE_ARGS = ("-m", "service")


@pytest.fixture
def settings() -> Settings:
    return Settings(max_text_chars=2_000, model_path=NO_MODEL)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    env: dict[str, str],
    ready: str = "/readyz",
    timeout: float = 90.0,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Start the real service (`python -m service`, what `make serve` and the image run),
    wait until ``ready`` answers 200, and yield its base URL. Its output goes to
    ``log_path`` when given."""
    with running_server_process(env, ready, timeout, log_path) as (base, _):
        yield base


@contextmanager
def running_server_process(
    env: dict[str, str],
    ready: str = "/readyz",
    timeout: float = 90.0,
    log_path: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``running_server``, yielding the server's process too (to send it signals)."""
    port = free_port()
    # A file, not a pipe: an unread pipe fills up and blocks the server.
    log = log_path.open("w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, *SERVE_ARGS],
        env={**os.environ, "ALGOSPEAK_HOST": "127.0.0.1", "ALGOSPEAK_PORT": str(port), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"server exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{base}{ready}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout}s")
            time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The real service without a model."""
    with running_server({"ALGOSPEAK_MODEL_PATH": str(NO_MODEL)}, ready="/healthz") as base:
        yield base


@pytest.fixture(scope="session")
def model_server_url(smollm2_gguf: Path) -> Iterator[str]:
    """The real service serving the SmolLM2 GGUF."""
    env = {"ALGOSPEAK_MODEL_PATH": str(smollm2_gguf), "ALGOSPEAK_THREADS": "2"}
    with running_server(env) as base:
        yield base


@pytest.fixture(scope="session")
def model_settings(smollm2_gguf: Path) -> Settings:
    # No rate limit: the session's tests share this app and its one client address.
    return Settings(
        model_path=smollm2_gguf,
        threads=2,
        context_size=1024,
        max_text_chars=2_000,
        rate_limit_per_minute=0,
    )


@pytest.fixture(scope="session")
def model_client(model_settings: Settings) -> Iterator[TestClient]:
    """An app serving the real SmolLM2 GGUF (loaded once for the session)."""
    with TestClient(create_app(model_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF (sha256-checked), for tests that run a real model.

    Downloaded once per machine into the default cache ($ALGOSPEAK_CACHE or ~/.cache/algospeak)
    and linked into $ALGOSPEAK_HOME/models/bases/smollm2-135m-instruct/ (git-ignored).
    """
    return fetch("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def shipped_gguf(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    """The shipped default model as serving prepares it (the base with the adapter in
    models/default merged, quantized as its manifest says), in a home of the session's own."""
    return shipped.prepare(target=tmp_path_factory.mktemp("home") / "algospeak.gguf", threads=2)


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_gguf: Path) -> Path:
    """The SmolLM2 base as a Hugging Face folder (made from the GGUF once, then cached)."""
    return Path(resolve_base("smollm2-135m-instruct"))
