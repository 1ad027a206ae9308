"""``manifest.json``: what each conversion step made, from what, with which tools.

Every step writes or extends the manifest in the folder of its output. A manifest carries the
provenance of its inputs forward (``inherit``), so the manifest next to a quantized GGUF still
names the base model and the adapter run it came from::

    {
      "base": "smollm2-135m-instruct",
      "adapter": {"path": ..., "sha256": ..., "run": {... run.json without the log ...}},
      "artifacts": {"model-Q4_K_M.gguf": {"sha256": ..., "bytes": ..., "step": "quantize",
                                          "quantization": "Q4_K_M", ...}},
      "steps": {"merge": {"finished": ..., "seconds": ..., "tools": {...}, ...}, ...}
    }
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from artifacts.hashing import sha256_of

NAME = "manifest.json"
_PROVENANCE = ("base", "base_path", "adapter")
TOOLS = (
    "torch",
    "transformers",
    "peft",
    "safetensors",
    "gguf",
    "llama-cpp-python",
    "sentencepiece",
)


def read(folder: Path) -> dict[str, Any]:
    """The manifest in ``folder``; an empty one if there is none."""
    path = Path(folder) / NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def describing(path: Path, sha256: str) -> dict[str, Any] | None:
    """The manifest next to the file ``path`` if it describes that very file (whose hash is
    ``sha256``), else None: a stale manifest must not vouch for another file."""
    try:
        manifest = json.loads(Path(path).with_name(NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    recorded = manifest.get("artifacts", {}).get(Path(path).name, {}).get("sha256")
    return manifest if sha256 in (manifest.get("sha256"), recorded) else None


def public(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """``manifest`` as the service may show it: every absolute path in it reduced to its file
    name, so no path of the machine that built or serves the model leaks out."""
    if manifest is None:
        return None
    return _without_paths(manifest)


def _without_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_paths(item) for item in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or value[1:3] in (":\\", ":/")):
        return Path(value).name
    return value


def tool_versions(names: tuple[str, ...] = TOOLS) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages are left out)."""
    versions = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def adapter_record(adapter: Path) -> dict[str, Any]:
    """Where an adapter is, the sha256 of its weights and its training run (``run.json``,
    without the per-step log)."""
    adapter = Path(adapter)
    record: dict[str, Any] = {"path": str(adapter.resolve())}
    weights = adapter / "adapter_model.safetensors"
    if weights.is_file():
        record["sha256"] = sha256_of(weights)
    run = adapter / "run.json"
    if run.is_file():
        record["run"] = {
            k: v for k, v in json.loads(run.read_text(encoding="utf-8")).items() if k != "log"
        }
    return record


def update(
    folder: Path,
    step: str,
    *,
    artifacts: dict[Path, dict[str, Any]] | None = None,
    inherit: Path | None = None,
    started: float | None = None,
    **fields: Any,
) -> Path:
    """Record ``step`` in the manifest of ``folder`` and return the manifest's path.

    ``artifacts`` maps files (or folders, whose files are each recorded) to extra facts about
    them; each gets its sha256 and size. ``inherit`` is the folder of the step's input: its
    base/adapter provenance and earlier steps are carried over where this manifest has none.
    Top-level ``fields`` named base, base_path or adapter set the provenance; others go into
    the step's entry. ``started`` (a ``time.monotonic()`` value) adds the step's duration.
    """
    folder = Path(folder)
    manifest = read(folder)
    if inherit is not None and Path(inherit).resolve() != folder.resolve():
        upstream = read(Path(inherit))
        for key in _PROVENANCE:
            if key in upstream:
                manifest.setdefault(key, upstream[key])
        for name, entry in upstream.get("steps", {}).items():
            manifest.setdefault("steps", {}).setdefault(name, entry)
    entry: dict[str, Any] = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "tools": tool_versions(),
    }
    if started is not None:
        entry["seconds"] = round(time.monotonic() - started, 2)
    for key, value in fields.items():
        if key in _PROVENANCE:
            manifest[key] = value
        else:
            entry[key] = value
    manifest.setdefault("steps", {})[step] = entry
    recorded = manifest.setdefault("artifacts", {})
    for path, extra in (artifacts or {}).items():
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.name == NAME:
                continue
            name = os.path.relpath(file, folder)
            recorded[name] = {
                "sha256": sha256_of(file),
                "bytes": file.stat().st_size,
                "step": step,
            } | extra
    return _write(folder, manifest)


def annotate(artifact: Path, key: str, value: Any) -> Path:
    """Add ``key: value`` to the record of ``artifact`` in the manifest next to it (creating
    the record if needed) and return the manifest's path."""
    artifact = Path(artifact)
    manifest = read(artifact.parent)
    record = manifest.setdefault("artifacts", {}).setdefault(artifact.name, {})
    if "sha256" not in record and artifact.is_file():
        record.update(sha256=sha256_of(artifact), bytes=artifact.stat().st_size)
    record[key] = value
    return _write(artifact.parent, manifest)


def _write(folder: Path, manifest: dict[str, Any]) -> Path:
    target = Path(folder) / NAME
    partial = target.with_name(f".{NAME}.partial")
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(target)
    return target
