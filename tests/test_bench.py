"""The benchmark script runs (its figures are for `make bench`, not for a unit test)."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.redis_server import redis_server_or_skip

ROOT = Path(__file__).resolve().parent.parent


def _bench_module(name: str):
    """bench/NAME.py imported as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


load_bench = _bench_module("load")


def test_normalize_bench_runs_and_reports_a_ratio() -> None:
    command = [
        sys.executable,
        "bench/normalize.py",
        "--texts",
        "40",
        "--rounds",
        "1",
        "--goal",
        "0",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "speed-up" in result.stdout


def test_normalize_quality_bench_runs_on_well_formed_hand_written_posts() -> None:
    for name in ("normalizer_dev.yaml", "normalizer_handwritten.yaml"):
        data = yaml.safe_load((ROOT / "tests/data" / name).read_text("utf-8"))
        for post in data["coded"]:
            for term in post["terms"]:
                assert post["text"].count(term["code"]) == 1, (name, post["text"], term["code"])
                assert term["means"] and all(m == m.lower().strip() for m in term["means"]), term
        assert all(isinstance(text, str) and text for text in data["safe"])
    command = [sys.executable, "bench/normalize_quality.py", "--goal-decoded", "0"]
    command += ["--goal-changed", "1"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "naive regex baseline : decoded" in result.stdout
    assert "algospeak            : decoded" in result.stdout


def test_classify_bench_runs_against_a_real_server(smollm2_gguf) -> None:
    command = [sys.executable, "bench/classify.py", "--model", str(smollm2_gguf), "--rounds", "1"]
    command += ["--texts", "2", "--threads", "2", "--port", "8761"]
    command += ["--goal-speedup", "0", "--goal-overhead", "1000", "--split-posts", "5"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "speed-up vs do-it-yourself" in result.stdout
    assert "engine overhead" in result.stdout
    # The base model's single-token answer values: one call, or two when the guess is wrong.
    assert re.search(r"decode calls per request, median: (1|1\.5|2) ", result.stdout)
    assert "tokens per request / (post + tail), median over 5 test posts" in result.stdout
    assert "explanation cost vs explain=false: explain=true" in result.stdout


def test_calibration_bench_compares_the_calibrations_on_dev(smollm2_gguf) -> None:
    command = [sys.executable, "bench/calibration.py", "--model", str(smollm2_gguf)]
    command += ["--examples", "16", "--posts", "16", "--folds", "2", "--threads", "2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines()]
    # Each calibration's name and its five headline figures.
    for source in (["template", "dev,"], ["hand-written", "dev,"]):
        for way in (["blind", "to", "the", "evidence"], ["with", "the", "evidence"]):
            assert [*source, *way] in [row[:-5] for row in rows], result.stdout


def test_train_bench_measures_the_preset(smollm2_gguf) -> None:
    command = [sys.executable, "bench/train.py", "--steps", "2", "--batch", "1"]
    command += ["--variants", "preset,all-layers"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "all-layers" in result.stdout.split("vs preset")[-1]


def test_checkpoints_bench_compares_real_runs_at_the_same_step(smollm2_hf, tmp_path) -> None:
    from training.config import TrainConfig
    from training.dataset import build, write
    from training.train import main

    write(build(seed=3, size=200), tmp_path / "data")
    for run, layers in (("baseline", 1), ("lever", 2)):
        settings = dict(base=str(smollm2_hf), dataset=tmp_path / "data", device="cpu")
        settings |= dict(load_in_4bit=False, batch_size=1, max_steps=1, save_steps=1)
        main(TrainConfig(output_dir=tmp_path / run, lora_layers=layers, max_length=128, **settings))
    command = [sys.executable, "bench/checkpoints.py", str(tmp_path / "baseline")]
    command += [str(tmp_path / "lever"), str(tmp_path / "none"), "--steps", "1"]
    command += ["--posts", "4", "--threads", "2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[2].rstrip(":"): line for line in result.stdout.splitlines()[1:]}
    assert rows["baseline"].count("(+0.000)") >= 4  # the baseline against itself
    assert rows["lever"].count("(") >= 4 and "no checkpoint" in rows["none"]


@pytest.mark.server
def test_load_bench_runs_each_layout_against_the_real_service(
    smollm2_gguf: Path, tmp_path: Path
) -> None:
    out = tmp_path / "load.json"
    command = [sys.executable, "bench/load.py", "--model", str(smollm2_gguf), "--clients", "4"]
    command += ["--duration", "3", "--layouts", "1x2/b1", "2x1", "--goal-layout", "2x1"]
    command += ["--goal-ok", "0", "--goal-speedup", "0", "--json", str(out)]
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=240)
    results = json.loads(out.read_text())
    assert [run["layout"] for run in results["runs"]] == ["1x2/b1", "2x1"]
    for run in results["runs"]:
        status = run["status"]
        assert status["200"] > 0
        assert status["other"] == {}
        assert status["transport_errors"] == status["timeouts"] == 0
        assert run["sent"] >= status["200"] + status["503"]
        assert run["throughput_rps"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["alive"] == {"healthz": True, "classify": True}
        assert run["passed"]
    assert len(results["runs"][1]["worker_cpu_s"]) == 2
    assert results["throughput_vs_baseline"]["1x2/b1"] == 1.0
    assert results["throughput_vs_baseline"]["2x1"] > 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("2x1", (2, 1, None)), ("1x2/b1", (1, 2, 1)), ("4x1/b16", (4, 1, 16))],
)
def test_load_bench_layouts_parse(spec: str, expected: tuple) -> None:
    layout = load_bench.Layout.parse(spec)
    assert (layout.workers, layout.threads, layout.model_batch) == expected
    assert str(layout) == spec


@pytest.mark.parametrize("spec", ["0x2", "2x0", "1x2/b0", "2", "x", "1x2/bx"])
def test_load_bench_refuses_a_bad_layout(spec: str) -> None:
    with pytest.raises(ValueError):
        load_bench.Layout.parse(spec)


def test_worker_bench_runs_one_and_two_workers_on_a_real_redis(
    smollm2_gguf: Path, tmp_path: Path
) -> None:
    redis_server_or_skip()
    out = tmp_path / "worker.json"
    command = [sys.executable, "bench/worker.py", "--model", str(smollm2_gguf), "--posts", "6"]
    command += ["--workers", "1", "2", "--threads", "1", "--timeout", "120", "--json", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "posts/s 2 vs 1 worker(s)" in result.stdout
    report = json.loads(out.read_text())
    assert [run["workers"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["posts"] == 6 and run["posts_per_s"] > 0
    assert report["rate_vs_baseline"]["1"] == 1.0
