"""``python -m service.backfill IN OUT``: classify JSONL or Parquet on Ray, resumably.

IN is a JSONL or Parquet file, or a folder of them, local or anything ``pyarrow.fs`` opens
(``s3://``, ``gs://``, ``hdfs://``). OUT is a folder that gets part files, Parquet or JSONL
(by default IN's format), with one row per input record: ``{"id", "result"}`` with what
POST /classify/batch answers for its text, or ``{"id", "error"}`` with the API's error for a
record that cannot be classified. Rerunning after a crash skips the ids OUT already holds.

It runs on a new local Ray by default, or on the cluster at ``--address`` (or ``RAY_ADDRESS``).
The model and thresholds come from the service's ``ALGOSPEAK_*`` settings, read here and
handed to every actor, so every path in them (``--model``, the policy) must exist on every
node. The summary is printed to stdout as JSON; progress and logs go to stderr. Exit status:
0 when every record has its row, 1 when the pipeline failed (rerun to resume), 2 when it cannot
start (no Ray, no model, unusable IN or OUT), 130 when interrupted.
"""

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from algospeak import PolicyError
from service.classifier import model_file
from service.cli import CliError, log_to_stderr, positive, settings_from
from service.engine import ModelError
from service.policy import PolicyHolder

# Not __name__: under `python -m service.backfill` the entry module is "__main__".
logger = logging.getLogger("service.backfill")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_START = 2
EXIT_INTERRUPTED = 130
FORMATS = ("jsonl", "parquet")
RAY_MISSING = (
    "Ray is not installed: install the ray extra (pip install -e '.[ray]', or `make test`, "
    "which installs every extra)"
)


def main(argv: list[str] | None = None) -> int:
    """Run the backfill ``argv`` describes; the exit status."""
    args = parser().parse_args(argv)
    log_to_stderr(quiet=args.quiet)
    if args.quiet:
        logging.getLogger("ray").setLevel(logging.WARNING)  # Ray Data's progress lines too
    try:
        import ray  # noqa: F401 (only whether it is there)
    except ImportError:
        logger.error("%s", RAY_MISSING)
        return EXIT_CANNOT_START
    from service.backfill import pipeline
    from service.backfill.inputs import InputError
    from service.backfill.outputs import OutputError

    try:
        job = _job(args)
        summary = pipeline.run(job)
    except (CliError, InputError, OutputError) as exc:
        logger.error("%s", exc)
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        logger.warning("interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED
    except Exception:
        logger.exception("the backfill failed; what was written stays, rerun to resume")
        return EXIT_FAILED
    nodes = len(summary.rows_per_node)
    logger.info(
        "done: %d rows written (%d classified, %d errors) in %d parts by %d actors on %d "
        "node(s) in %.1f s; %d skipped (already in %s); %s holds %d rows",
        summary.written,
        summary.written - summary.errors,
        summary.errors,
        summary.parts,
        summary.actors,
        nodes,
        summary.seconds,
        summary.skipped,
        job.target,
        job.target,
        summary.rows,
    )
    print(json.dumps(summary.as_dict()))  # noqa: T201 (the command's answer)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    """The command line."""
    command = argparse.ArgumentParser(
        prog="python -m service.backfill",
        description="Classify JSONL or Parquet records on Ray into OUT; rerun to resume.",
    )
    command.add_argument("input", metavar="IN", help="JSONL or Parquet file, or a folder of them")
    command.add_argument("output", metavar="OUT", help="folder for the part files")
    command.add_argument("--input-format", choices=FORMATS, help="default: from IN's name")
    command.add_argument("--output-format", choices=FORMATS, help="default: IN's format")
    command.add_argument(
        "--address",
        help="the Ray cluster to run on (default: RAY_ADDRESS, else a new local Ray)",
    )
    command.add_argument(
        "--actors",
        type=positive,
        help="classifying actors, each with its own model (default: as many as the cluster's "
        "CPUs hold)",
    )
    command.add_argument(
        "--threads-per-actor", type=positive, default=1, help="llama.cpp threads per actor (1)"
    )
    command.add_argument(
        "--cpus-per-actor",
        type=float,
        help="CPUs each actor reserves (default: its threads)",
    )
    command.add_argument(
        "--batch-size", type=positive, default=16, help="records per actor call (16)"
    )
    command.add_argument(
        "--rows-per-file",
        type=positive,
        default=256,
        help="rows per part file (256): what a crash can cost, at most, per writer",
    )
    command.add_argument(
        "--model",
        type=Path,
        help="GGUF file, on every node (default: ALGOSPEAK_MODEL_PATH, else the default model)",
    )
    command.add_argument(
        "--explain",
        choices=("true", "reason"),
        help="add each result's explanation, as /classify's explain does",
    )
    command.add_argument("--restart", action="store_true", help="delete OUT's parts, start over")
    command.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    return command


def _job(args: argparse.Namespace) -> Any:
    """The pipeline's job for ``args``, with the model resolved and the policy checked here,
    before any Ray starts."""
    from service.backfill import inputs, pipeline

    settings = settings_from(model_path=args.model, threads=args.threads_per_actor)
    try:
        settings = settings.model_copy(update={"model_path": model_file(settings)})
        PolicyHolder(settings)  # a bad policy file stops the run here, not in every actor
    except (ModelError, PolicyError) as exc:
        raise CliError(str(exc)) from exc
    input_format = args.input_format or inputs.input_format_of(args.input)
    return pipeline.Job(
        source=args.input,
        target=args.output,
        input_format=input_format,
        output_format=args.output_format or input_format,
        settings=settings,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor or float(args.threads_per_actor),
        batch_size=args.batch_size,
        rows_per_file=args.rows_per_file,
        explain={None: False, "true": True, "reason": "reason"}[args.explain],
        restart=args.restart,
        address=args.address or os.environ.get("RAY_ADDRESS") or "local",
        progress=not args.quiet,
    )
