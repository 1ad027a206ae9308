"""The built-in lexicon is complete enough, and bad lexicons fail with the entry named."""

from pathlib import Path

import pytest

from algospeak import HARM_CATEGORIES, Lexicon, LexiconError, load_lexicon


def test_builtin_lexicon_size_and_coverage() -> None:
    lexicon = load_lexicon()
    assert len(lexicon.codes) >= 300
    by_category = lexicon.size_by_category()
    assert set(by_category) == set(HARM_CATEGORIES)
    assert all(count >= 20 for count in by_category.values()), by_category
    assert len(lexicon.terms) >= 40
    assert any(e.ambiguous for e in lexicon.codes)
    assert lexicon.version and len(lexicon.sha256) == 64


@pytest.mark.parametrize(
    "variant",
    [
        "unalive",
        "unalived",
        "unaliving",
        "sewer slide",
        "self delete",
        "kms",
        "kys",
        "s/h",
        "seggs",
        "shmex",
        "corn",
        "🌽",
        "cornography",
        "accountant",
        "spicy accountant",
        "nip nops",
        "le$bean",
        "le dollar bean",
        "yt",
        "grape",
        "pew pew",
        "pdf file",
        "cheese pizza",
        "ouid",
        "snow",
        "percs",
        "zannies",
        "f3nt",
        "🍆",
        "🍑",
        "🔫",
        "💊",
        "❄",
        "🍄",
    ],
)
def test_builtin_lexicon_has_the_documented_codes(variant: str) -> None:
    spellings = {v for entry in load_lexicon().codes for v in entry.variants}
    assert variant in spellings


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "lexicon.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD_CODE = """
  - id: unalive
    category: violence
    meaning: kill
    variants: [unalive]
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("version: '1'\ncodes: [", "not valid YAML"),
        ("- just a list", "top level"),
        ("codes: []", "'version'"),
        ("version: '1'\nwords: []", "unknown top-level"),
        (
            "version: '1'\ncodes:" + GOOD_CODE + "  - id: corn\n    category: porn\n"
            "    meaning: porn\n    variants: [corn]\n",
            "codes[1] ('corn'): category 'porn'",
        ),
        (
            "version: '1'\ncodes:\n  - id: corn\n    category: sexual\n    meaning: porn\n"
            "    variants: [corn]\n    ambiguous: true\n",
            "codes[0] ('corn'): an ambiguous code needs 'cues'",
        ),
        (
            "version: '1'\ncodes:" + GOOD_CODE + "  - id: kill_again\n    category: violence\n"
            "    meaning: kill\n    variants: [unalive]\n",
            "'unalive' of 'kill_again' already belongs to 'unalive'",
        ),
        (
            "version: '1'\ncodes:\n  - id: x\n    category: sexual\n    meaning: Porn!\n"
            "    variants: [corn]\n",
            "codes[0] ('x'): 'meaning' must be plain lowercase words",
        ),
        (
            "version: '1'\ncodes:\n  - id: x\n    category: sexual\n    meaning: porn\n"
            "    variants: [Corn]\n",
            "codes[0] ('x'): 'variants' entry 'Corn' must be lowercase",
        ),
        (
            "version: '1'\ncodes:\n  - id: x\n    category: sexual\n    meaning: porn\n"
            "    variants: [corn]\n    colour: red\n",
            "codes[0] ('x'): unknown keys ['colour']",
        ),
        (
            "version: '1'\ncodes:" + GOOD_CODE + "  - id: loop\n    category: violence\n"
            "    meaning: unalive now\n    variants: [unalive now please]\n",
            "replacement 'unalive now' contains the code 'unalive'",
        ),
        (
            "version: '1'\ncodes:" + GOOD_CODE + "  - id: corn\n    category: sexual\n"
            "    meaning: porn\n    variants: [corn]\n    ambiguous: true\n    cues: [content]\n"
            "    against: [unalive fans]\n",
            "against-cue 'unalive fans' matches the code 'unalive'",
        ),
        (
            "version: '1'\nterms:\n  - id: kill\n    category: violence\n    variants: [k]\n",
            "too short",
        ),
        (
            "version: '1'\ncodes:\n  - id: x\n    category: sexual\n    meaning: porn\n"
            "    variants: [corn]\n    ambiguous: true\n    cues: ['@nowhere']\n",
            "codes[0] ('x'): unknown context '@nowhere' (known: none)",
        ),
        (
            "version: '1'\ncontexts:\n  weather: []\ncodes:" + GOOD_CODE,
            "contexts.weather: 'cues' must be a non-empty list",
        ),
        (
            "version: '1'\ncodes:\n  - id: x\n    category: sexual\n    meaning: porn\n"
            "    verb: Unalive!\n    variants: [corn]\n",
            "codes[0] ('x'): 'verb' must be plain lowercase words",
        ),
    ],
)
def test_bad_lexicons_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(LexiconError) as error:
        Lexicon.from_file(write(tmp_path, body))
    assert message in str(error.value)


def test_missing_lexicon_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="cannot read lexicon"):
        Lexicon.from_file(tmp_path / "absent.yaml")


def test_named_contexts_expand_where_entries_refer_to_them(tmp_path: Path) -> None:
    body = (
        "version: '1'\ncontexts:\n  weather: [forecast, 'storm*']\n  threat: [watch your back]\n"
        "codes:\n  - id: snow\n    category: drugs\n    meaning: cocaine\n    variants: [snow]\n"
        "    ambiguous: true\n    cues: [bump, '@threat']\n    against: ['@weather', forecast]\n"
    )
    (entry,) = Lexicon.from_file(write(tmp_path, body)).codes
    assert entry.cues == ("bump", "watch your back")
    assert entry.against == ("forecast", "storm*")  # duplicates dropped, order kept


def test_a_valid_custom_lexicon_loads(tmp_path: Path) -> None:
    lexicon = Lexicon.from_file(write(tmp_path, "version: '9'\ncodes:" + GOOD_CODE))
    assert lexicon.version == "9"
    assert lexicon.codes[0].meaning == "kill"
