"""Training the default model (`make model`) on a reduced budget: every stage really runs on the
real SmolLM2 base, and what it installs is what serving prepares and serves."""

import json
from pathlib import Path

import pytest

from algospeak import normalize
from artifacts import shipped
from artifacts.hashing import sha256_of
from recipes import default_model
from service.engine import Engine

# Two optimizer steps and a handful of texts: enough to prove the chain, not to make a model.
REDUCED = ["--eval-limit", "6", "--samples", "6", "--curve-examples", "6", "--threads", "2"]
REDUCED += ["--calibration-examples", "12"]
TRAINING = ["max_steps=2", "save_steps=1", "max_examples=8", "batch_size=4", "warmup_steps=0"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf) -> Path:
    root = tmp_path_factory.mktemp("default-model")
    folders = ["--install-dir", str(root / "default"), "--work-dir", str(root / "build")]
    assert default_model.main([*folders, *REDUCED, *TRAINING]) == 0
    return root / "default"


def test_the_build_installs_a_verified_evaluated_adapter(installed: Path) -> None:
    manifest = json.loads((installed / shipped.MANIFEST_FILE).read_text())
    adapter = installed / shipped.ADAPTER_FILE
    assert 100_000 < adapter.stat().st_size <= 25 * 2**20
    assert manifest["adapter_sha256"] == sha256_of(adapter)
    stages = {"base", "dataset", "train", "curve", "adapter", "quantize", "calibrate", "evaluate"}
    assert set(manifest["stages_s"]) == stages
    table = manifest["quantizations"]
    assert {row["quantization"] for row in table} == set(default_model.CANDIDATES)
    (chosen,) = [row for row in table if row["chosen"]]
    assert chosen["passed"] and chosen["quantization"] == manifest["quantization"]
    assert manifest["training"]["steps"] == 2 and manifest["training"]["seed"] == 13
    assert [row["step"] for row in manifest["learning_curve"]] == [0, 1, 2]
    sets = ("test split", "hand-written")
    assert set(manifest["metrics"]) == {
        f"{m} / {s}" for m in ("tuned", "tuned, uncalibrated", "untuned base") for s in sets
    }
    assert set(manifest["calibration"]) >= {"label_scale", "label_shift", "category_shift"}
    assert manifest["metrics"]["tuned / hand-written"]["examples"] == 6
    report = (installed / "report.md").read_text()
    assert "Learning curve" in report and "by_category" in report and "by_tag" in report


def test_what_the_build_installs_is_what_serving_prepares(installed: Path, tmp_path: Path) -> None:
    target = shipped.prepare(installed, tmp_path / "algospeak.gguf", threads=2)
    engine = Engine(target, threads=2)
    try:
        assert (
            engine.info.name
            == f"{default_model.NAME}@{shipped.load(installed).manifest['version']}"
        )
        assert engine.info.quantization == shipped.load(installed).manifest["quantization"]
        assert engine.classify("kys nobody wants you", normalize("kys nobody wants you")).label
    finally:
        engine.close()


def test_the_build_writes_no_path_of_the_machine(installed: Path) -> None:
    text = (installed / shipped.MANIFEST_FILE).read_text() + (installed / "report.md").read_text()
    assert str(installed.parent) not in text and "/root/" not in text
