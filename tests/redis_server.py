"""A throwaway ``redis-server`` for the queue worker's tests: Debian's binary started on a free
loopback port, nothing saved to disk, stopped afterwards.

Where the binary (or the ``redis`` package) is missing the tests skip, except under CI (``CI``
set, or ``ALGOSPEAK_REQUIRE_REDIS=1`` as ``.ci/run`` sets it), where they fail.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port

REQUIRED = os.environ.get("ALGOSPEAK_REQUIRE_REDIS") == "1" or bool(os.environ.get("CI"))


def redis_server_or_skip(module_level: bool = False) -> str:
    """The redis-server binary; skips the test (the module, with ``module_level``) without it
    or without the ``redis`` package, fails instead under CI."""
    binary = shutil.which("redis-server")
    missing = None
    if binary is None:
        missing = "redis-server is missing (apt-get install redis-server)"
    elif importlib.util.find_spec("redis") is None:
        missing = "the redis package is missing (pip install -e '.[worker]')"
    if missing is None:
        return binary
    if REQUIRED:
        pytest.fail(f"{missing}, and CI requires the worker tests to run")
    pytest.skip(missing, allow_module_level=module_level)


@contextmanager
def running_redis(folder: Path, timeout: float = 20) -> Iterator[str]:
    """A redis-server working in ``folder``, answering PING; yields its URL."""
    binary = redis_server_or_skip()
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    log = folder / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _pongs(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pongs(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
