"""How context decides an ambiguous code: cues, vetoes, neighbours, disguise."""

import pytest

from algospeak import Lexicon, Normalizer, normalize


def decoded(text: str) -> str:
    return normalize(text).normalized


def test_a_cue_in_the_same_sentence_licenses_the_code() -> None:
    result = normalize("new corn drop for subscribers")
    assert result.normalized == "new porn drop for subscribers"
    assert result.candidates == ()


def test_a_cue_in_the_neighbouring_sentence_counts_but_not_further_away() -> None:
    assert decoded("Link in bio. New corn tonight.") == "Link in bio. New porn tonight."
    far = "Link in bio. Nice weather. Great day. New corn tonight."
    result = normalize(far)
    assert result.normalized == far
    assert [c.original for c in result.candidates] == ["corn"]
    assert "no nearby context" in result.candidates[0].reason


def test_an_against_cue_vetoes_even_when_a_cue_is_present() -> None:
    result = normalize("new corn drop, grilled on the cob")
    assert not result.changed
    assert "ordinary meaning" in result.candidates[0].reason


def test_another_code_of_the_same_category_licenses_the_code() -> None:
    assert decoded("seggs and corn tonight") == "sex and porn tonight"


def test_a_plain_word_of_the_category_does_not_license_a_common_word() -> None:
    # "sex" is plain speech, not evasion: "corn" next to it stays a candidate.
    result = normalize("sex ed class, then corn for lunch")
    assert "corn" in result.normalized
    assert any(c.original == "corn" for c in result.candidates)


def test_writing_an_ambiguous_code_in_disguise_is_itself_evidence() -> None:
    result = normalize("grilled c0rn tonight")
    assert result.normalized == "grilled porn tonight"
    assert result.spans[0].rule == "lexicon+leetspeak"


def test_unambiguous_codes_need_no_context() -> None:
    assert decoded("cornography") == "pornography"


def test_candidates_carry_meaning_category_and_entry() -> None:
    (candidate,) = normalize("I'm a certified accountant").candidates
    assert candidate.original == "accountant"
    assert candidate.meaning == "sex worker"
    assert candidate.category == "sexual"
    assert candidate.entry == "accountant"
    assert "certified" in candidate.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("new🌽drop for subscribers", "new porn drop for subscribers"),
        ("🍆🍑 content dm me", "penis butt content dm me"),
        ("proud le$bean here 🏳️‍🌈", "proud lesbian here 🏳️‍🌈"),
    ],
)
def test_decoded_words_never_fuse_and_emoji_sequences_stay_whole(text: str, expected: str) -> None:
    assert decoded(text) == expected


def test_a_custom_lexicon_can_be_used(tmp_path) -> None:
    path = tmp_path / "lexicon.yaml"
    path.write_text(
        "version: 'test'\n"
        "codes:\n"
        "  - id: bread\n    category: drugs\n    meaning: money\n    variants: [bread]\n"
        "    ambiguous: true\n    cues: [sell*]\n",
        encoding="utf-8",
    )
    normalizer = Normalizer(Lexicon.from_file(path))
    assert normalizer.normalize("selling for bread").normalized == "selling for money"
    assert not normalizer.normalize("fresh bread").changed
