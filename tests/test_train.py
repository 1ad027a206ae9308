"""Training configuration, and one real QLoRA step on the SmolLM2 base (CPU, 4-bit NF4)."""

import json
import math
from pathlib import Path

import pytest

from training.config import ConfigError, TrainConfig, load_config

PRESETS = Path(__file__).resolve().parent.parent / "training" / "configs"


@pytest.mark.parametrize("preset", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_presets_load_and_validate(preset: Path) -> None:
    config = load_config(preset)
    assert config.load_in_4bit
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)


def test_overrides_are_typed() -> None:
    config = load_config(PRESETS / "smollm2-135m-cpu.yaml", ["max_steps=5", "dataset=/tmp/x"])
    assert config.max_steps == 5
    assert config.dataset == Path("/tmp/x")
    assert load_config(None, ["epochs=2"]).epochs == 2.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["device=mps"], "Apple MPS"),
        (["lora_r=0"], "lora_r"),
        (["lora_dropout=1.5"], "lora_dropout"),
        (["max_length=10"], "max_length"),
        (["device=tpu"], "device must be"),
        (["colour=red"], "unknown settings"),
        (["max_steps=lots"], "max_steps"),
        (["nonsense"], "key=value"),
    ],
)
def test_inconsistent_configs_are_rejected_with_a_reason(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_plain_lora_on_mps_is_allowed() -> None:
    assert load_config(None, ["device=mps", "load_in_4bit=false"]).device == "mps"


def test_one_real_qlora_step_on_the_cpu_saves_an_adapter(tmp_path: Path, smollm2_gguf) -> None:
    from training.dataset import build, write
    from training.train import main

    write(build(seed=3, size=400), tmp_path / "data")
    config = TrainConfig(
        dataset=tmp_path / "data",
        output_dir=tmp_path / "run",
        max_steps=1,
        batch_size=2,
        max_examples=2,
        max_length=256,
        logging_steps=1,
        device="cpu",
    )
    adapter = main(config)
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    lora = json.loads((adapter / "adapter_config.json").read_text())
    assert (lora["r"], lora["lora_alpha"], lora["lora_dropout"]) == (16, 32, 0.05)
    run = json.loads((adapter / "run.json").read_text())
    losses = [entry["loss"] for entry in run["log"] if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert run["device"] == "cpu" and run["config"]["load_in_4bit"] is True
