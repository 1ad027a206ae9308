"""llama.cpp's quantizer, in process: the one call that both the conversion pipeline and the
first start of the shipped default model make."""

from __future__ import annotations

import ctypes
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from artifacts.gguf_types import FILE_TYPES

log = logging.getLogger(__name__)

# llama.cpp's line for each tensor it quantizes: "[  12/ 272] blk.1.attn_q.weight ...".
_PROGRESS = re.compile(r"\[\s*(\d+)/\s*(\d+)\]")


def quantize_file(source: Path, output: Path, quantization: str, *, threads: int = 0) -> bool:
    """Quantize the f16/bf16/f32 GGUF ``source`` to ``output`` as ``quantization`` (a name of
    :data:`FILE_TYPES`) with ``threads`` (0: all cores). True when it worked; ``output`` is
    written under a temporary name and renamed only then, so it is never half-written.
    llama.cpp's own lines go to the debug log; a progress bar counts the tensors."""
    import llama_cpp  # heavy: only quantizing needs it

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[quantization]
    params.nthread = threads
    output.parent.mkdir(parents=True, exist_ok=True)
    # Per process: several replicas preparing one shared folder never write the same file.
    partial = output.with_name(f".{output.stem}.{os.getpid()}.partial{output.suffix}")
    try:
        with _progress(output.name):
            status = llama_cpp.llama_model_quantize(
                str(source).encode(), str(partial).encode(), ctypes.byref(params)
            )
        if status == 0:
            partial.replace(output)
        return status == 0
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _progress(what: str) -> Iterator[None]:
    """Route llama.cpp's log lines to the debug log while quantizing, advancing a progress bar
    on its "[ i/ n]" tensor lines, then give llama-cpp-python its own log callback back."""
    import llama_cpp
    from llama_cpp import _logger
    from tqdm import tqdm

    bar = tqdm(desc=f"quantizing {what}", unit="tensor")

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        if match := _PROGRESS.search(line):
            bar.total = int(match[2])
            bar.update(int(match[1]) - bar.n)
        log.debug("llama.cpp: %s", line.rstrip())

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    try:
        yield
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        bar.close()
