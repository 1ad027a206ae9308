"""Queue-worker throughput: posts per second through ``python -m service.worker``, per worker count.

Starts its own ``redis-server`` (loopback, a free port, nothing saved). For each worker count K:
an empty database, K worker processes in one consumer group (``ALGOSPEAK_THREADS`` = CPUs / K
each unless ``--threads``), a wait until all K have joined the group (their models are loaded),
then N varied short posts added at once, timed from the first post added to the last result
written; the workers are then stopped with SIGTERM. Reported per worker count: posts, seconds,
posts per second; then each count's rate against the smallest count's, measured in the same
run. There is no goal: it exits 0 unless a run fails (a worker exits, or the posts are not all
done within ``--timeout``), 2 when it cannot start (no redis-server).

    python bench/worker.py [--model PATH] [--posts 200] [--workers 1 2] [--threads N]
                           [--timeout 600] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis
from load import free_port, texts_for

from artifacts.bases import fetch
from artifacts.locations import default_model

ROOT = Path(__file__).resolve().parent.parent
STREAM, GROUP, RESULTS = "bench:posts", "bench", "bench:results"


class BenchError(Exception):
    """A run that could not be measured; the message says why."""


@contextmanager
def redis_server(folder: Path) -> Iterator[redis.Redis]:
    """A throwaway redis-server on a free loopback port; a client on it."""
    binary = shutil.which("redis-server")
    assert binary is not None, "checked by main"
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    with (folder / "redis.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            with suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise BenchError("redis-server did not start")
            time.sleep(0.05)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def workers(
    count: int, model: Path, threads: int, port: int, folder: Path
) -> Iterator[list[subprocess.Popen]]:
    """``count`` worker processes on the bench stream, stopped with SIGTERM afterwards."""
    env = {
        **os.environ,
        "ALGOSPEAK_MODEL_PATH": str(model),
        "ALGOSPEAK_THREADS": str(threads),
        "ALGOSPEAK_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "ALGOSPEAK_WORKER_STREAM": STREAM,
        "ALGOSPEAK_WORKER_GROUP": GROUP,
        "ALGOSPEAK_WORKER_RESULTS_STREAM": RESULTS,
        "ALGOSPEAK_WORKER_POLL_S": "0.2",
        "ALGOSPEAK_LOG_LEVEL": "warning",  # not a line per post
    }
    processes = []
    try:
        for n in range(count):
            with (folder / f"worker-{count}-{n}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "service.worker"],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_joined(client: redis.Redis, processes: list[subprocess.Popen], timeout: float) -> None:
    """Until every worker has joined the group (it joins once its model is loaded)."""
    deadline = time.monotonic() + timeout
    while True:
        check_alive(processes)
        with suppress(redis.ResponseError):  # no stream or group yet
            if len(client.xinfo_consumers(STREAM, GROUP)) >= len(processes):
                return
        if time.monotonic() > deadline:
            raise BenchError(f"the workers did not all join the group within {timeout:g}s")
        time.sleep(0.05)


def check_alive(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is not None:
            raise BenchError(f"a worker exited with {process.returncode}")


def run(client: redis.Redis, port: int, count: int, args: argparse.Namespace, folder: Path) -> dict:
    """One worker count: its posts, seconds and posts per second."""
    client.flushall()
    threads = args.threads or max(1, (os.cpu_count() or 1) // count)
    texts = texts_for(random.Random(args.seed))
    posts = [{"id": f"post-{n}", "text": next(texts)} for n in range(args.posts)]
    with workers(count, args.model, threads, port, folder) as processes:
        wait_joined(client, processes, args.timeout)
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for post in posts:
            pipe.xadd(STREAM, post)
        pipe.execute()
        deadline = time.monotonic() + args.timeout
        while client.xlen(RESULTS) < len(posts):
            check_alive(processes)
            if time.monotonic() > deadline:
                done = client.xlen(RESULTS)
                raise BenchError(f"{done} of {len(posts)} posts done after {args.timeout:g}s")
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    return {
        "workers": count,
        "threads_per_worker": threads,
        "posts": len(posts),
        "seconds": round(seconds, 2),
        "posts_per_s": round(len(posts) / seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help=f"GGUF (default: {default_model()}, else the SmolLM2 base)"
    )
    parser.add_argument("--posts", type=int, default=200, help="posts per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--threads", type=int, help="threads per worker (default: CPUs / K)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per wait")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.posts < 1 or min(args.workers) < 1:
        parser.error("--posts and --workers must be positive")
    if args.model is None:
        args.model = default_model()
        if not args.model.is_file():
            args.model = fetch("smollm2-135m-instruct")
    if shutil.which("redis-server") is None:
        print("cannot start: redis-server is missing (apt-get install redis-server)")
        return 2
    print(f"model {args.model}, {args.posts} posts per run, redis-server on loopback")
    runs = []
    with tempfile.TemporaryDirectory(prefix="algospeak-worker-bench-") as tmp:
        folder = Path(tmp)
        try:
            with redis_server(folder) as client:
                port = client.connection_pool.connection_kwargs["port"]
                for count in args.workers:
                    result = run(client, port, count, args, folder)
                    runs.append(result)
                    print(
                        f"{count} worker(s), {result['threads_per_worker']} thread(s) each: "
                        f"{result['posts']} posts in {result['seconds']:g}s, "
                        f"{result['posts_per_s']:.2f} posts/s"
                    )
        except BenchError as exc:
            print(f"FAILED: {exc}")
            for log in sorted(folder.glob("*.log")):
                tail = log.read_text(errors="replace")[-2000:]
                if tail.strip():
                    print(f"--- {log.name}\n{tail}")
            return 1
    baseline = min(runs, key=lambda r: r["workers"])
    ratios = {str(r["workers"]): round(r["posts_per_s"] / baseline["posts_per_s"], 3) for r in runs}
    for result in runs:
        if result is not baseline:
            print(
                f"posts/s {result['workers']} vs {baseline['workers']} worker(s): "
                f"{ratios[str(result['workers'])]:.2f}x (measured in this run)"
            )
    if args.json:
        report = {
            "model": str(args.model),
            "cpus": os.cpu_count(),
            "runs": runs,
            "baseline_workers": baseline["workers"],
            "rate_vs_baseline": ratios,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
