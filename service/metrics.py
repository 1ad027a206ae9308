"""Prometheus metrics: what the service counts and the text /metrics answers with.

Each worker process counts in its own memory; with several workers (``python -m service``
sets ``PROMETHEUS_MULTIPROC_DIR`` for them) the counts go through files in that folder and
every worker's /metrics reports the sum over all of them.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Model work here takes tens of milliseconds to tens of seconds (batches, queueing).
_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("algospeak_requests", "HTTP requests answered.", ("route", "method", "status"))
REQUEST_SECONDS = Histogram(
    "algospeak_request_duration_seconds", "Time to answer a request.", ("route",),
    buckets=_SECONDS,
)  # fmt: skip
QUEUE_DEPTH = Gauge(
    "algospeak_queue_depth", "Requests using or waiting for the model.", multiprocess_mode="livesum"
)
MODEL_SECONDS = Histogram(
    "algospeak_model_seconds", "Model evaluation time per text.", buckets=_SECONDS
)
BATCH_TEXTS = Histogram(
    "algospeak_model_batch_texts",
    "Texts the model evaluated together, per evaluation (waiting requests are batched).",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
TOKENS = Counter("algospeak_tokens_evaluated", "Tokens the model evaluated.")
DECISIONS = Counter("algospeak_decisions", "Classifications made.", ("label", "category", "action"))

CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition() -> bytes:
    """The current metrics in Prometheus' text format, summed over workers when there are
    several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
