"""Tiny randomly initialised models with a real tokenizer, for training and conversion tests
that need real weights but not a real model's cost."""

from __future__ import annotations

from pathlib import Path


def tiny_base(arch: str, tokenizer_from: Path, out: Path) -> Path:
    """A randomly initialised ``arch`` ("llama" or "qwen2") model saved in ``out`` with the
    tokenizer (and chat template) in ``tokenizer_from``."""
    import torch
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    width = {"llama": 256, "qwen2": 64}[arch]
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**settings))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**settings))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
