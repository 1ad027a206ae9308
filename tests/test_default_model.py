"""The default model's build (`make model`) on a reduced budget: every stage really runs on the
real SmolLM2 base, the result is verified, installed and served."""

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from recipes import default_model
from service.app import create_app
from service.settings import Settings
from tests.conftest import running_server

# Two optimizer steps and a handful of texts: enough to prove the chain, not to make a model.
REDUCED = ["--eval-limit", "6", "--samples", "6", "--threads", "2"]
TRAINING = ["max_steps=2", "max_examples=8", "batch_size=4"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf) -> Path:
    root = tmp_path_factory.mktemp("default-model")
    folders = ["--install-dir", str(root / "default"), "--work-dir", str(root / "build")]
    assert default_model.main([*folders, *REDUCED, *TRAINING]) == 0
    return root / "default"


def test_the_build_installs_a_verified_evaluated_model(installed: Path) -> None:
    manifest = json.loads((installed / "manifest.json").read_text())
    assert (installed / "algospeak.gguf").stat().st_size > 50_000_000
    assert set(manifest["stages_s"]) == {
        "base",
        "dataset",
        "train",
        "convert",
        "verify",
        "evaluate",
    }
    table = manifest["quantizations"]
    assert {row["quantization"] for row in table} == set(default_model.CANDIDATES)
    (chosen,) = [row for row in table if row["chosen"]]
    assert chosen["passed"] and chosen["quantization"] == manifest["quantization"]
    assert manifest["adapter"]["run"]["config"]["max_steps"] == 2
    metrics = json.loads((installed / "metrics.json").read_text())
    assert metrics["examples"] == 6
    assert manifest["metrics"]["examples"] == 6
    for name in ("report.md", "confusion.png", "reliability.png"):
        assert (installed / name).stat().st_size > 0


def test_a_second_build_with_the_same_inputs_does_nothing(installed: Path) -> None:
    model = installed / "algospeak.gguf"
    before = model.stat().st_mtime_ns
    folders = ["--install-dir", str(installed), "--work-dir", str(installed.parent / "build")]
    assert default_model.main([*folders, *REDUCED, *TRAINING]) == 0
    assert model.stat().st_mtime_ns == before


def test_changed_inputs_mean_a_rebuild(installed: Path) -> None:
    key = default_model.inputs_key(TRAINING, 6, 6)
    assert default_model.up_to_date(installed, key)
    assert not default_model.up_to_date(installed, default_model.inputs_key(TRAINING, 7, 6))
    assert not default_model.up_to_date(installed, default_model.inputs_key(["max_steps=3"], 6, 6))


def test_the_rebuild_key_covers_every_file_the_model_is_made_from() -> None:
    """No hand-kept list: whatever file the dataset, training or conversion code gains counts."""
    files = default_model.source_files()
    root = Path(__file__).resolve().parent.parent
    for package in ("algospeak", "training", "conversion"):
        for path in (root / package).rglob("*.py"):
            assert f"{package}/{path.relative_to(root / package).as_posix()}" in files
    for data in (
        "algospeak/data/lexicon.yaml",
        "training/templates.yaml",
        "artifacts/catalog.yaml",
    ):
        assert data in files
    assert f"training/configs/{default_model.PRESET.name}" in files


def test_the_service_serves_the_default_model_and_reports_its_manifest(
    installed: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default path does not depend on the working directory
    monkeypatch.setenv("ALGOSPEAK_HOME", str(tmp_path / "home"))
    target = tmp_path / "home" / "models" / "default"
    target.parent.mkdir(parents=True)
    target.symlink_to(installed)
    assert Settings().model_path == target / "algospeak.gguf"
    with TestClient(create_app(Settings(threads=2))) as client:
        info = client.get("/info").json()
        assert info["model"]["manifest"]["base"] == "smollm2-135m-instruct"
        assert info["model"]["manifest"]["sha256"] == info["model"]["sha256"]


@pytest.mark.server
def test_the_installed_model_answers_over_http(installed: Path) -> None:
    env = {"ALGOSPEAK_MODEL_PATH": str(installed / "algospeak.gguf"), "ALGOSPEAK_THREADS": "2"}
    with running_server(env) as base:
        response = httpx.post(f"{base}/classify", json={"text": "kys nobody wants you"}, timeout=30)
        assert response.status_code == 200
        body = response.json()
        assert body["label"] in ("harmful", "safe")
        assert 0.5 <= body["confidence"] <= 1
        info = httpx.get(f"{base}/info", timeout=10).json()
        assert info["model"]["manifest"]["quantization"] == info["model"]["quantization"]
