"""The service's model: a GGUF file served through llama-cpp-python and scored by the prompt
contract's one algorithm (``service.scoring``), so a number measured offline is the number
served. No web imports: the API, training's evaluation and conversion's verification all use it.

An ``Engine`` is not thread-safe (one context, one KV cache): callers serialize access.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts import manifest, shipped
from artifacts.gguf_types import file_type_name
from artifacts.hashing import sha256_of
from service.calibration import Calibration
from service.llama_backend import LlamaBackend, UnsupportedVersionError
from service.scoring import Scorer, TemplateError

logger = logging.getLogger(__name__)

# The context a model is served with unless told otherwise (ALGOSPEAK_CONTEXT_SIZE); evaluation
# and verification use it too, so they measure what is served.
DEFAULT_CONTEXT = 2048


class ModelError(RuntimeError):
    """The model file is missing or unusable; the message says what to run."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the service tells its users about the model: names and hashes, never the paths of
    the machine it runs on."""

    file: str  # the GGUF's file name
    name: str
    sha256: str
    size_bytes: int
    architecture: str
    quantization: str
    context_size: int
    threads: int
    adapter: str | None = None  # a GGUF LoRA adapter applied on top: "<file> sha256:<hex>"
    # How the model was made and how it scored: what the file itself carries (the shipped
    # default model), else the build's manifest.json next to it if it describes this file.
    manifest: dict[str, Any] | None = None


class Engine(Scorer):
    """A loaded GGUF classifier: the scoring algorithm over a llama.cpp backend. ``close()``
    frees it."""

    backend: LlamaBackend

    def __init__(
        self,
        path: Path,
        *,
        threads: int,
        context: int = DEFAULT_CONTEXT,
        batch: int = 512,
        lora_path: Path | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        """Load the GGUF at ``path``, with the GGUF LoRA adapter ``lora_path`` applied if given;
        ModelError if either is missing or unusable. Probabilities are calibrated as
        ``calibration`` says, by default as the model's manifest says (none if it says none)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        if lora_path is not None and not Path(lora_path).is_file():
            raise ModelError(f"LoRA adapter file {lora_path} does not exist")
        try:
            backend = LlamaBackend(
                path, threads=threads, context=context, batch=batch, lora_path=lora_path
            )
        except UnsupportedVersionError as exc:
            raise ModelError(str(exc)) from exc
        except (ValueError, RuntimeError) as exc:
            what = f"model file {path}" + (f" with adapter {lora_path}" if lora_path else "")
            raise ModelError(f"{what} could not be loaded (not a valid GGUF?)") from exc
        try:
            super().__init__(backend)
        except TemplateError as exc:
            backend.close()
            raise ModelError(f"model file {path}: {exc}") from exc
        metadata = backend.metadata
        sha256 = sha256_of(path)
        self.info = ModelInfo(
            file=path.name,
            name=metadata.get("general.name", path.stem),
            sha256=sha256,
            size_bytes=path.stat().st_size,
            architecture=metadata.get("general.architecture", "unknown"),
            quantization=file_type_name(int(metadata.get("general.file_type", -1))),
            context_size=backend.context_size,
            threads=threads,
            adapter=f"{Path(lora_path).name} sha256:{sha256_of(Path(lora_path))}"
            if lora_path
            else None,
            manifest=_manifest(metadata) or manifest.public(manifest.describing(path, sha256)),
        )
        self.calibration = calibration or Calibration.from_manifest(self.info.manifest)
        logger.info("loaded %s (%s, %s)", path, self.info.architecture, self.info.quantization)

    def evaluate(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` right after the fixed prefix with one plain ``Llama.eval``:
        the raw model cost that benchmarks compare ``classify`` with."""
        self._answered = None
        self.backend.evaluate(self.prefix_end(), tokens)

    def close(self) -> None:
        self.backend.close()


def _manifest(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest a prepared default model carries in its metadata, if any."""
    carried = metadata.get(shipped.MANIFEST_KEY)
    return json.loads(carried) if carried else None
