"""The shipped default model: the adapter in models/default is what the code trains on, and it
is prepared (merged into the base from its package, quantized) and served for real."""

import json
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from algospeak import normalize
from artifacts import shipped
from artifacts.merge import MergeError, merge_lora
from recipes.default_model import NAME, dataset_sha256
from service.app import create_app
from service.calibration import Calibration
from service.engine import Engine
from service.settings import Settings
from tests.conftest import running_server
from training.dataset import build, write

TEXTS = ["i want to unalive myself", "grilled corn with lime", "kys nobody wants you"]


def test_the_shipped_adapter_was_trained_on_the_dataset_the_code_builds(tmp_path: Path) -> None:
    manifest = shipped.load().manifest
    write(build(), tmp_path)
    assert dataset_sha256(tmp_path) == manifest["dataset_sha256"], (
        "the dataset the code builds (templates, lexicon, normalizer or prompt contract) is not "
        "the one the shipped adapter was trained on: retrain it with `make model` (hours on 2 "
        "cores) and commit models/default/"
    )


def test_the_manifest_says_what_the_model_is_and_how_it_scored() -> None:
    manifest = shipped.load().manifest
    assert manifest["name"] == NAME and manifest["base"] == "smollm2-135m-instruct"
    assert len(manifest["base_sha256"]) == len(manifest["adapter_sha256"]) == 64
    assert manifest["training"]["seed"] and manifest["training"]["hardware"]
    assert manifest["code_revision"] and manifest["learning_curve"]
    assert Calibration.from_manifest(manifest) != Calibration()  # fitted on dev
    assert {"tuned / test split", "tuned / hand-written"} <= set(manifest["metrics"])
    assert (shipped.SHIPPED_DIR / shipped.ADAPTER_FILE).stat().st_size <= 25 * 2**20
    assert "/root/" not in json.dumps(manifest) and "/home/" not in json.dumps(manifest)


def test_preparing_builds_the_served_model_once(shipped_gguf: Path) -> None:
    first = shipped_gguf.stat().st_mtime_ns
    assert shipped.prepare(target=shipped_gguf, threads=2) == shipped_gguf
    assert shipped_gguf.stat().st_mtime_ns == first  # reused, not rebuilt


def test_a_refitted_calibration_is_served_from_a_rebuilt_model(tmp_path: Path) -> None:
    """The prepared GGUF carries the manifest's calibration, so one prepared before the
    calibration was refitted must not be reused."""
    folder = tmp_path / "default"
    shutil.copytree(shipped.SHIPPED_DIR, folder)
    before = shipped.load(folder).built_from
    manifest = json.loads((folder / shipped.MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["calibration"]["label_shift"] += 0.5
    (folder / shipped.MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    assert shipped.load(folder).built_from != before
    assert shipped.load(shipped.SHIPPED_DIR).built_from == before


def test_the_prepared_model_is_the_base_with_the_adapter(shipped_gguf: Path, smollm2_gguf) -> None:
    """Merged at first start or applied at run time by llama.cpp, the answers agree."""
    merged = Engine(shipped_gguf, threads=2)
    calibration = Calibration.from_manifest(shipped.load().manifest)
    layered = Engine(
        smollm2_gguf, threads=2, lora_path=shipped.load().adapter, calibration=calibration
    )
    try:
        for text in TEXTS:
            a, b = merged.classify(text, normalize(text)), layered.classify(text, normalize(text))
            # Measured about 0.02 apart: the merged weights are requantized.
            assert abs(a.label_scores["harmful"] - b.label_scores["harmful"]) < 0.1
    finally:
        merged.close()
        layered.close()


def test_the_service_serves_the_shipped_model_by_name(
    shipped_gguf: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("ALGOSPEAK_HOME", str(tmp_path))
    target = tmp_path / "models" / "default" / "algospeak.gguf"
    target.parent.mkdir(parents=True)
    shutil.copyfile(shipped_gguf, target)
    with TestClient(create_app(Settings(threads=2))) as client:
        info = client.get("/info").json()
        answer = client.post("/classify", json={"text": TEXTS[2]}).json()
    version = shipped.load().manifest["version"]
    assert info["model"]["name"] == answer["model"] == f"{NAME}@{version}"
    assert info["model"]["manifest"]["dataset_sha256"] == shipped.load().manifest["dataset_sha256"]
    assert info["model"]["manifest"]["calibration"] == shipped.load().manifest["calibration"]
    assert str(tmp_path) not in json.dumps(info)


@pytest.mark.server
def test_a_fresh_home_prepares_the_model_at_first_start_over_http(tmp_path: Path) -> None:
    """What `make serve` does on a fresh clone: no model yet, the server prepares it."""
    env = {"ALGOSPEAK_HOME": str(tmp_path), "ALGOSPEAK_THREADS": "2"}
    with running_server(env, timeout=180) as base:
        answer = httpx.post(f"{base}/classify", json={"text": TEXTS[0]}, timeout=30).json()
    assert answer["model"].startswith(f"{NAME}@") and answer["label"] in ("harmful", "safe")
    assert (tmp_path / "models" / "default" / "algospeak.gguf").is_file()


def test_a_missing_or_altered_adapter_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(shipped.ShippedModelError, match="make model"):
        shipped.load(tmp_path)
    for name in (shipped.ADAPTER_FILE, shipped.MANIFEST_FILE):
        shutil.copyfile(shipped.SHIPPED_DIR / name, tmp_path / name)
    with (tmp_path / shipped.ADAPTER_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(shipped.ShippedModelError, match="does not match"):
        shipped.load(tmp_path)


def test_an_adapter_for_another_model_is_refused(tmp_path: Path, smollm2_gguf) -> None:
    with pytest.raises(MergeError, match="not a LoRA adapter"):
        merge_lora(smollm2_gguf, smollm2_gguf, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()
