"""Run the service: ``python -m service`` (what `make serve`, the image and the tests run).

Listens on ``ALGOSPEAK_HOST``:``ALGOSPEAK_PORT`` with ``ALGOSPEAK_WORKERS`` processes, each
loading its own copy of the model; everything else is read by ``create_app`` from the same
``ALGOSPEAK_*`` settings.
"""

import os
import tempfile

import uvicorn

from service.settings import Settings


def main() -> None:
    settings = Settings()
    if settings.workers > 1:
        _share_between_workers(settings)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,  # create_app configures logging (JSON lines by default)
        access_log=False,  # the app logs each request itself, with its request id
        timeout_graceful_shutdown=10,
    )


def _share_between_workers(settings: Settings) -> None:
    """What worker processes inherit: their share of the CPU threads (unless the threads were
    set explicitly) and one folder for Prometheus metrics, so /metrics adds up all workers."""
    if "threads" not in settings.model_fields_set:
        os.environ["ALGOSPEAK_THREADS"] = str(max(1, settings.threads // settings.workers))
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="algospeak-metrics-")


if __name__ == "__main__":
    main()
