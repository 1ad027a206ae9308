"""A seeded, reproducible dataset builder for the algospeak classifier.

``python -m training.dataset build --out DIR [--seed 13] [--size 6000] [--extra FILE ...]
[--reasons]`` writes ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` and ``card.md``.

Posts come from template *families* (``training/templates.yaml``), each with one labelling
rule, whose ``{code}`` slot is filled with a lexicon variant, possibly obfuscated by the small
pure functions of ``obfuscation``. Each example also carries a short reason (from its
family's ``reason``, its code and that code's meaning); with ``--reasons`` the chat answer
ends with it as the contract's reason line. Whole families and ~10% of the lexicon entries
used are held out of train, so the test split (only examples with an unseen family or entry)
measures generalization. Posts written by hand (``training/handwritten/train.yaml``: real-sounding
and ordinary posts that templates do not produce) are added to train only, each
``HANDWRITTEN_REPEATS`` times. Prompts and answers come only from :mod:`algospeak.prompt`, so the
training text is the served text by construction. Pure Python: no torch here.

Modules: ``examples`` (the example, the splits, the error), ``obfuscation`` (disguises),
``templates`` (families and the posts they generate), ``build`` (sampling and splitting),
``user_data`` (extra CSV/JSONL rows), ``writing`` (records and the card), ``cli``.
"""

from training.dataset.build import (
    DEFAULT_SEED,
    DEFAULT_SIZE,
    DEV_SEEN_SHARE,
    HANDWRITTEN_REPEATS,
    HANDWRITTEN_TRAIN,
    HELD_OUT_ENTRY_SHARE,
    TEST_UNSEEN_SHARE,
    build,
)
from training.dataset.cli import main
from training.dataset.examples import SPLITS, USER_FAMILY, DatasetError, Example, Splits
from training.dataset.obfuscation import (
    OBFUSCATION_NAMES,
    OBFUSCATIONS,
    alternating_case,
    disguise,
    elongation,
    homoglyph,
    invisible,
    leetspeak,
    masking,
    obfuscate,
    spacing,
)
from training.dataset.templates import TEMPLATES, load_templates
from training.dataset.user_data import load_extra, load_handwritten
from training.dataset.writing import card_text, record, write

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SIZE",
    "DEV_SEEN_SHARE",
    "HANDWRITTEN_REPEATS",
    "HANDWRITTEN_TRAIN",
    "HELD_OUT_ENTRY_SHARE",
    "OBFUSCATIONS",
    "OBFUSCATION_NAMES",
    "SPLITS",
    "TEMPLATES",
    "TEST_UNSEEN_SHARE",
    "USER_FAMILY",
    "DatasetError",
    "Example",
    "Splits",
    "alternating_case",
    "build",
    "card_text",
    "disguise",
    "elongation",
    "homoglyph",
    "invisible",
    "leetspeak",
    "load_extra",
    "load_handwritten",
    "load_templates",
    "main",
    "masking",
    "obfuscate",
    "record",
    "spacing",
    "write",
]
