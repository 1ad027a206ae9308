"""Quantize a GGUF in-process with llama.cpp's own quantizer (no binary needed).

The requested type is a recipe, not a promise: llama.cpp falls back to other types for tensors
whose rows do not fit the type's block (Q4_K needs rows divisible by 256; SmolLM2-135M's 576 are
not, so most of its tensors become Q5_0). The result reports the tensor types actually written,
read back from the file.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from artifacts import manifest
from artifacts.quantize import quantize_file
from conversion.errors import ConversionError, disk_space
from conversion.gguf_file import tensor_types

log = logging.getLogger(__name__)

QUANTIZATIONS = ("Q4_0", "Q4_K_M", "Q5_K_M", "Q8_0")
DEFAULT = "Q4_K_M"


@dataclass(frozen=True, slots=True)
class Quantized:
    """A quantized file and what is really in it."""

    path: Path
    quantization: str
    bytes: int
    tensor_types: dict[str, int] = field(default_factory=dict)  # GGML type -> tensor count


def quantize(
    source: Path, output: Path, quantization: str = DEFAULT, *, threads: int | None = None
) -> Quantized:
    """Quantize the GGUF ``source`` (f16/bf16/f32) to ``output`` as ``quantization`` (one of
    :data:`QUANTIZATIONS`), record it in the manifest next to ``output`` and return what was
    written. ``threads`` defaults to all cores. ConversionError for an unknown type, a missing
    source, a failed quantization or a full disk; ``output`` is never left half-written."""
    source, output = Path(source), Path(output)
    if quantization not in QUANTIZATIONS:
        raise ConversionError(
            f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}"
        )
    if not source.is_file():
        raise ConversionError(f"{source} does not exist: convert the model first")
    started = time.monotonic()
    log.info("quantizing %s to %s (%s)", source.name, output, quantization)
    with disk_space(output):
        done = quantize_file(source, output, quantization, threads=threads or 0)
    if not done and shutil.disk_usage(output.parent).free < source.stat().st_size:
        raise ConversionError(
            f"the disk is full (quantizing to {output} failed with "
            f"{shutil.disk_usage(output.parent).free // 2**20} MB free): free some space or "
            "write the output to another disk"
        )
    if not done:
        raise ConversionError(
            f"llama.cpp could not quantize {source}; is it an f16, bf16 or f32 GGUF written "
            "by `python -m conversion convert`?"
        )
    result = Quantized(output, quantization, output.stat().st_size, tensor_types(output))
    fallback = {t: n for t, n in result.tensor_types.items() if t not in _expected(quantization)}
    log.info("wrote %s: %s", output.name, _describe(result.tensor_types))
    if fallback:
        log.info("beyond the %s recipe (fallbacks for short rows): %s", quantization, fallback)
    manifest.update(
        output.parent,
        "quantize",
        artifacts={output: {"quantization": quantization, "tensor_types": result.tensor_types}},
        inherit=source.parent,
        started=started,
        source=source.name,
    )
    return result


def _expected(quantization: str) -> set[str]:
    # What the recipe itself writes; norms and biases stay F32 in every recipe.
    return {"F32"} | {
        "Q4_0": {"Q4_0", "Q6_K"},
        "Q4_K_M": {"Q4_K", "Q6_K"},
        "Q5_K_M": {"Q5_K", "Q6_K"},
        "Q8_0": {"Q8_0"},
    }[quantization]


def _describe(types: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in types.items())
