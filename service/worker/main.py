"""``python -m service.worker``: classify posts from a Redis stream until SIGTERM or SIGINT.

Joins the consumer group ``ALGOSPEAK_WORKER_GROUP`` on ``ALGOSPEAK_WORKER_STREAM`` (creating
both if missing) with the configured model, thresholds and policy, writes one result per post
to ``ALGOSPEAK_WORKER_RESULTS_STREAM`` and serves its metrics on
``ALGOSPEAK_WORKER_METRICS_PORT``. Start as many as the machines allow: the workers of a group
share its posts. The first SIGTERM or SIGINT lets the posts in hand finish and then stops; a
second stops at once (the post in hand stays pending and another worker claims it). SIGHUP
reloads the policy file.

Exit status: 0 after a graceful stop, 2 when it cannot start (bad settings, no model, a bad
policy file, no ``redis`` package), 130 when a second signal cut a post short.
"""

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from algospeak import PolicyError
from service.classifier import Classifier, build_classifier
from service.cli import CliError, settings_from
from service.engine import ModelError
from service.observability import configure_logging
from service.settings import Settings

if TYPE_CHECKING:
    from service.worker.consumer import Worker

# Not __name__: under `python -m service.worker` the entry module is "__main__".
logger = logging.getLogger("service.worker")

EXIT_OK = 0
EXIT_CANNOT_START = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run a worker until it is stopped; the exit status."""
    args = parser().parse_args(argv)
    overrides = {
        "redis_url": args.redis_url,
        "worker_stream": args.stream,
        "worker_group": args.group,
        "worker_consumer": args.consumer,
        "model_path": args.model,
        "threads": args.threads,
        "worker_metrics_port": args.metrics_port,
    }
    try:
        settings = settings_from(**overrides)
    except CliError as exc:
        logging.basicConfig(stream=sys.stderr)
        logger.error("%s", exc)
        return EXIT_CANNOT_START
    configure_logging(settings.log_level, settings.log_format)
    try:
        import redis  # noqa: F401 (the worker extra; the API does not need it)
    except ImportError:
        logger.error("the worker needs the redis package: pip install -e '.[worker]'")
        return EXIT_CANNOT_START
    try:
        classifier = build_classifier(settings)
    except (ModelError, PolicyError) as exc:
        logger.error("%s", exc)
        return EXIT_CANNOT_START
    try:
        return work(settings, classifier)
    finally:
        classifier.engine.close()


def work(settings: Settings, classifier: Classifier) -> int:
    """Connect, then run the worker with signal handlers and metrics until it stops."""
    import redis

    from service.worker import metrics
    from service.worker.consumer import Limits, Worker
    from service.worker.stream import Names, Queue

    consumer = settings.worker_consumer or f"{socket.gethostname()}-{os.getpid()}"
    try:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=5,
            # A blocked read answers within poll_s; anything much longer is a dead connection.
            socket_timeout=settings.worker_poll_s + 10,
            health_check_interval=30,
            # CLIENT SETNAME takes printable ASCII without spaces only.
            client_name="".join(c if "!" <= c <= "~" else "_" for c in consumer),
        )
    except ValueError as exc:
        logger.error("ALGOSPEAK_REDIS_URL: %s", exc)
        return EXIT_CANNOT_START
    routes = {"review": settings.worker_review_stream, "block": settings.worker_block_stream}
    names = Names(
        stream=settings.worker_stream,
        group=settings.worker_group,
        consumer=consumer,
        results=settings.worker_results_stream,
        dead_letter=settings.worker_dead_letter_stream,
        routes={action: stream for action, stream in routes.items() if stream},
    )
    limits = Limits(
        prefetch=settings.worker_prefetch,
        poll_s=settings.worker_poll_s,
        claim_idle_s=settings.worker_claim_idle_s,
        max_attempts=settings.worker_max_attempts,
        max_text_chars=settings.max_text_chars,
        explain=settings.worker_explain,
        policy_check_s=settings.policy_check_s,
    )
    queue = Queue(client, names, result_ttl_s=settings.worker_result_ttl_s)
    worker = Worker(classifier, queue, limits)
    try:
        stop_metrics = metrics.serve(settings.host, settings.worker_metrics_port)
    except OSError as exc:
        logger.error("metrics port %d: %s", settings.worker_metrics_port, exc)
        client.close()
        return EXIT_CANNOT_START
    _install_signal_handlers(worker)
    logger.info(
        "worker %s: %s -> %s on %s",
        consumer,
        names.stream,
        names.results,
        _redacted(settings.redis_url),
    )
    try:
        worker.run()
    except KeyboardInterrupt:
        logger.warning("stopped at once; what this worker held stays pending for another")
        return EXIT_INTERRUPTED
    finally:
        stop_metrics()
        client.close()
    logger.info("stopped")
    return EXIT_OK


def _install_signal_handlers(worker: "Worker") -> None:
    """SIGTERM/SIGINT: finish the posts in hand, then stop; a second one: stop now.
    SIGHUP: reload the policy file."""

    def stop(signum: int, _frame: object) -> None:
        if worker.stopping:
            raise KeyboardInterrupt
        logger.info("%s: finishing the posts in hand, then stopping", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: worker.reload_policy())


def _redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if user else f"{scheme}{sep}***@{host}"


def parser() -> argparse.ArgumentParser:
    """The command line; every option overrides its ``ALGOSPEAK_*`` setting."""
    command = argparse.ArgumentParser(
        prog="python -m service.worker", description=__doc__.split("\n")[0]
    )
    command.add_argument("--redis-url", help="default: ALGOSPEAK_REDIS_URL")
    command.add_argument("--stream", help="input stream (default: ALGOSPEAK_WORKER_STREAM)")
    command.add_argument("--group", help="consumer group (default: ALGOSPEAK_WORKER_GROUP)")
    command.add_argument(
        "--consumer", help="this worker's name in the group (default: host name and pid)"
    )
    command.add_argument(
        "--model", type=Path, help="GGUF file (default: ALGOSPEAK_MODEL_PATH, else the default)"
    )
    command.add_argument("--threads", type=int, help="CPU threads (default: ALGOSPEAK_THREADS)")
    command.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus metrics port, 0 = off (default: ALGOSPEAK_WORKER_METRICS_PORT)",
    )
    return command
