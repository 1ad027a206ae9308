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
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)


def test_the_colab_preset_is_qlora_and_the_cpu_preset_plain_lora() -> None:
    # bench/train.py: NF4 layers are ~3x slower than plain LoRA on a CPU.
    assert load_config(PRESETS / "qwen2.5-3b-colab.yaml").load_in_4bit
    assert not load_config(PRESETS / "smollm2-135m-cpu.yaml").load_in_4bit


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
        (["resume=true"], "save_steps"),
        (["lora_layers=0"], "lora_layers"),
        (["save_steps=-1"], "save_steps"),
    ],
)
def test_inconsistent_configs_are_rejected_with_a_reason(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_plain_lora_on_mps_is_allowed() -> None:
    assert load_config(None, ["device=mps", "load_in_4bit=false"]).device == "mps"


def test_only_the_colab_preset_trains_reasons() -> None:
    # The CPU preset's budget is the default model's: reason lines would lengthen every target.
    assert load_config(PRESETS / "qwen2.5-3b-colab.yaml").train_reasons
    assert not load_config(PRESETS / "smollm2-135m-cpu.yaml").train_reasons
    assert not TrainConfig().train_reasons


def test_train_reasons_puts_the_reason_line_in_the_completion(tmp_path: Path) -> None:
    from algospeak.prompt import format_answer, parse_answer_and_reason
    from training.dataset import build, write
    from training.train import examples

    splits = build(seed=13, size=40)
    plain = write(splits, tmp_path / "plain")
    reasoned = write(splits, tmp_path / "reasons", reasons=True)
    rows = [json.loads(line) for line in plain["train"].read_text().splitlines()]
    for path in (plain["train"], reasoned["train"]):  # whatever the dataset was built with
        with_reasons = examples(path, reasons=True)
        without = examples(path)
        for row, on, off in zip(rows, with_reasons, without, strict=True):
            answer, _ = parse_answer_and_reason(row["response"])
            assert on["completion"] == [
                {"role": "assistant", "content": format_answer(answer, row["reason"])}
            ]
            assert off["completion"] == [{"role": "assistant", "content": row["response"]}]
            assert on["prompt"] == off["prompt"] == row["messages"][:-1]


def test_train_reasons_needs_reasons_in_the_dataset(tmp_path: Path) -> None:
    from training.dataset import build, write
    from training.train import examples

    path = write(build(seed=13, size=20), tmp_path)["train"]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r | {"reason": ""}) + "\n" for r in rows))
    assert len(examples(path)) == len(rows)
    with pytest.raises(ConfigError, match="needs a 'reason'"):
        examples(path, reasons=True)


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


def test_a_tiny_model_learns_and_its_adapter_changes_the_output(tmp_path: Path, smollm2_hf) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny_models import tiny_base
    from training.dataset import build, write
    from training.train import main

    write(build(seed=3, size=400), tmp_path / "data")
    base = tiny_base("llama", smollm2_hf, tmp_path / "tiny")
    config = TrainConfig(
        base=str(base),
        dataset=tmp_path / "data",
        output_dir=tmp_path / "run",
        load_in_4bit=False,
        learning_rate=5e-3,
        max_steps=8,
        batch_size=2,
        max_examples=2,  # the same two examples every step: the loss must fall
        logging_steps=1,
        device="cpu",
    )
    adapter = main(config)
    run = json.loads((adapter / "run.json").read_text())
    losses = [entry["loss"] for entry in run["log"] if "loss" in entry]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0]
    assert run["dataset_sha256"] and run["versions"]["peft"]
    assert (adapter / "tokenizer.json").is_file()

    tokenizer = AutoTokenizer.from_pretrained(adapter)
    ids = tokenizer("Label: harmful, Category:", return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        before = model(ids).logits
        after = PeftModel.from_pretrained(model, adapter)(ids).logits
    assert (after - before).abs().max() > 0.1


def test_training_resumes_from_its_last_checkpoint(tmp_path: Path, smollm2_hf) -> None:
    from tests.tiny_models import tiny_base
    from training.dataset import build, write
    from training.train import main

    write(build(seed=3, size=400), tmp_path / "data")
    settings = dict(
        base=str(tiny_base("llama", smollm2_hf, tmp_path / "tiny")),
        dataset=tmp_path / "data",
        output_dir=tmp_path / "run",
        load_in_4bit=False,
        batch_size=2,
        max_examples=8,
        save_steps=2,
        logging_steps=1,
        device="cpu",
    )
    first = json.loads((main(TrainConfig(max_steps=2, **settings)) / "run.json").read_text())
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    adapter = main(TrainConfig(max_steps=4, resume=True, **settings))
    run = json.loads((adapter / "run.json").read_text())
    assert run["resumed_from"].endswith("checkpoint-2")
    steps = [entry for entry in run["log"] if "loss" in entry]
    # Steps 1-2 come back from the checkpoint as they were logged; only 3-4 were trained again.
    assert [entry["step"] for entry in steps] == [1, 2, 3, 4]
    assert steps[:2] == [entry for entry in first["log"] if "loss" in entry]
    # Resuming the finished run trains nothing more (no checkpoint-5) and keeps its adapter.
    before = (adapter / "run.json").read_bytes()
    assert main(TrainConfig(max_steps=4, resume=True, **settings)) == adapter
    assert not (tmp_path / "run" / "checkpoint-5").exists()
    assert (adapter / "run.json").read_bytes() == before
