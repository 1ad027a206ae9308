"""QLoRA fine-tuning: ``python -m training.train --config PRESET [key=value ...]``.

The base is loaded in 4-bit NF4 with double quantization (bitsandbytes; bf16 compute on GPUs
that support it), LoRA goes on all linear layers, and trl's ``SFTTrainer`` trains on
prompt/completion pairs built by the shared prompt contract, so the loss is on the answer only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from algospeak.prompt import format_answer, parse_answer_and_reason
from artifacts.hashing import sha256_of
from artifacts.manifest import tool_versions
from training.config import ConfigError, TrainConfig, load_config
from training.hf_base import resolve_base

logger = logging.getLogger(__name__)
# What a training run depends on, recorded in its run.json.
_LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate")


def pick_device(requested: str) -> str:
    """The device to train on: the requested one, or the best available for ``auto``."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def examples(
    path: Path, limit: int | None = None, *, reasons: bool = False
) -> list[dict[str, Any]]:
    """Prompt/completion records from a dataset split (JSONL with a ``messages`` field);
    each answer is checked against the contract. The completion is the answer line, followed
    by the reason line (from the record's ``reason``) exactly when ``reasons``."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            row = json.loads(line)
            messages = row["messages"]
            if messages[-1]["role"] != "assistant":
                raise ConfigError(f"{path}:{number}: the last message must be the answer")
            answer, written = parse_answer_and_reason(messages[-1]["content"])
            reason = (row.get("reason") or written) if reasons else None
            if reasons and not reason:
                raise ConfigError(f"{path}:{number}: train_reasons needs a 'reason' per record")
            completion = {"role": "assistant", "content": format_answer(answer, reason)}
            records.append({"prompt": messages[:-1], "completion": [completion]})
            if limit is not None and len(records) >= limit:
                break
    return records


def _check_lengths(records: list[dict[str, Any]], tokenizer: Any, max_length: int) -> None:
    """Fail early when max_length cuts answers off: trl would silently drop those examples."""
    lengths = [
        len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], return_dict=False))
        for r in records
    ]
    over = sum(length > max_length for length in lengths)
    if over == len(lengths):
        raise ConfigError(
            f"max_length={max_length} is shorter than every example (shortest {min(lengths)} "
            "tokens): raise max_length"
        )
    if over:
        logger.warning(
            "%d of %d examples exceed max_length=%d and lose their answer",
            over,
            len(lengths),
            max_length,
        )


def load_model(config: TrainConfig, device: str) -> tuple[Any, Any, bool]:
    """The base model (4-bit NF4 when ``config.load_in_4bit``) and its tokenizer on ``device``,
    and whether compute runs in bf16."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    bf16 = config.bf16
    if bf16 is None:
        # Measured on the 2-core development CPUs: bf16 compute was slower than fp32 there
        # (bench/train.py), so bf16 is the default only on GPUs that support it.
        bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    compute = torch.bfloat16 if bf16 else torch.float32
    base = resolve_base(config.base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    quantization = (
        BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        if config.load_in_4bit
        else None
    )
    model = AutoModelForCausalLM.from_pretrained(
        base, quantization_config=quantization, dtype=compute, device_map={"": device}
    )
    return model, tokenizer, bf16


@dataclass(frozen=True, slots=True)
class Setup:
    """A trainer ready to run, and the choices made for it."""

    trainer: Any  # trl.SFTTrainer
    device: str
    bf16: bool


def build_trainer(config: TrainConfig) -> Setup:
    """An ``SFTTrainer`` ready to train ``config`` (validated; the device resolved)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    config.validate()
    device = pick_device(config.device)
    if device == "mps" and config.load_in_4bit:
        logger.warning("4-bit needs CUDA or CPU: training plain LoRA on MPS")
        config.load_in_4bit = False
    model, tokenizer, bf16 = load_model(config, device)
    records = examples(
        config.dataset / "train.jsonl", config.max_examples, reasons=config.train_reasons
    )
    _check_lengths(records, tokenizer, config.max_length)
    args = SFTConfig(
        output_dir=str(config.output_dir),
        max_length=config.max_length,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        report_to=[],
        bf16=bf16 and device != "cpu",
        use_cpu=device == "cpu",
        seed=config.seed,
        completion_only_loss=config.completion_only_loss,
        gradient_checkpointing=config.gradient_checkpointing,
    )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=_targets(model, config),
        layers_to_transform=_last_layers(model, config.lora_layers),
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        peft_config=lora,
    )
    return Setup(trainer, device, bf16)


def _targets(model: Any, config: TrainConfig) -> str | list[str]:
    """peft's target modules; "all-linear" spelled out when only some layers are adapted
    (peft accepts ``layers_to_transform`` only with a list)."""
    if config.target_modules != ["all-linear"]:
        return config.target_modules
    if config.lora_layers is None:
        return "all-linear"
    import torch

    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
    )


def _last_layers(model: Any, count: int | None) -> list[int] | None:
    """Indices of the last ``count`` transformer layers (None: every layer). Gradients then
    stop below the lowest adapted layer, which is what makes this cheaper on a CPU."""
    if count is None:
        return None
    total = model.config.num_hidden_layers
    return list(range(max(total - count, 0), total))


def main(config: TrainConfig) -> Path:
    """Train an adapter as ``config`` says; returns the adapter folder, which holds the adapter,
    the tokenizer and ``run.json`` (config, dataset hash, library versions, metrics)."""
    from transformers.trainer_utils import get_last_checkpoint

    adapter = config.output_dir / "adapter"
    checkpoint = None
    if config.resume and config.output_dir.is_dir():
        checkpoint = get_last_checkpoint(str(config.output_dir))
    if config.resume and checkpoint is None:
        logger.warning("no checkpoint in %s: starting from the beginning", config.output_dir)
    # Resuming a finished run would train one step more (transformers), so a finished run
    # with its adapter saved is returned as it is.
    finished = checkpoint and 0 < config.max_steps <= int(checkpoint.rsplit("-", 1)[1])
    if finished and (adapter / "run.json").is_file():
        logger.info("%s finished at step %d: keeping it", config.output_dir, config.max_steps)
        return adapter
    setup = build_trainer(config)
    trainer = setup.trainer
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(adapter))
    trainer.processing_class.save_pretrained(str(adapter))
    run = {
        "base": config.base,
        "base_path": resolve_base(config.base),
        "device": setup.device,
        "bf16": setup.bf16,
        "resumed_from": checkpoint,
        "dataset_sha256": sha256_of(config.dataset / "train.jsonl"),
        "versions": tool_versions(_LIBRARIES),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "metrics": result.metrics,
        "log": trainer.state.log_history,
    }
    (adapter / "run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
    logger.info("adapter saved to %s", adapter)
    if config.push_to_hub:
        trainer.model.push_to_hub(config.push_to_hub)
        trainer.processing_class.push_to_hub(config.push_to_hub)
        logger.info("adapter pushed to https://huggingface.co/%s", config.push_to_hub)
    return adapter


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="QLoRA fine-tuning of the classifier.")
    parser.add_argument("--config", type=Path, help="a YAML preset from training/configs")
    parser.add_argument("--no-4bit", action="store_true", help="plain LoRA on an unquantized base")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the adapter to this repo")
    parser.add_argument("overrides", nargs="*", help="settings as key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides = [*args.overrides, *(["load_in_4bit=false"] if args.no_4bit else [])]
    overrides += ["resume=true"] if args.resume else []
    overrides += [f"push_to_hub={args.push_to_hub}"] if args.push_to_hub else []
    try:
        adapter = main(load_config(args.config, overrides))
    except ConfigError as exc:
        parser.error(str(exc))
    print(adapter)  # noqa: T201 - the CLI's result, for scripts
    return 0


if __name__ == "__main__":
    sys.exit(cli())
