"""Command-line tools of the service: ``python -m service.cli classify IN.jsonl OUT.jsonl``.

``classify`` is for moderation backfills. It reads IN one line at a time and writes exactly one
line to OUT for each input line, in input order:

- ``{"line": n, "id": ..., "result": {...}}``, where ``result`` is what POST /classify returns;
- ``{"line": n, "id": ..., "error": {"type": ..., "message": ...}}`` for a line it cannot
  classify (blank, not JSON, no string ``text``, a text the API would refuse), in the API's
  error terms.

An input line is a JSON object with ``text`` (``id``, any JSON value, is copied to the output;
other keys are ignored) or a bare JSON string. ``n`` counts input lines from 1. These rules, the
checks and the error terms are service/records.py, which the Ray backfill
(``python -m service.backfill``) and the queue worker (``python -m service.worker``) share.

An interrupted run resumes: when OUT exists, its complete lines are kept (a torn last line is
cut), checked against IN and not redone. The model and thresholds come from the service's
``ALGOSPEAK_*`` settings. Exit status: 0 when every line has its output line (per-line errors
included), 2 when it cannot start (no model, unreadable IN, OUT from another input), 130 when
interrupted.
"""

import argparse
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from algospeak import PolicyError
from service.classifier import Classifier, build_classifier
from service.engine import ModelError
from service.records import outcome, read_line
from service.schemas import Explain
from service.settings import Settings

# Not __name__: under `python -m service.cli` that is "__main__".
logger = logging.getLogger("service.cli")

EXIT_OK = 0
EXIT_CANNOT_START = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A reason not to start; the message says what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class Resume:
    """How much of an existing OUT is kept: ``lines`` complete lines, ending at byte ``end``."""

    lines: int = 0
    end: int = 0


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names; the exit status."""
    args = parser().parse_args(argv)
    log_to_stderr(quiet=args.quiet)
    # The service logs every classification for its request log; a backfill's record is OUT,
    # and a line per text would bury the progress bar and the summary.
    logging.getLogger("service.classifier").setLevel(logging.WARNING)
    try:
        return args.command(args)
    except CliError as exc:
        logger.error("%s", exc)
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        logger.warning("interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per tool."""
    top = argparse.ArgumentParser(prog="python -m service.cli", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(required=True, metavar="COMMAND")
    classify = commands.add_parser(
        "classify",
        help="classify a JSONL file, one output line per input line (resumable)",
        description="Classify every line of IN into OUT, in order; rerun to resume.",
    )
    classify.add_argument(
        "input", type=Path, metavar="IN", help="JSONL: {'text', 'id'?} or a string"
    )
    classify.add_argument("output", type=Path, metavar="OUT", help="JSONL results, one per IN line")
    classify.add_argument(
        "--model",
        type=Path,
        help="GGUF file (default: ALGOSPEAK_MODEL_PATH, else the default model)",
    )
    classify.add_argument(
        "--threads", type=positive, help="CPU threads (default: ALGOSPEAK_THREADS, else all cores)"
    )
    classify.add_argument(
        "--explain",
        choices=("true", "reason"),
        help="add each result's explanation, as /classify's explain does (reason: also the "
        "model's own reason, about twice the time)",
    )
    classify.add_argument("--restart", action="store_true", help="overwrite OUT, do not resume")
    classify.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    classify.set_defaults(command=classify_command)
    return top


def classify_command(args: argparse.Namespace) -> int:
    """Classify IN into OUT, resuming after OUT's complete lines unless ``--restart``."""
    settings = settings_from(model_path=args.model, threads=args.threads)
    source, target = args.input, args.output
    if not source.is_file():
        raise CliError(f"input file {source} not found")
    if target.exists() and target.resolve() == source.resolve():
        raise CliError("IN and OUT are the same file")
    if not target.parent.is_dir():
        raise CliError(f"output folder {target.parent} not found")
    fresh = args.restart or not target.exists()
    resume = Resume() if fresh else resume_point(source, target, settings.max_text_chars)
    total = count_lines(source)
    try:
        classifier = build_classifier(settings)
    except (ModelError, PolicyError) as exc:  # a bad ALGOSPEAK_POLICY_PATH is named too
        raise CliError(str(exc)) from exc
    explain: Explain = {None: False, "true": True, "reason": "reason"}[args.explain]
    classify = partial(
        classify_line, classifier, max_chars=settings.max_text_chars, explain=explain
    )
    try:
        with open_output(target, resume, fresh) as sink:
            written, errors = _classify_lines(
                classify, source, sink, resume.lines, total, args.quiet
            )
    finally:
        classifier.engine.close()
    logger.info(
        "done: %d lines written (%d classified, %d errors), %d skipped (already in %s)",
        written,
        written - errors,
        errors,
        resume.lines,
        target,
    )
    return EXIT_OK


def _classify_lines(
    classify: Callable[[bytes, int], dict],
    source: Path,
    sink: BinaryIO,
    skip: int,
    total: int,
    quiet: bool,
) -> tuple[int, int]:
    """Write ``classify(line, number)`` for each line of ``source`` after the first ``skip``,
    flushed one by one; (lines written, of which errors)."""
    written = errors = 0
    with source.open("rb") as lines, logging_redirect_tqdm(loggers=[logging.getLogger()]):
        numbered = itertools.islice(enumerate(lines, start=1), skip, None)
        bar = tqdm(numbered, total=total, initial=skip, unit="line", disable=quiet, file=sys.stderr)
        for number, raw in bar:
            record = classify(raw, number)
            sink.write(json.dumps(record).encode("ascii") + b"\n")
            sink.flush()  # what is flushed survives a kill and is not redone on resume
            written += 1
            errors += "error" in record
    return written, errors


def classify_line(
    classifier: Classifier, raw: bytes, number: int, *, max_chars: int, explain: Explain = False
) -> dict:
    """The output record for input line ``number`` (``raw``, as read): its result (with its
    explanation when ``explain`` asks, as /classify gives it), or the error that kept it from
    being classified."""
    item_id, text = read_line(raw, max_chars)
    return {"line": number, "id": item_id, **outcome(classifier, text, explain=explain)}


def resume_point(source: Path, target: Path, max_chars: int) -> Resume:
    """What of ``target`` a rerun keeps: its complete lines, each checked to be the output for
    the same line of ``source`` (its line number, and its id). CliError if ``target`` holds
    more lines than ``source`` or lines that are not ``source``'s."""
    kept = Resume()
    with target.open("rb") as outputs, source.open("rb") as inputs:
        for raw in outputs:
            if not raw.endswith(b"\n"):
                break  # a torn write from a crash: cut, and that line is done again
            number = kept.lines + 1
            raw_input = inputs.readline()
            if not raw_input:
                raise CliError(
                    f"{target} has more lines than {source}: it is not this input's output; "
                    "pass --restart to overwrite it"
                )
            _check_belongs(raw, number, read_line(raw_input, max_chars)[0], source, target)
            kept = Resume(lines=number, end=kept.end + len(raw))
    return kept


def _check_belongs(raw: bytes, number: int, item_id: Any, source: Path, target: Path) -> None:
    """CliError unless ``raw`` is this tool's output for line ``number`` of ``source``."""
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "line" not in record:
        found = "not an output line of this tool"
    elif record["line"] != number or record.get("id") != item_id:
        found = f"for line {record['line']} with id {record.get('id')!r}"
    else:
        return
    raise CliError(
        f"{target} does not belong to {source}: its line {number} is {found}, but line {number} "
        f"of {source} has id {item_id!r}; pass --restart to overwrite it, or choose another OUT"
    )


def count_lines(path: Path) -> int:
    """Lines in ``path`` as the classify loop reads them (a last line without a newline counts)."""
    count = 0
    last = b"\n"
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


@contextmanager
def open_output(path: Path, resume: Resume, fresh: bool) -> Iterator[BinaryIO]:
    """OUT, afresh or positioned after its ``resume.end`` kept bytes (a torn tail is cut)."""
    if fresh:
        with path.open("wb") as file:
            yield file
        return
    with path.open("r+b") as file:
        cut = file.seek(0, os.SEEK_END) - resume.end
        if cut:
            logger.warning("cut a partial last line (%d bytes) from %s", cut, path)
        file.seek(resume.end)
        file.truncate()
        logger.info("resuming after %d lines", resume.lines)
        yield file


def log_to_stderr(*, quiet: bool) -> None:
    """Log lines with time, level and logger to stderr: warnings only when ``quiet``."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def settings_from(**overrides: Any) -> Settings:
    """The service's settings (``ALGOSPEAK_*``), with the options given on the command line."""
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as exc:
        raise CliError(f"invalid settings: {exc}") from exc


def positive(value: str) -> int:
    """``value`` as an int above 0, for argparse's ``type``."""
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


if __name__ == "__main__":
    sys.exit(main())
