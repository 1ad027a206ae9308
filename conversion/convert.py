"""Hugging Face folder -> GGUF, and LoRA adapter -> GGUF adapter, with llama.cpp's converters."""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from artifacts import manifest
from conversion import adapters, llamacpp
from conversion.errors import ConversionError, disk_space
from conversion.gguf_file import without_local_paths

log = logging.getLogger(__name__)

OUTTYPES = ("f16", "bf16", "f32", "q8_0")


def convert(model_dir: Path | str, output: Path, *, outtype: str = "f16") -> Path:
    """Write the Hugging Face model in ``model_dir`` (a folder, or a catalog name such as
    ``smollm2-135m-instruct`` for an unmerged base) as the GGUF ``output`` (``outtype``
    weights) with llama.cpp's ``convert_hf_to_gguf.py``, record it in the manifest next to
    it, and return ``output``. An existing ``output`` is replaced only once the new file is
    complete. ConversionError if ``model_dir`` is not a model folder or the converter fails.
    """
    if not Path(model_dir).is_dir():
        model_dir = adapters.resolve(str(model_dir))[1]
    model_dir, output = Path(model_dir), Path(output)
    _check_outtype(outtype)
    if not (model_dir / "config.json").is_file():
        raise ConversionError(
            f"{model_dir} is not a Hugging Face model folder (no config.json): merge the "
            "adapter first (python -m conversion merge)"
        )
    started = time.monotonic()
    log.info("converting %s to %s (%s)", model_dir, output, outtype)
    with _partial(output) as partial, _progress(_tensor_count(model_dir), output.name) as tick:
        args = [str(model_dir.resolve()), "--outfile", str(partial), "--outtype", outtype]
        llamacpp.run_script("convert_hf_to_gguf.py", args, on_line=tick)
    manifest.update(
        output.parent,
        "convert",
        artifacts={output: {"type": outtype}},
        inherit=model_dir,
        started=started,
        source=str(model_dir.resolve()),
        converter=llamacpp.provenance(),
    )
    return output


def convert_lora(
    adapter: Path, output: Path, *, base: str | None = None, outtype: str = "f16"
) -> Path:
    """Write the peft adapter in ``adapter`` as the GGUF LoRA adapter ``output`` with
    llama.cpp's ``convert_lora_to_gguf.py`` (the base's config is read from ``base``, by
    default the base it was trained on) and return ``output``, without metadata naming the
    build machine's folders. Load it next to the base GGUF with ``Engine(..., lora_path=
    output)`` or ``ALGOSPEAK_LORA_PATH``, or merge it with ``artifacts.merge``."""
    adapter, output = Path(adapter), Path(output)
    _check_outtype(outtype)
    adapters.adapter_config(adapter)
    started = time.monotonic()
    name, loadable = adapters.resolve(base, adapter)
    where = ["--base", loadable] if Path(loadable).is_dir() else ["--base-model-id", loadable]
    log.info("converting the adapter %s to %s (base %s)", adapter, output, name)
    with _partial(output) as partial:
        args = [*where, "--outfile", str(partial), "--outtype", outtype, str(adapter.resolve())]
        llamacpp.run_script("convert_lora_to_gguf.py", args)
        without_local_paths(partial, name=f"algospeak LoRA adapter for {name}")
    manifest.update(
        output.parent,
        "lora",
        artifacts={output: {"type": outtype, "kind": "lora-adapter"}},
        started=started,
        base=name,
        base_path=loadable,
        adapter=manifest.adapter_record(adapter),
        converter=llamacpp.provenance(),
    )
    return output


def _check_outtype(outtype: str) -> None:
    if outtype not in OUTTYPES:
        raise ConversionError(f"outtype must be one of {', '.join(OUTTYPES)}, not {outtype!r}")


@contextlib.contextmanager
def _partial(output: Path) -> Iterator[Path]:
    """A temporary file name next to ``output``, renamed to ``output`` on success and removed
    on failure: a server reading the old file (mmap) keeps it, and nobody sees half a file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        with disk_space(output):
            yield partial
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def _tensor_count(model_dir: Path) -> int:
    """Tensors in the folder's safetensors files (read from their headers, no weights)."""
    count = 0
    for path in model_dir.glob("*.safetensors"):
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            count += sum(key != "__metadata__" for key in json.loads(handle.read(size)))
    return count


@contextlib.contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[str], None]]:
    """A line handler that advances a progress bar for each tensor the converter writes."""
    from tqdm import tqdm

    with tqdm(total=total or None, desc=f"converting {what}", unit="tensor") as bar:

        def tick(line: str) -> None:
            # The converter logs one "<name>, torch.float32 --> F16, shape = ..." per tensor.
            if " --> " in line:
                bar.update(1)

        yield tick
