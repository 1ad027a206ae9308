"""What is inside a GGUF file: its metadata (through llama-cpp-python, the runtime that serves
it) and the types of its tensors (from the header)."""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from pathlib import Path

from artifacts.merge import copy_metadata
from conversion.errors import ConversionError


def metadata(path: Path) -> dict[str, str]:
    """The GGUF's metadata as llama-cpp-python reads it (vocabulary only, no weights loaded);
    ConversionError if llama-cpp-python cannot load the file."""
    from llama_cpp import Llama

    try:
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ConversionError(f"llama-cpp-python cannot load {path}: {exc}") from exc
    try:
        return dict(llm.metadata)
    finally:
        llm.close()


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGML type the GGUF at ``path`` holds, most common first.

    Reads only the header, skipping metadata values: ``gguf.GGUFReader`` decodes every
    metadata field first, which takes about 10 s for a 49k-token vocabulary.
    """
    from gguf import GGMLQuantizationType

    types: Counter[str] = Counter()
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
        if magic != b"GGUF" or version < 2:  # version 1 had 32-bit counts
            raise ConversionError(f"{path} is not a GGUF file of version 2 or later")
        offset = 24
        for _ in range(n_kv):
            offset = _skip_string(data, offset)
            (kind,) = struct.unpack_from("<I", data, offset)
            offset = _skip_value(data, offset + 4, kind)
        for _ in range(n_tensors):
            offset = _skip_string(data, offset)
            (n_dims,) = struct.unpack_from("<I", data, offset)
            offset += 4 + 8 * n_dims
            (kind,) = struct.unpack_from("<I", data, offset)
            types[GGMLQuantizationType(kind).name] += 1
            offset += 12  # type u32, data offset u64
    return dict(types.most_common())


# GGUF metadata value types (gguf.GGUFValueType) with a fixed size, in bytes.
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _skip_string(data: mmap.mmap, offset: int) -> int:
    (length,) = struct.unpack_from("<Q", data, offset)
    return offset + 8 + length


def _skip_value(data: mmap.mmap, offset: int, kind: int) -> int:
    if kind == _STRING:
        return _skip_string(data, offset)
    if kind == _ARRAY:
        item, count = struct.unpack_from("<IQ", data, offset)
        offset += 12
        if item in _SIZES:
            return offset + count * _SIZES[item]
        for _ in range(count):
            offset = _skip_value(data, offset, item)
        return offset
    return offset + _SIZES[kind]


# Keys llama.cpp's converters fill from the local folders they read: paths of the build machine.
_LOCAL_KEYS = ("general.base_model.", "general.tags", "general.basename")


def without_local_paths(path: Path, name: str) -> None:
    """Rewrite the GGUF at ``path`` (a small one: a LoRA adapter) without the metadata that
    names the folders it was built from, and with ``general.name`` set to ``name``."""
    import gguf

    reader = gguf.GGUFReader(path)
    partial = path.with_name(f".{path.name}.partial")
    writer = gguf.GGUFWriter(partial, arch=str(reader.fields["general.architecture"].contents()))
    try:
        copy_metadata(reader, writer, drop=_LOCAL_KEYS, replace={"general.name": name})
        for tensor in reader.tensors:
            writer.add_tensor_info(
                tensor.name,
                tensor.data.shape,
                tensor.data.dtype,
                tensor.data.nbytes,
                tensor.tensor_type,
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            writer.write_tensor_data(tensor.data)
        writer.close()
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
