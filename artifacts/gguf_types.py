"""llama.cpp's file types (``general.file_type`` in a GGUF, ``llama_ftype`` in llama.h) by
name: the one table that the engine reports a model's quantization from and the quantizer
asks for one with."""

from __future__ import annotations

FILE_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32,
}  # fmt: skip
_NAMES = {value: name for name, value in FILE_TYPES.items()}


def file_type_name(value: int) -> str:
    """The name of the file type ``value``, or ``"unknown"``."""
    return _NAMES.get(value, "unknown")
