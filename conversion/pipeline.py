"""Every step in order: adapter -> merged HF folder -> f16 GGUF -> quantized GGUFs -> verified
against the merged model -> Ollama Modelfile, all in one output folder::

    OUT/merged/                 the merged Hugging Face model (+ its manifest.json)
    OUT/algospeak-f16.gguf      the full-precision conversion
    OUT/algospeak-Q4_K_M.gguf   one file per requested quantization
    OUT/Modelfile               for the first quantization
    OUT/manifest.json           provenance, tool versions, sha256, verification
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from conversion import quantize as quantize_module
from conversion.convert import convert
from conversion.errors import ConversionError
from conversion.merge import merge
from conversion.ollama import write_modelfile
from conversion.quantize import Quantized, quantize
from conversion.verify import DEFAULT_SAMPLES, DEFAULT_THRESHOLD, Report, verify
from training.hf_scorer import HFScorer

log = logging.getLogger(__name__)

STEM = "algospeak"


@dataclass(slots=True)
class Built:
    """What the pipeline wrote."""

    merged: Path
    f16: Path
    quantized: list[Quantized] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    modelfile: Path | None = None


def gguf_name(kind: str) -> str:
    """``algospeak-<kind>.gguf``: the file name each GGUF gets in the output folder."""
    return f"{STEM}-{kind}.gguf"


def run_all(
    adapter: Path,
    out: Path,
    *,
    base: str | None = None,
    types: tuple[str, ...] = (quantize_module.DEFAULT,),
    force: bool = False,
    dtype: str = "auto",
    check: bool = True,
    samples: int = DEFAULT_SAMPLES,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int | None = None,
    device: str = "cpu",
) -> Built:
    """Run every step into ``out`` and return what was built. With ``check``, each quantized
    file is verified against the merged model and ConversionError is raised (after every
    file is written) if one falls below ``threshold``."""
    if not types:
        raise ConversionError("ask for at least one quantization type")
    out = Path(out)
    merged = merge(adapter, out / "merged", base=base, dtype=dtype, force=force)
    built = Built(merged=merged, f16=convert(merged, out / gguf_name("f16")))
    for kind in types:
        built.quantized.append(quantize(built.f16, out / gguf_name(kind), kind, threads=threads))
    built.modelfile = write_modelfile(built.quantized[0].path)
    if check:
        precision = "float32" if device == "cpu" else "auto"  # as verify() chooses
        scorer = HFScorer(merged, device=device, threads=threads, dtype=precision)
        for result in built.quantized:
            built.reports.append(
                verify(result.path, scorer, samples=samples, threshold=threshold, threads=threads)
            )
        failed = [r for r in built.reports if not r.passed]
        if failed:
            names = ", ".join(f"{Path(r.gguf).name} {r.label_agreement:.0%}" for r in failed)
            raise ConversionError(
                f"verification failed (label agreement below {threshold:.0%}): {names}; the "
                "files are written, but compare the GGUF and merged model before serving"
            )
    return built
