"""Backfill throughput: the batch CLI against the Ray backfill with 1 and 2 actors, in one run.

All three classify the same JSONL of varied short posts (seeded), with the same model and the
same llama.cpp threads per process (``--threads``, 1 by default: on 2 cores, 2 actors of 1
thread each use the machine as the CLI with 2 threads would). Each is timed end to end as a user
runs it, a fresh process per run: the model's load, and for Ray its start (or connection,
with ``--address``), included. For the Ray runs the pipeline's own time (Ray's start excluded,
the actors' model loads included) is reported too. Reported: seconds, texts/s and texts/s
against the CLI's. No goal: it exits 1 only when a run fails.

    python bench/backfill.py [--model PATH] [--texts 200] [--threads 1] [--address ADDR]
                             [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from load import texts_for

from artifacts.bases import fetch
from artifacts.locations import default_model

ROOT = Path(__file__).resolve().parent.parent


def write_input(path: Path, count: int, seed: int) -> Path:
    """``count`` varied posts with ids, one JSON object a line."""
    texts = texts_for(random.Random(seed))
    with path.open("w", encoding="utf-8") as file:
        for number in range(count):
            text = next(texts)
            file.write(json.dumps({"id": f"post-{number}", "text": text}) + "\n")
    return path


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``command`` to its end: its wall time and its stdout. Exits 1 if it fails."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        sys.exit(1)
    return seconds, result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="GGUF (default: the default model)")
    parser.add_argument("--texts", type=int, default=200, help="posts to classify (200)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per process")
    parser.add_argument("--address", help="a Ray cluster to run on (default: a new local Ray)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    model = args.model or (default_model() if default_model().is_file() else None)
    model = model or fetch("smollm2-135m-instruct")
    env = {**os.environ, "ALGOSPEAK_THREADS": str(args.threads)}
    env.pop("RAY_ADDRESS", None)  # the Ray runs go where --address says
    runs = []
    with tempfile.TemporaryDirectory(prefix="algospeak-bench-backfill-") as work:
        source = write_input(Path(work) / "posts.jsonl", args.texts, args.seed)
        cli = [sys.executable, "-m", "service.cli", "classify", str(source)]
        cli += [str(Path(work) / "cli.jsonl"), "--model", str(model), "--quiet"]
        seconds, _ = timed(cli, env)
        runs.append({"name": "cli", "seconds": seconds, "pipeline_seconds": None})
        for actors in (1, 2):
            out = Path(work) / f"ray-{actors}"
            command = [sys.executable, "-m", "service.backfill", str(source), str(out)]
            command += ["--model", str(model), "--actors", str(actors), "--quiet"]
            command += ["--threads-per-actor", str(args.threads)]
            if args.address:
                command += ["--address", args.address]
            seconds, stdout = timed(command, env)
            summary = json.loads(stdout.strip().splitlines()[-1])
            if summary["rows"] != args.texts:
                print(f"{actors} actor(s) wrote {summary['rows']} rows for {args.texts} texts")
                return 1
            name = f"{actors} actor" + ("s" if actors > 1 else "")
            runs.append({"name": name, "seconds": seconds, "pipeline_seconds": summary["seconds"]})
    baseline = args.texts / runs[0]["seconds"]
    print(f"backfill of {args.texts} texts, {args.threads} thread(s) per process, model {model}")
    for run in runs:
        run["texts"] = args.texts
        run["texts_per_s"] = round(args.texts / run["seconds"], 3)
        run["vs_cli"] = round(run["texts_per_s"] / baseline, 3)
        line = (
            f"  {run['name']:9}: {run['seconds']:7.1f} s  {run['texts_per_s']:7.2f} texts/s  "
            f"{run['vs_cli']:.2f}x the CLI"
        )
        if run["pipeline_seconds"]:
            line += (
                f"  (pipeline {run['pipeline_seconds']:.1f} s, "
                f"{args.texts / run['pipeline_seconds']:.2f} texts/s)"
            )
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"texts": args.texts, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
