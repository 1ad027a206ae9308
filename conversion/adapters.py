"""Trained adapters: which base they belong to, and loading that base so an error says why."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from artifacts.bases import CatalogError, FetchError, load_catalog
from conversion.errors import ConversionError
from training.hf_base import resolve_base

log = logging.getLogger(__name__)

# "auto": the precision the base is stored in (fp32 for the SmolLM2 folder, bf16 for Qwen2.5:
# a 3B model merged in fp32 needs 12 GB of RAM, more than a free Colab session has).
DTYPES = ("auto", "float32", "float16", "bfloat16")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def adapter_config(adapter: Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``; ConversionError if ``adapter`` is not a peft
    adapter folder."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise ConversionError(
            f"{adapter} is not a LoRA adapter folder (no adapter_config.json); pass the "
            "'adapter' folder that training wrote (models/runs/<run>/adapter)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def trained_base(adapter: Path) -> str | None:
    """The base an adapter was trained on: the name given to training (``run.json``), else
    the path or id peft recorded."""
    run = Path(adapter) / "run.json"
    if run.is_file():
        base = json.loads(run.read_text(encoding="utf-8")).get("base")
        if base:
            return str(base)
    return adapter_config(adapter).get("base_model_name_or_path")


def resolve(base: str | None, adapter: Path | None = None) -> tuple[str, str]:
    """``(name, loadable)`` for ``base`` (or the adapter's own base when ``base`` is None):
    ``loadable`` is a local Hugging Face folder or a Hub id. ConversionError for a base that
    is none of a folder, a catalog name or a Hub id, or whose catalog entry cannot be fetched.
    """
    name = base if base is not None else (trained_base(adapter) if adapter else None)
    if not name:
        raise ConversionError("no base model given and the adapter does not name one: --base")
    try:
        loadable = resolve_base(name)
    except (CatalogError, FetchError) as exc:
        raise ConversionError(f"cannot get the base model {name!r}: {exc}") from exc
    if not Path(loadable).is_dir() and not _HF_ID.match(loadable):
        known = ", ".join(load_catalog())
        raise ConversionError(
            f"base model {name!r} not found: it is not a folder, not a catalog name ({known}) "
            "and not a Hugging Face id (owner/name); train or fetch it first, or pass --base"
        )
    trained = trained_base(adapter) if adapter is not None and base is not None else None
    if trained and trained != name and _loadable_or_none(trained) != loadable:
        # A catalog name and its Hub id are the same base; anything else deserves a word.
        log.warning("the adapter was trained on %s; applying it to %s", trained, name)
    return name, loadable


def _loadable_or_none(name: str) -> str | None:
    try:
        return resolve_base(name) if not Path(name).is_dir() else name
    except (CatalogError, FetchError):
        return None


def load_base(name: str, loadable: str, dtype: str = "auto") -> tuple[Any, Any]:
    """The base model, unquantized in ``dtype``, and its tokenizer; ConversionError if it
    cannot be loaded (a Hub id needs internet access)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ConversionError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    log.info("loading the base %s unquantized (%s) from %s", name, dtype, loadable)
    try:
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(loadable, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(loadable)
    except OSError as exc:
        raise ConversionError(
            f"cannot load the base model {name!r} from {loadable}: {exc}. A Hugging Face id "
            "needs internet access; otherwise pass a local folder or a catalog name"
        ) from exc
    log.info("loaded the base in %s", model.dtype)
    return model, tokenizer


def apply(model: Any, adapter: Path, base: str) -> Any:
    """``model`` with the adapter loaded (a PeftModel); ConversionError if the adapter does
    not fit the model (other modules or shapes), naming the base it was trained on."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import safe_open

    trained = trained_base(adapter)
    hint = f"it was trained on {trained}" if trained else "merge it into the base it was trained on"
    try:
        wrapped = PeftModel.from_pretrained(model, str(adapter))
    except (RuntimeError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0][:300]
        raise ConversionError(
            f"the adapter {adapter} does not fit the base {base} ({hint}): {reason}"
        ) from exc
    # peft loads with strict=False: weights for modules the base lacks would vanish silently.
    weights = Path(adapter) / "adapter_model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as handle:
            saved = set(handle.keys())
        loaded = set(get_peft_model_state_dict(wrapped))
        if saved != loaded:
            missing = sorted(saved - loaded)[:3]
            raise ConversionError(
                f"the adapter {adapter} does not fit the base {base} ({hint}): "
                f"{len(saved - loaded)} of its weights have no place in the base, e.g. {missing}"
            )
    return wrapped
