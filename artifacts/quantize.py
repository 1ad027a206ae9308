"""llama.cpp's quantizer, in process: the one call that both the conversion pipeline and the
first start of the shipped default model make."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from artifacts.gguf_types import FILE_TYPES


def quantize_file(source: Path, output: Path, quantization: str, *, threads: int = 0) -> bool:
    """Quantize the f16/bf16/f32 GGUF ``source`` to ``output`` as ``quantization`` (a name of
    :data:`FILE_TYPES`) with ``threads`` (0: all cores). True when it worked; ``output`` is
    written under a temporary name and renamed only then, so it is never half-written."""
    import llama_cpp  # heavy: only quantizing needs it

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[quantization]
    params.nthread = threads
    output.parent.mkdir(parents=True, exist_ok=True)
    # Per process: several replicas preparing one shared folder never write the same file.
    partial = output.with_name(f".{output.stem}.{os.getpid()}.partial{output.suffix}")
    try:
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(partial).encode(), ctypes.byref(params)
        )
        if status == 0:
            partial.replace(output)
        return status == 0
    finally:
        partial.unlink(missing_ok=True)
