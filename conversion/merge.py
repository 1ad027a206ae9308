"""Merge a LoRA adapter into its base: the Hugging Face folder the GGUF converter reads.

The base is reloaded unquantized, in the precision it is stored in unless asked otherwise:
merging into the 4-bit model that QLoRA trained on would re-quantize the merged weights and
drift from what was trained.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from artifacts import manifest
from conversion import adapters
from conversion.errors import ConversionError, disk_space

log = logging.getLogger(__name__)


def merge(
    adapter: Path,
    output: Path,
    *,
    base: str | None = None,
    dtype: str = "auto",
    force: bool = False,
) -> Path:
    """Write ``base`` + ``adapter`` merged into the folder ``output`` (safetensors, tokenizer,
    chat template, ``manifest.json``) and return it.

    ``base`` defaults to the base the adapter was trained on. ConversionError if ``output``
    already holds something and ``force`` is false, if the base is missing, if the adapter
    does not fit it, or if the disk fills up (nothing partial is left behind).
    """
    adapter, output = Path(adapter), Path(output)
    adapters.adapter_config(adapter)
    _check_output(output, force)
    started = time.monotonic()
    name, loadable = adapters.resolve(base, adapter)
    model, tokenizer = adapters.load_base(name, loadable, dtype)
    log.info("applying the adapter %s", adapter)
    merged = adapters.apply(model, adapter, name).merge_and_unload()
    if (adapter / "tokenizer.json").is_file():
        # Training saves the tokenizer it used next to the adapter: that is the one to ship.
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(adapter)
    if not getattr(tokenizer, "chat_template", None):
        log.warning("the tokenizer has no chat template: the engine will fall back to ChatML")
    log.info("saving the merged model to %s", output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with (
        disk_space(output),
        tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as scratch,
    ):
        merged.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        Path(scratch).chmod(0o755)  # mkdtemp makes it private; a model folder is not
        if output.exists():
            shutil.rmtree(output)
        Path(scratch).rename(output)
        Path(scratch).mkdir()  # TemporaryDirectory removes its (now empty) name
    manifest.update(
        output,
        "merge",
        artifacts={output: {}},
        started=started,
        base=name,
        base_path=loadable,
        adapter=manifest.adapter_record(adapter),
        dtype=str(merged.dtype).removeprefix("torch."),
    )
    log.info("merged in %.1f s", time.monotonic() - started)
    return output


def _check_output(output: Path, force: bool) -> None:
    """Refuse to replace an existing output without ``force``, and never replace something
    that is not a model folder (``--force`` on ``models/`` must not delete it)."""
    if not output.exists() or (output.is_dir() and not any(output.iterdir())):
        return
    if not force:
        raise ConversionError(f"{output} already exists: pass --force to replace it")
    if not output.is_dir() or not (
        (output / "config.json").is_file() or (output / manifest.NAME).is_file()
    ):
        raise ConversionError(
            f"{output} exists and is not a model folder: refusing to replace it even with "
            "--force; choose another output folder"
        )
