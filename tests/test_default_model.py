"""Training the default model (`make model`) on a reduced budget: every stage really runs on the
real SmolLM2 base, and what it installs is what serving prepares and serves."""

import json
import shutil
from pathlib import Path

import pytest

from algospeak import normalize
from artifacts import shipped
from artifacts.hashing import sha256_of
from conversion.errors import ConversionError
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
    models = ("tuned", "tuned, calibrated blind to the evidence", "tuned, uncalibrated")
    models += ("untuned base",)
    assert set(manifest["metrics"]) == {f"{m} / {s}" for m in models for s in sets}
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


def test_recalibrating_refits_the_calibration_of_the_installed_adapter(
    installed: Path, tmp_path: Path
) -> None:
    """``--recalibrate`` fits the calibration again on the same dev posts (so it reproduces the
    build's, whatever the manifest said meanwhile), evaluates again and keeps the adapter and
    its training record."""
    folder = tmp_path / "default"
    shutil.copytree(installed, folder)
    built = json.loads((installed / shipped.MANIFEST_FILE).read_text())
    tampered = built | {"calibration": built["calibration"] | {"label_shift": 5.0}}
    (folder / shipped.MANIFEST_FILE).write_text(json.dumps(tampered))
    args = ["--recalibrate", "--install-dir", str(folder), "--work-dir", str(tmp_path / "build")]
    assert default_model.main([*args, *REDUCED]) == 0
    after = json.loads((folder / shipped.MANIFEST_FILE).read_text())
    shifts = after["calibration"].pop("category_shift")
    assert shifts == pytest.approx(built["calibration"].pop("category_shift"), abs=1e-6)
    assert after["calibration"] == pytest.approx(built["calibration"], abs=1e-6)
    assert set(after["calibration"]) >= {"label_decoded", "category_decoded", "category_ambiguous"}
    assert sha256_of(folder / shipped.ADAPTER_FILE) == after["adapter_sha256"]
    assert after["adapter_sha256"] == built["adapter_sha256"]
    assert (
        after["training"] == built["training"]
        and after["metrics"].keys() == built["metrics"].keys()
    )
    assert "by_category" in (folder / "report.md").read_text()


def row(quantization: str, ms: float, size: int, passed: bool = True) -> dict[str, object]:
    return {"quantization": quantization, "ms_per_text": ms, "bytes": size, "passed": passed}


def test_the_most_precise_quantization_within_timing_noise_is_served() -> None:
    rows = [row("Q4_0", 109, 92), row("Q4_K_M", 150, 105), row("Q8_0", 116, 145)]
    assert default_model.pick(rows)["quantization"] == "Q8_0"
    rows = [row("Q4_0", 60, 92), row("Q8_0", 116, 145)]
    assert default_model.pick(rows)["quantization"] == "Q4_0"
    rows = [row("Q4_0", 109, 92), row("Q8_0", 100, 145, passed=False)]
    assert default_model.pick(rows)["quantization"] == "Q4_0"
    with pytest.raises(ConversionError):
        default_model.pick([row("Q8_0", 100, 145, passed=False)])


def test_a_run_resumes_only_under_the_same_dataset_preset_and_overrides(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / "checkpoint-100"

    def settings(data_sha: str, overrides: list[str]) -> bool:
        """Whether the run folder's checkpoint survived the build's settings."""
        default_model._run_settings(tmp_path, data_sha, overrides)
        kept = checkpoint.is_dir()
        checkpoint.mkdir(parents=True, exist_ok=True)
        return kept

    settings("a", ["max_steps=2"])
    assert settings("a", ["max_steps=2"])
    assert not settings("a", ["max_steps=3"])  # another schedule: starting over
    assert not settings("b", ["max_steps=3"])  # another dataset
