"""Check a GGUF against the Hugging Face model it came from, through the serving path.

The GGUF is scored by ``service.engine.Engine`` (what the service runs) and the HF model by
``training.hf_scorer.HFScorer`` (the same prompt, tokens and arithmetic), on a sample of texts.
Quantization moves probabilities a little; a conversion bug (wrong tokenizer, chat template,
architecture mapping) moves answers. So the check is label agreement, with category agreement
and the largest difference in P(harmful) reported next to it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from algospeak import normalize
from artifacts import manifest
from conversion.errors import ConversionError
from conversion.gguf_file import metadata
from service.engine import Engine
from training.dataset import build
from training.hf_scorer import HFScorer

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.95
DEFAULT_SAMPLES = 32
_SEED = 7


@dataclass(frozen=True, slots=True)
class Row:
    """One text's answers from both sides."""

    text: str
    hf_label: str
    gguf_label: str
    hf_category: str
    gguf_category: str
    hf_harmful: float
    gguf_harmful: float


@dataclass(frozen=True, slots=True)
class Report:
    """Agreement between the GGUF and its HF reference; ``passed`` if the label agreement
    reaches ``threshold``."""

    gguf: str
    reference: str
    samples: int
    label_agreement: float
    category_agreement: float
    max_label_diff: float  # largest |P_hf(harmful) - P_gguf(harmful)|
    mean_label_diff: float
    threshold: float
    passed: bool
    metadata: dict[str, str]
    seconds: float
    rows: list[Row] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The report without its rows (what the manifest keeps)."""
        return {k: v for k, v in asdict(self).items() if k != "rows"}


def check_metadata(gguf: Path) -> dict[str, str]:
    """The metadata the service depends on, read by llama-cpp-python; ConversionError if the
    architecture or the chat template is missing or the pre-tokenizer is unset (llama.cpp
    would then split text differently from the tokenizer the model was trained with)."""
    values = metadata(gguf)
    wanted = ("general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre")
    found = {key: values.get(key, "") for key in wanted}
    found["tokenizer.chat_template"] = "present" if values.get("tokenizer.chat_template") else ""
    found["general.file_type"] = values.get("general.file_type", "")
    problems = [key for key in (*wanted, "tokenizer.chat_template") if not found[key]]
    if found["tokenizer.ggml.model"] == "gpt2" and found["tokenizer.ggml.pre"] == "default":
        problems.append("tokenizer.ggml.pre (BPE vocabulary with the default pre-tokenizer)")
    if problems:
        raise ConversionError(
            f"{gguf} lacks {', '.join(problems)}: convert it again from a Hugging Face folder "
            "that has tokenizer.json and a chat template (python -m conversion convert)"
        )
    return found


def sample_texts(count: int = DEFAULT_SAMPLES, data: Path | None = None) -> list[str]:
    """``count`` texts, half harmful and half safe where possible: from a dataset split
    (JSONL with ``text`` and ``label``) or, by default, from the built-in dataset's test and
    dev splits (held-out families). The same arguments always give the same texts."""
    if data is not None:
        with Path(data).open(encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        pairs = [(r["text"], r.get("label", "")) for r in records]
    else:
        splits = build(seed=_SEED, size=400)
        pairs = [(e.text, e.label) for e in splits.test + splits.dev]
    rng = random.Random(_SEED)
    rng.shuffle(pairs)
    harmful = [t for t, label in pairs if label == "harmful"]
    others = [t for t, label in pairs if label != "harmful"]
    texts = [t for pair in zip(harmful, others, strict=False) for t in pair]
    texts += harmful[len(others) :] + others[len(harmful) :]
    return texts[:count]


def verify(
    gguf: Path,
    reference: Path | str | Any,
    *,
    adapter: Path | None = None,
    texts: list[str] | None = None,
    samples: int = DEFAULT_SAMPLES,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int | None = None,
    device: str = "cpu",
) -> Report:
    """Compare ``gguf`` with ``reference`` (a merged HF folder, the base when ``adapter`` is
    given, or a ready ``HFScorer`` to reuse across files) on ``texts`` (default
    :func:`sample_texts`), record the summary in the manifest next to ``gguf`` (when the
    conversion wrote one there) and return the report. ConversionError if the metadata is
    incomplete; a low agreement is reported (``passed`` false), not raised."""
    gguf = Path(gguf)
    started = time.monotonic()
    found = check_metadata(gguf)
    texts = texts if texts is not None else sample_texts(samples)
    threads = threads or os.cpu_count() or 1
    log.info("verifying %s against %s on %d texts", gguf.name, reference, len(texts))
    scorer = (
        reference
        if isinstance(reference, HFScorer)
        else HFScorer(
            reference,
            adapter=adapter,
            device=device,
            threads=threads,
            # fp32 on the CPU (bf16 matmuls are slow there); the stored precision on a GPU, where
            # a 3B model in fp32 would not fit next to the rest of a Colab session.
            dtype="float32" if device == "cpu" else "auto",
        )
    )
    engine = Engine(gguf, threads=threads)
    rows = []
    try:
        from tqdm import tqdm

        for text in tqdm(texts, desc=f"verifying {gguf.name}", unit="text"):
            normalization = normalize(text)
            hf = scorer.classify(text, normalization)
            served = engine.classify(text, normalization)
            rows.append(
                Row(
                    text=text,
                    hf_label=hf.label,
                    gguf_label=served.label,
                    hf_category=hf.category,
                    gguf_category=served.category,
                    hf_harmful=hf.label_scores["harmful"],
                    gguf_harmful=served.label_scores["harmful"],
                )
            )
    finally:
        engine.close()
    diffs = [abs(r.hf_harmful - r.gguf_harmful) for r in rows] or [0.0]
    labels = sum(r.hf_label == r.gguf_label for r in rows) / max(len(rows), 1)
    report = Report(
        gguf=str(gguf),
        reference=scorer.source,
        samples=len(rows),
        label_agreement=labels,
        category_agreement=sum(r.hf_category == r.gguf_category for r in rows) / max(len(rows), 1),
        max_label_diff=max(diffs),
        mean_label_diff=sum(diffs) / len(diffs),
        threshold=threshold,
        passed=labels >= threshold,
        metadata=found,
        seconds=round(time.monotonic() - started, 2),
        rows=rows,
    )
    if (gguf.parent / manifest.NAME).is_file():  # a file this package made, not a bare GGUF
        manifest.annotate(gguf, "verify", report.summary())
    log.info(
        "%s: label agreement %.1f%%, category agreement %.1f%%, max |dP(harmful)| %.4f",
        gguf.name,
        100 * report.label_agreement,
        100 * report.category_agreement,
        report.max_label_diff,
    )
    return report
