"""llama.cpp's own converters, taken from the sdist of the installed llama-cpp-python.

The GGUF a converter writes must match the runtime that loads it, so the scripts come from the
exact llama.cpp version that llama-cpp-python was built from: ``pip download`` fetches the
sdist of the installed version once (pip checks the index's hash), the converter scripts, their
``conversion`` package and ``gguf-py`` are extracted into the cache
(``$ALGOSPEAK_CACHE/llama.cpp/<version>`` or ``~/.cache/algospeak/llama.cpp/<version>``) with
a list of their sha256, and every later use checks the extracted files against that list.
Nothing is copied into the repository: the scripts run as subprocesses with ``PYTHONPATH``
pointing at the matching ``gguf-py``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path, PurePosixPath

from artifacts.bases import default_cache
from artifacts.hashing import sha256_of
from conversion.errors import ConversionError

log = logging.getLogger(__name__)

SCRIPTS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")
# Relative to vendor/llama.cpp in the sdist: what the scripts import, the built-in vocabularies
# the converter reads for some architectures (mamba, openelm), and llama.cpp's reference
# Qwen2 vocabulary and chat templates, which the tests use to build a Qwen2.5-like model.
_KEEP_DIRS = ("conversion/", "gguf-py/gguf/", "models/templates/")
_KEEP_FILES = (*SCRIPTS, "LICENSE", "gguf-py/pyproject.toml")
_VOCABULARIES = ("gpt-neox", "llama-spm", "qwen2")
_KEEP_FILES += tuple(f"models/ggml-vocab-{name}.gguf" for name in _VOCABULARIES)
_FILES = "FILES.json"
_LAYOUT = 2  # bump when the kept files change: older extractions are fetched again
_TAIL_LINES = 25


def runtime_version() -> str:
    """The installed llama-cpp-python version; ConversionError if it is not installed."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise ConversionError(
            "llama-cpp-python is not installed: pip install -e '.[serve,convert]'"
        ) from None


def default_root() -> Path:
    """Where extracted converters live, one folder per llama-cpp-python version."""
    return default_cache().parent / "llama.cpp"


def source_dir(root: Path | None = None) -> Path:
    """The checked ``vendor/llama.cpp`` folder for the installed runtime, fetched if needed.

    Raises ConversionError if the download fails or the sdist lacks the converter scripts.
    """
    version = runtime_version()
    home = (root or default_root()) / version
    if _intact(home):
        return home / "llama.cpp"
    if home.exists():
        log.warning("%s is incomplete or was modified; fetching it again", home)
        shutil.rmtree(home)
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{version}.", dir=home.parent) as scratch:
        sdist = _download(version, Path(scratch))
        _extract(sdist, Path(scratch) / "out")
        Path(scratch, "out").rename(home)
    if not _intact(home):
        raise ConversionError(f"the converter extracted to {home} does not check out")
    return home / "llama.cpp"


def _intact(home: Path) -> bool:
    """Whether ``home`` holds every listed file with its listed sha256, scripts included."""
    listing = home / _FILES
    if not listing.is_file():
        return False
    recorded = json.loads(listing.read_text(encoding="utf-8"))
    files: dict[str, str] = recorded["files"]
    if recorded.get("layout") != _LAYOUT or not all(script in files for script in SCRIPTS):
        return False
    base = home / "llama.cpp"
    return all((base / name).is_file() and sha256_of(base / name) == h for name, h in files.items())


def _download(version: str, folder: Path) -> Path:
    requirement = f"llama-cpp-python=={version}"
    log.info("downloading the %s sdist for its converter scripts (once per version)", requirement)
    command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
    command += ["--disable-pip-version-check", "--no-input", "-d", str(folder), requirement]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-_TAIL_LINES:])
        raise ConversionError(
            f"pip download {requirement} failed (exit {result.returncode}); the converter comes "
            f"from that sdist, so this needs access to the package index:\n{tail}"
        )
    found = sorted(folder.glob("*.tar.gz"))
    if len(found) != 1:
        raise ConversionError(f"pip download {requirement} did not give one .tar.gz sdist")
    return found[0]


def _extract(sdist: Path, out: Path) -> None:
    """Extract the converter's files from ``sdist`` into ``out/llama.cpp`` and list them."""
    files: dict[str, str] = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = PurePosixPath(member.name).parts
            # <name>-<version>/vendor/llama.cpp/<relative>
            if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp") or not member.isfile():
                continue
            relative = PurePosixPath(*parts[3:]).as_posix()
            if relative in _KEEP_FILES or relative.startswith(_KEEP_DIRS):
                member.name = relative
                archive.extract(member, out / "llama.cpp", filter="data")
                files[relative] = sha256_of(out / "llama.cpp" / relative)
    missing = [script for script in SCRIPTS if script not in files]
    if missing:
        raise ConversionError(f"{sdist.name} has no {', '.join(missing)} under vendor/llama.cpp")
    listing = {"layout": _LAYOUT, "sdist": sdist.name, "sdist_sha256": sha256_of(sdist)}
    listing["files"] = files
    (out / _FILES).write_text(json.dumps(listing, indent=1, sort_keys=True), encoding="utf-8")


def run_script(
    script: str, args: list[str], *, on_line: Callable[[str], None] | None = None
) -> None:
    """Run one of llama.cpp's scripts with its matching ``gguf-py``; ConversionError (with the
    script's last lines) if it fails. Each output line goes to ``on_line`` and the debug log."""
    source = source_dir()
    env = {**os.environ, "PYTHONPATH": str(source / "gguf-py")}
    # The script's folder comes first on sys.path, so its own ``conversion`` package wins over
    # this project's; cwd there too so nothing relative resolves against the caller's folder.
    command = [sys.executable, str(source / script), *args]
    log.debug("running %s", " ".join(command))
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        command,
        cwd=source,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,  # universal newlines: tqdm's carriage returns become lines too
        errors="replace",
    ) as process:
        for raw in process.stdout or ():
            line = raw.rstrip()
            if not line:
                continue
            tail.append(line)
            log.debug("%s: %s", script, line)
            if on_line is not None:
                on_line(line)
    if process.returncode != 0:
        output = "\n".join(tail)
        if "No space left on device" in output:
            raise ConversionError(
                f"the disk is full ({script} could not write its output): free some space or "
                f"write the output to another disk\n{output}"
            )
        raise ConversionError(f"{script} failed (exit {process.returncode}):\n{output}")


def provenance(root: Path | None = None) -> dict[str, str]:
    """Which converter is in use: the llama-cpp-python version and the sdist's sha256."""
    version = runtime_version()
    listing = json.loads(((root or default_root()) / version / _FILES).read_text(encoding="utf-8"))
    return {
        "llama-cpp-python": version,
        "sdist": listing["sdist"],
        "sdist_sha256": listing["sdist_sha256"],
    }
