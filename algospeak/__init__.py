"""Algospeak core: taxonomy, lexicon and the normalizer. No web, torch or llama-cpp imports here."""

from algospeak.lexicon import Entry, Lexicon, LexiconError, load_lexicon
from algospeak.normalizer import Candidate, Normalization, Normalizer, Span, normalize
from algospeak.policy import Policy, PolicyError, load_policy
from algospeak.taxonomy import CATEGORIES, HARM_CATEGORIES, LABELS, SEVERITIES

__version__ = "0.1.0"

__all__ = [
    "CATEGORIES",
    "HARM_CATEGORIES",
    "LABELS",
    "SEVERITIES",
    "Candidate",
    "Entry",
    "Lexicon",
    "LexiconError",
    "Normalization",
    "Normalizer",
    "Policy",
    "PolicyError",
    "Span",
    "__version__",
    "load_lexicon",
    "load_policy",
    "normalize",
]
