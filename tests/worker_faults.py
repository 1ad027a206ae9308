"""``python -m tests.worker_faults [worker options]``: the real worker (``service.worker``) with
faults injected into its real model path, for the tests that need a worker caught mid-post.

Chosen by environment variables (unset: no fault):

- ``ALGOSPEAK_TEST_HOLD_TEXT``: classifying this text first creates the file
  ``ALGOSPEAK_TEST_HOLD_MARKER`` (the worker now holds the post), then waits until the file
  ``ALGOSPEAK_TEST_RELEASE`` exists (at most 120 s) before classifying it;
- ``ALGOSPEAK_TEST_DIE_TEXT``: classifying this text kills the process with SIGKILL, as a crash
  inside the model would.
"""

import os
import signal
import sys
import time
from pathlib import Path

from service.classifier import Classifier
from service.worker.main import main

_classify = Classifier.classify


def _faulty_classify(self: Classifier, text: str, **kwargs: object):
    if text == os.environ.get("ALGOSPEAK_TEST_DIE_TEXT"):
        os.kill(os.getpid(), signal.SIGKILL)
    if text == os.environ.get("ALGOSPEAK_TEST_HOLD_TEXT"):
        Path(os.environ["ALGOSPEAK_TEST_HOLD_MARKER"]).touch()
        release = Path(os.environ.get("ALGOSPEAK_TEST_RELEASE", "/nonexistent/release"))
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return _classify(self, text, **kwargs)


if __name__ == "__main__":
    Classifier.classify = _faulty_classify
    sys.exit(main())
