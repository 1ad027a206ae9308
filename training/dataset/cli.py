"""``python -m training.dataset build``: build the splits and write them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from training.dataset.build import DEFAULT_SEED, DEFAULT_SIZE, build
from training.dataset.examples import DatasetError
from training.dataset.writing import write


def main(argv: Sequence[str] | None = None) -> int:
    """``build`` subcommand; returns the exit status (2 for bad input)."""
    parser = argparse.ArgumentParser(prog="python -m training.dataset", description=_description())
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build train/dev/test JSONL and card.md")
    build_cmd.add_argument("--out", type=Path, required=True, help="output directory")
    build_cmd.add_argument("--seed", type=int, default=DEFAULT_SEED)
    build_cmd.add_argument("--size", type=int, default=DEFAULT_SIZE)
    build_cmd.add_argument(
        "--extra", type=Path, nargs="+", action="extend", default=[], help=".csv or .jsonl"
    )
    build_cmd.add_argument(
        "--reasons",
        action="store_true",
        help="end each assistant message with its reason line (to train a model to write it)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        splits = build(args.seed, args.size, args.extra)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    write(splits, args.out, reasons=args.reasons)
    for name, part in splits.items():
        labels = Counter(e.label for e in part)
        print(f"{name}: {len(part)} ({dict(sorted(labels.items()))})")  # noqa: T201
    print(f"wrote {args.out}")  # noqa: T201
    return 0


def _description() -> str:
    # The package's docstring is the help text; imported late, since the package imports us.
    from training import dataset

    return dataset.__doc__ or ""
