"""Merging a GGUF LoRA adapter into its base GGUF with numpy alone (no torch, no llama.cpp
binary), so a machine that only serves can build the default model from the base its package
ships and the small adapter the repository ships.

Each adapted weight becomes ``W + (alpha / r) * B @ A``, computed in float32 from the base's
dequantized weight; the result is written as an f16 GGUF (norms and other 1-D tensors stay
f32) with the base's metadata, ready for llama.cpp's quantizer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class MergeError(ValueError):
    """The adapter does not fit the base (another architecture, or tensors that are missing
    or of the wrong shape)."""


def merge_lora(
    base: Path, adapter: Path, output: Path, *, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``base`` with ``adapter`` merged into it to ``output`` (f16); ``metadata`` adds
    or replaces string keys (``general.name``). MergeError if the adapter does not fit the
    base; ``output`` is written under a temporary name and renamed when complete."""
    import gguf

    base_reader = gguf.GGUFReader(base)
    deltas = _deltas(gguf.GGUFReader(adapter), base_reader)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    writer = gguf.GGUFWriter(partial, arch=_architecture(base_reader))
    try:
        # The file type is the writer's to say: f16 now, whatever the base was.
        copy_metadata(base_reader, writer, drop=("general.file_type",), replace=metadata)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        for tensor in base_reader.tensors:
            weights = _dequantized(tensor)
            if (delta := deltas.pop(tensor.name, None)) is not None:
                weights = weights + delta
            writer.add_tensor(
                tensor.name, weights.astype(np.float16 if weights.ndim > 1 else np.float32)
            )
        if deltas:
            raise MergeError(f"the base has no tensors {sorted(deltas)[:3]}... for the adapter")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    log.info("merged %s into %s: %s", adapter.name, base.name, output)
    return output


def _deltas(adapter: Any, base: Any) -> dict[str, np.ndarray]:
    """The weight change per base tensor name: ``(alpha / r) * B @ A`` in float32."""
    import gguf

    fields = adapter.fields
    if _string(fields, "general.type") != "adapter" or _string(fields, "adapter.type") != "lora":
        raise MergeError("not a LoRA adapter GGUF (general.type must be 'adapter', 'lora')")
    if _architecture(adapter) != _architecture(base):
        raise MergeError(
            f"the adapter is for {_architecture(adapter)!r}, the base is {_architecture(base)!r}"
        )
    alpha = float(fields["adapter.lora.alpha"].contents())
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for tensor in adapter.tensors:
        name, _, part = tensor.name.rpartition(".")
        pairs.setdefault(name, {})[part] = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in base.tensors}
    deltas = {}
    for name, pair in pairs.items():
        if set(pair) != {"lora_a", "lora_b"}:
            raise MergeError(f"adapter tensor {name} lacks its lora_a or lora_b half")
        a, b = pair["lora_a"].astype(np.float32), pair["lora_b"].astype(np.float32)
        delta = (alpha / a.shape[0]) * (b @ a)
        if shapes.get(name) != delta.shape:
            raise MergeError(
                f"adapter tensor {name} is {delta.shape}, the base's {shapes.get(name)}"
            )
        deltas[name] = delta
    return deltas


def _dequantized(tensor: Any) -> np.ndarray:
    import gguf

    return gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)


def copy_metadata(
    reader: Any, writer: Any, *, drop: tuple[str, ...] = (), replace: dict[str, str] | None = None
) -> None:
    """Copy every metadata key of the GGUF ``reader`` to ``writer`` except the architecture
    (the writer's own), those starting with one of ``drop`` and those in ``replace``, then
    ``replace``'s keys as strings."""
    import gguf

    replace = replace or {}
    for field in reader.fields.values():
        if field.name.startswith(("GGUF.", *drop)) or field.name in (
            gguf.Keys.General.ARCHITECTURE,
            *replace,
        ):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for key, value in replace.items():
        writer.add_string(key, value)


def _architecture(reader: Any) -> str:
    return _string(reader.fields, "general.architecture") or "unknown"


def _string(fields: dict[str, Any], key: str) -> str | None:
    return str(fields[key].contents()) if key in fields else None
