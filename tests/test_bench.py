"""The benchmark script runs (its figures are for `make bench`, not for a unit test)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def test_classify_bench_runs_against_a_real_server(smollm2_gguf) -> None:
    command = [sys.executable, "bench/classify.py", "--model", str(smollm2_gguf), "--rounds", "1"]
    command += ["--texts", "2", "--threads", "2", "--port", "8761"]
    command += ["--goal-speedup", "0", "--goal-overhead", "1000"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "speed-up vs do-it-yourself" in result.stdout
    assert "engine overhead" in result.stdout


def test_train_bench_measures_the_preset(smollm2_gguf) -> None:
    command = [sys.executable, "bench/train.py", "--steps", "2", "--batch", "1"]
    command += ["--variants", "preset,all-layers"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "all-layers" in result.stdout.split("vs preset")[-1]
