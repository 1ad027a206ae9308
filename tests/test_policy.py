"""Platform policies in the core: what a policy file may say, how a bad one is named, and what
applying one does to the lexicon and the normalizer."""

import hashlib
from pathlib import Path

import pytest

from algospeak import Normalizer, Policy, PolicyError, load_lexicon, load_policy

POLICY = """\
version: "2026-11-28"
codes:
  - id: grape_juice
    category: drugs
    meaning: codeine syrup
    variants: [grape juice]
    ambiguous: true
    cues: [sip, pour, cup]
    note: "local slang for lean"
  - id: unsub_from_life
    category: self_harm
    meaning: commit suicide
    variants: [unsubscribe from life]
terms:
  - id: machete_term
    category: violence
    variants: [machete]
disable: [unalive]
thresholds:
  child_safety: {review: 0.2, block: 0.5}
  hate: {block: 0.8}
review: 0.4
block: 0.9
unmoderated: [drugs]
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_policy_loads_with_its_identity(tmp_path: Path) -> None:
    path = write(tmp_path, POLICY)
    policy = load_policy(path)
    assert policy.version == "2026-11-28"
    assert policy.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.source == "policy.yaml"
    assert [(e.id, e.kind) for e in policy.entries] == [
        ("grape_juice", "code"),
        ("unsub_from_life", "code"),
        ("machete_term", "term"),
    ]
    assert policy.disabled == ("unalive",)
    assert policy.thresholds == {
        "child_safety": {"review": 0.2, "block": 0.5},
        "hate": {"block": 0.8},
    }
    assert (policy.review, policy.block) == (0.4, 0.9)
    assert policy.unmoderated == {"drugs"}
    assert not policy.moderates("drugs") and policy.moderates("hate")


def test_a_minimal_policy_changes_nothing(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, 'version: "1"\n'))
    assert (policy.entries, policy.disabled, policy.thresholds) == ((), (), {})
    assert (policy.review, policy.block, policy.unmoderated) == (None, None, frozenset())
    lexicon = load_lexicon()
    assert policy.apply(lexicon).entries == lexicon.entries


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("- version: 1\n", ["top level must be a mapping"]),
        ('version: "1"\ncolour: red\n', ["unknown top-level keys ['colour']"]),
        ("codes: []\n", ["'version' must be a non-empty string"]),
        ("version: 2026-11-28\n", ["quote the version", '"2026-11-28"']),
        ('version: "1"\ncodes: [\n', ["not valid YAML"]),
        ('version: "1"\ndisable: corn\n', ["'disable' must be a list"]),
        ('version: "1"\ndisable: [corn, 3]\n', ["disable holds 3"]),
        (
            'version: "1"\nthresholds: {violense: {review: 0.2}}\n',
            ["thresholds.violense", "'violense'"],
        ),
        ('version: "1"\nthresholds: {none: {review: 0.2}}\n', ["thresholds.none", "not a harm"]),
        ('version: "1"\nthresholds: {hate: {block: 1.5}}\n', ["thresholds.hate.block", "1.5"]),
        ('version: "1"\nthresholds: {hate: {block: yes}}\n', ["thresholds.hate.block", "True"]),
        ('version: "1"\nthresholds: {hate: {warn: 0.3}}\n', ["thresholds.hate", "['warn']"]),
        ('version: "1"\nthresholds: {hate: 0.3}\n', ["thresholds.hate", "review and/or block"]),
        (
            'version: "1"\nthresholds: {hate: {review: 0.8, block: 0.5}}\n',
            ["thresholds.hate", "review 0.8 is above block 0.5"],
        ),
        (
            'version: "1"\nblock: 0.3\nthresholds: {hate: {review: 0.6}}\n',
            ["thresholds.hate", "review 0.6 is above block 0.3"],
        ),
        ('version: "1"\nreview: 0.9\nblock: 0.2\n', ["global thresholds", "review 0.9"]),
        ('version: "1"\nreview: -0.1\n', ["review: -0.1 is not a probability"]),
        ('version: "1"\nunmoderated: [drugs, none]\n', ["unmoderated", "'none'"]),
        ('version: "1"\nunmoderated: drugs\n', ["unmoderated", "must be a list"]),
        (
            'version: "1"\ncodes:\n  - {id: sip_sip, category: drug, meaning: lean,'
            " variants: [sip sip]}\n",
            ["codes[0] ('sip_sip')", "category 'drug'"],
        ),
        (
            'version: "1"\ncodes:\n  - {id: ok_one, category: drugs, meaning: lean,'
            " variants: [ok one]}\n  - {id: Bad-Id, category: drugs, meaning: lean,"
            " variants: [bad]}\n",
            ["codes[1] ('Bad-Id')", "'id' must match"],
        ),
        (
            'version: "1"\ncodes:\n  - {id: vague, category: drugs, meaning: lean,'
            " variants: [vague], ambiguous: true}\n",
            ["codes[0] ('vague')", "needs 'cues'"],
        ),
        ('version: "1"\nterms: [stabbing]\n', ["terms[0]", "must be a mapping"]),
    ],
)
def test_bad_policy_files_are_rejected_naming_the_bad_item(
    tmp_path: Path, body: str, needles: list[str]
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, body, "platform.yaml"))
    message = str(caught.value)
    assert message.startswith("platform.yaml: "), message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ('version: "1"\ndisable: [unalive, no_such_code]\n', ["cannot disable", "no_such_code"]),
        (
            'version: "1"\ncodes:\n  - {id: my_star, category: sexual, meaning: porn star,'
            " variants: [corn star]}\n",
            ["'corn star' of 'my_star' already belongs to 'corn_star'"],
        ),
        (
            'version: "1"\ncodes:\n  - {id: unalive, category: violence, meaning: kill,'
            " variants: [unalivez]}\n",
            ["id 'unalive' is used twice"],
        ),
        (
            'version: "1"\ncodes:\n  - {id: new_code, category: violence, meaning: unalive now,'
            " variants: [zorblax]}\n",
            ["'new_code'", "contains the code 'unalive'"],
        ),
    ],
)
def test_a_policy_that_clashes_with_the_lexicon_is_rejected_naming_the_entry(
    tmp_path: Path, body: str, needles: list[str]
) -> None:
    policy = load_policy(write(tmp_path, body))
    with pytest.raises(PolicyError) as caught:
        policy.apply(load_lexicon())
    message = str(caught.value)
    assert "policy.yaml" in message, message
    for needle in needles:
        assert needle in message, message


def test_a_missing_policy_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.yaml: cannot read policy"):
        load_policy(tmp_path / "nope.yaml")


@pytest.fixture(scope="module")
def policy_normalizer(tmp_path_factory: pytest.TempPathFactory) -> Normalizer:
    policy = load_policy(write(tmp_path_factory.mktemp("policy"), POLICY))
    return Normalizer(policy.apply(load_lexicon()))


def test_disabled_entries_no_longer_decode(policy_normalizer: Normalizer) -> None:
    text = "the character got unalive in episode 3"
    assert Normalizer().normalize(text).normalized == "the character got kill in episode 3"
    assert policy_normalizer.normalize(text).changed is False
    # Only the disabled entry is gone: its inflections were its own, other codes still decode.
    assert policy_normalizer.normalize("he said kys").normalized == "he said kill yourself"


def test_extra_codes_and_terms_decode(policy_normalizer: Normalizer) -> None:
    result = policy_normalizer.normalize("time to unsubscribe from life")
    assert result.normalized == "time to commit suicide"
    assert [(s.entry, s.category) for s in result.spans] == [("unsub_from_life", "self_harm")]
    assert policy_normalizer.normalize("m4chete").normalized == "machete"


def test_extra_ambiguous_codes_follow_their_cues(policy_normalizer: Normalizer) -> None:
    cued = policy_normalizer.normalize("pour me a cup of grape juice")
    assert cued.normalized == "pour me a cup of codeine syrup"
    plain = policy_normalizer.normalize("grape juice is my favourite")
    assert plain.changed is False
    assert [(c.entry, c.meaning) for c in plain.candidates] == [("grape_juice", "codeine syrup")]


def test_a_built_in_entry_can_be_replaced_by_disabling_it(tmp_path: Path) -> None:
    body = (
        'version: "1"\ndisable: [corn]\ncodes:\n  - {id: corn, category: sexual, meaning: porn,'
        " variants: [corn], ambiguous: true, cues: [telegram]}\n"
    )
    normalizer = Normalizer(load_policy(write(tmp_path, body)).apply(load_lexicon()))
    assert normalizer.normalize("corn on my telegram").normalized == "porn on my telegram"
    assert normalizer.normalize("corn link in bio").changed is False


def test_the_changed_lexicon_names_both_files(tmp_path: Path) -> None:
    lexicon = load_lexicon()
    first = load_policy(write(tmp_path, POLICY)).apply(lexicon)
    again = load_policy(write(tmp_path, POLICY, "copy.yaml")).apply(lexicon)
    other = load_policy(write(tmp_path, POLICY + "# edited\n")).apply(lexicon)
    assert first.version == f"{lexicon.version}+policy-2026-11-28"
    assert first.source == "lexicon.yaml+policy.yaml"
    assert len(first.sha256) == 64 and first.sha256 != lexicon.sha256
    assert again.sha256 == first.sha256  # the same bytes, whatever the file is called
    assert other.sha256 != first.sha256
    assert len(first.entries) == len(lexicon.entries) - 1 + 3


def test_a_policy_is_immutable(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, POLICY))
    with pytest.raises(AttributeError):
        policy.version = "2"  # type: ignore[misc]
    assert isinstance(policy, Policy)
