"""Table-driven normalizer cases (tests/data/normalizer_cases.yaml): every category, every
disguise, and ordinary text that must come out untouched."""

from pathlib import Path

import pytest
import yaml

from algospeak import HARM_CATEGORIES, normalize

CASES = yaml.safe_load(
    (Path(__file__).parent / "data" / "normalizer_cases.yaml").read_text("utf-8")
)


@pytest.mark.parametrize(("text", "expected", "rule", "categories"), CASES["decoded"])
def test_decoded(text: str, expected: str, rule: str, categories: str) -> None:
    result = normalize(text)
    assert result.normalized == expected
    assert result.changed
    decoded = [s for s in result.spans if s.entry is not None]
    assert any(set(rule.split("+")) <= set(s.rule.split("+")) for s in decoded), result.spans
    assert {s.category for s in decoded} == set(categories.split("+"))
    for span in result.spans:
        assert text[span.start : span.end] == span.original


@pytest.mark.parametrize("text", CASES["unchanged"])
def test_unchanged(text: str) -> None:
    result = normalize(text)
    assert result.normalized == text
    assert not result.changed
    assert result.spans == ()


@pytest.mark.parametrize(("text", "code"), CASES["candidates"])
def test_ambiguous_codes_without_context_are_candidates(text: str, code: str) -> None:
    result = normalize(text)
    assert result.normalized == text
    candidate = next(c for c in result.candidates if c.original == code)
    assert text[candidate.start : candidate.end] == code
    assert candidate.meaning and candidate.reason


@pytest.mark.parametrize(("text", "original", "replacement", "rule"), CASES["words"])
def test_ordinary_words_in_disguise_carry_no_harm_category(
    text: str, original: str, replacement: str, rule: str
) -> None:
    span = next(s for s in normalize(text).spans if s.original == original)
    assert (span.replacement, span.rule, span.category, span.entry) == (
        replacement,
        rule,
        "none",
        None,
    )


def test_table_covers_every_category_and_disguise() -> None:
    categories = {c for row in CASES["decoded"] for c in row[3].split("+")}
    assert categories == set(HARM_CATEGORIES)
    rules = {r for row in CASES["decoded"] for r in row[2].split("+")}
    disguises = {"spacing", "joined", "leetspeak", "masking", "elongation", "homoglyph"}
    disguises |= {"compatibility", "invisible", "combining", "lexicon"}
    assert disguises <= rules
    assert len(CASES["unchanged"]) >= 40
    assert sum(len(rows) for rows in CASES.values()) >= 150
