"""Training configuration: a dataclass, YAML presets (``training/configs``) and CLI overrides."""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

DEVICES = ("auto", "cuda", "mps", "cpu")
PRESETS = Path(__file__).with_name("configs")  # the shipped YAML presets, by file name


class ConfigError(ValueError):
    """An inconsistent or malformed training configuration; the message says what to change."""


@dataclass
class TrainConfig:
    """Everything one fine-tuning run needs. The defaults are the original design's QLoRA."""

    base: str = "smollm2-135m-instruct"  # a catalog name, a Hugging Face id or a local folder
    dataset: Path = Path("models/dataset")  # folder with train.jsonl (and dev.jsonl)
    output_dir: Path = Path("models/runs/smollm2-135m-cpu")
    load_in_4bit: bool = True  # QLoRA: NF4 base with double quantization; False: plain LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    lora_layers: int | None = None  # LoRA in the last N transformer layers only; None: all
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 256
    max_examples: int | None = None  # use only the first N training examples
    seed: int = 13
    device: str = "auto"
    bf16: bool | None = None  # None: bf16 compute on GPUs that support it, else fp32
    logging_steps: int = 10
    gradient_checkpointing: bool = False  # saves GPU memory for large bases; costs ~30% speed
    completion_only_loss: bool = True  # loss on the answer only; False: on the whole sequence
    # Also train the answer's reason line (from each record's "reason"), so the model can
    # explain itself when asked; longer targets, so more training time.
    train_reasons: bool = False
    lr_scheduler: str = "linear"  # transformers' schedule names: linear, cosine, constant...
    warmup_steps: int = 0
    save_steps: int = 0  # > 0: write a checkpoint every N steps (needed to resume)
    save_total_limit: int | None = 2  # checkpoints kept; None: all (for learning curves)
    resume: bool = False  # continue from the newest checkpoint in output_dir
    push_to_hub: str | None = None  # a Hugging Face repo id to upload the adapter to

    def validate(self) -> TrainConfig:
        """Reject settings that cannot work together; returns self."""
        problems = []
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.device == "mps" and self.load_in_4bit:
            problems.append("bitsandbytes 4-bit does not run on Apple MPS: set load_in_4bit=false")
        if self.lora_r <= 0 or self.lora_alpha <= 0:
            problems.append("lora_r and lora_alpha must be positive")
        if not 0 <= self.lora_dropout < 1:
            problems.append("lora_dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if self.max_steps <= 0 and self.epochs <= 0:
            problems.append("set a positive epochs or max_steps")
        if self.batch_size <= 0 or self.gradient_accumulation <= 0:
            problems.append("batch_size and gradient_accumulation must be positive")
        if self.max_length < 64:
            problems.append("max_length under 64 tokens cannot hold the prompt and the answer")
        if self.max_examples is not None and self.max_examples <= 0:
            problems.append("max_examples must be positive when set")
        if self.lora_layers is not None and self.lora_layers <= 0:
            problems.append("lora_layers must be positive when set")
        if self.save_steps < 0:
            problems.append("save_steps must be 0 (no checkpoints) or positive")
        if self.resume and self.save_steps == 0:
            problems.append("resume needs checkpoints: set save_steps > 0")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        return self


def load_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    """The preset at ``path`` (YAML) with ``key=value`` overrides applied, validated."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config is a mapping of settings")
        values.update(loaded)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ConfigError(f"override {override!r} is not key=value")
        values[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    return _build(values)


def _build(values: dict[str, Any]) -> TrainConfig:
    hints = get_type_hints(TrainConfig)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown settings {unknown}; known: {sorted(known)}")
    return TrainConfig(**{k: _coerce(k, v, hints[k]) for k, v in values.items()}).validate()


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """YAML already typed the value; check it against the field and convert paths."""
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is Path and isinstance(value, str):
            return Path(value)
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if get_origin(option) is list and isinstance(value, list):
            return value
        if isinstance(option, type) and isinstance(value, option):
            if option is int and isinstance(value, bool):
                continue
            return value
    raise ConfigError(f"setting {name!r}: {value!r} is not a {hint}")
