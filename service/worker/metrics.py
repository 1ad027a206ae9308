"""The worker's Prometheus metrics, served on ``ALGOSPEAK_WORKER_METRICS_PORT`` (0: not served).

They sit in the default registry beside the classifier's own (``algospeak_model_seconds``,
``algospeak_decisions_total``...), so one scrape of a worker shows both. The API never imports
this module, so its /metrics does not list them.
"""

import logging
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

PROCESSED = Counter(
    "algospeak_worker_processed",
    "Posts acknowledged: outcome result (classified), error (a bad record, answered with its "
    "error) or duplicate (its post id had a result already).",
    ("outcome",),
)
FAILURES = Counter(
    "algospeak_worker_failures",
    "Attempts at a post that failed unexpectedly (it stays pending and is tried again).",
)
DEAD_LETTERED = Counter("algospeak_worker_dead_lettered", "Posts moved to the dead-letter stream.")
CLAIMED = Counter(
    "algospeak_worker_claimed", "Posts taken over after another worker held them too long."
)
LAG = Gauge(
    "algospeak_worker_lag",
    "Posts in the stream not yet read by the group (XINFO GROUPS lag; NaN when Redis cannot "
    "tell). Every worker of a group reports the same figure.",
)
PENDING = Gauge(
    "algospeak_worker_pending", "Posts read by the group's workers and not yet acknowledged."
)
POST_SECONDS = Histogram(
    "algospeak_worker_post_seconds",
    "From reading a post to its result written and acknowledged.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

for outcome in ("result", "error", "duplicate"):
    PROCESSED.labels(outcome)  # listed at 0 from the start, so rates need no "absent" case


def serve(host: str, port: int) -> Callable[[], None]:
    """Serve the metrics on ``host``:``port`` (nothing when ``port`` is 0); the function that
    stops serving them. Raises OSError when the port cannot be bound."""
    if not port:
        return lambda: None
    server, thread = start_http_server(port, addr=host)
    logger.info("metrics on http://%s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
