"""``python -m conversion STEP ...``: merge, convert, quantize, verify, ollama, lora, or all.

Each step prints what it wrote (paths, types, agreement) and exits 1 with a message saying what
to do when it cannot go on. ``python -m conversion STEP --help`` lists a step's options.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from conversion.adapters import DTYPES, resolve
from conversion.convert import OUTTYPES, convert, convert_lora
from conversion.errors import ConversionError
from conversion.merge import merge
from conversion.ollama import write_modelfile
from conversion.pipeline import run_all
from conversion.quantize import DEFAULT, QUANTIZATIONS, quantize
from conversion.verify import DEFAULT_SAMPLES, DEFAULT_THRESHOLD, sample_texts, verify
from training.train import pick_device

log = logging.getLogger("conversion")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conversion", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    steps = parser.add_subparsers(dest="step", required=True)

    def step(name: str, help: str) -> argparse.ArgumentParser:
        return steps.add_parser(name, help=help, description=help)

    merge = step("merge", "merge a LoRA adapter into its unquantized base (HF folder)")
    _adapter_and_base(merge)
    merge.add_argument("--out", type=Path, required=True, help="folder for the merged model")
    _merge_options(merge)

    convert = step("convert", "Hugging Face folder -> GGUF with llama.cpp's converter")
    convert.add_argument(
        "--model", required=True, help="merged HF model folder (or a catalog name for a base)"
    )
    convert.add_argument("--out", type=Path, required=True, help="the GGUF to write")
    convert.add_argument("--outtype", choices=OUTTYPES, default="f16")

    quantize = step("quantize", "quantize an f16/bf16/f32 GGUF (in-process llama.cpp)")
    quantize.add_argument("--gguf", type=Path, required=True, help="the GGUF to quantize")
    quantize.add_argument("--type", choices=QUANTIZATIONS, default=DEFAULT)
    quantize.add_argument("--out", type=Path, help="default: <input>-<TYPE>.gguf next to it")
    quantize.add_argument("--threads", type=int, help="default: all cores")

    verify = step("verify", "compare a GGUF's answers with its Hugging Face model's")
    verify.add_argument("--gguf", type=Path, required=True)
    verify.add_argument("--hf", required=True, help="merged HF folder (the base with --adapter)")
    verify.add_argument("--adapter", type=Path, help="score the base + this adapter, unmerged")
    _verify_options(verify)
    verify.add_argument("--data", type=Path, help="JSONL split to sample texts from")

    ollama = step("ollama", "write an Ollama Modelfile for a GGUF")
    ollama.add_argument("--gguf", type=Path, required=True)
    ollama.add_argument("--out", type=Path, help="default: Modelfile next to the GGUF")

    lora = step("lora", "LoRA adapter -> GGUF adapter (for ALGOSPEAK_LORA_PATH)")
    _adapter_and_base(lora)
    lora.add_argument("--out", type=Path, required=True, help="the GGUF adapter to write")
    lora.add_argument("--outtype", choices=OUTTYPES, default="f16")

    every = step("all", "merge, convert, quantize, verify and write the Modelfile")
    _adapter_and_base(every)
    every.add_argument("--out", type=Path, required=True, help="folder for everything")
    every.add_argument("--types", nargs="+", choices=QUANTIZATIONS, default=[DEFAULT])
    _merge_options(every)
    every.add_argument("--no-verify", action="store_true", help="skip the verification")
    _verify_options(every)
    return parser


def _adapter_and_base(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", type=Path, required=True, help="the adapter folder")
    parser.add_argument(
        "--base", help="catalog name, HF id or folder (default: the one it was trained on)"
    )


def _merge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="merge precision (auto: the base's own)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing merge")


def _verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="texts to compare")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--device", default="auto", help="HF side: cpu, cuda, mps or auto")


def _device(name: str) -> str:
    if name != "auto":
        return name
    return pick_device("auto")


def _run(args: argparse.Namespace) -> tuple[Any, bool]:
    """Run the chosen step; returns what to print and whether it succeeded."""
    if args.step == "merge":
        out = merge(args.adapter, args.out, base=args.base, dtype=args.dtype, force=args.force)
        return {"merged": str(out)}, True
    if args.step == "convert":
        return {"gguf": str(convert(args.model, args.out, outtype=args.outtype))}, True
    if args.step == "quantize":
        out = args.out or args.gguf.with_name(
            f"{args.gguf.stem.removesuffix('-f16')}-{args.type}.gguf"
        )
        result = quantize(args.gguf, out, args.type, threads=args.threads)
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}, True
    if args.step == "verify":
        reference = args.hf
        if not Path(reference).is_dir():  # a catalog name or Hub id, as for merge's --base
            reference = resolve(reference)[1]
        report = verify(
            args.gguf,
            reference,
            adapter=args.adapter,
            texts=sample_texts(args.samples, args.data),
            threshold=args.threshold,
            threads=args.threads,
            device=_device(args.device),
        )
        return report.summary(), report.passed
    if args.step == "ollama":
        return {"modelfile": str(write_modelfile(args.gguf, args.out))}, True
    if args.step == "lora":
        out = convert_lora(args.adapter, args.out, base=args.base, outtype=args.outtype)
        return {"lora": str(out)}, True
    built = run_all(
        args.adapter,
        args.out,
        base=args.base,
        types=tuple(args.types),
        force=args.force,
        dtype=args.dtype,
        check=not args.no_verify,
        samples=args.samples,
        threshold=args.threshold,
        threads=args.threads,
        device=_device(args.device),
    )
    return {
        "merged": str(built.merged),
        "f16": str(built.f16),
        "quantized": {q.quantization: str(q.path) for q in built.quantized},
        "tensor_types": {q.quantization: q.tensor_types for q in built.quantized},
        "verify": [r.summary() for r in built.reports],
        "modelfile": str(built.modelfile),
    }, True


def main(argv: list[str] | None = None) -> int:
    """Run one step from the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        result, ok = _run(args)
    except ConversionError as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(result, indent=2, default=str))  # noqa: T201 - the CLI's result
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
