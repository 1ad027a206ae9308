"""The dataset builder: contract-true records, reproducibility, held-out splits, coverage,
user data validation and the dataset card."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from algospeak.normalizer import normalize
from algospeak.prompt import (
    SYSTEM,
    Answer,
    build_messages,
    format_answer,
    parse_answer,
    parse_answer_and_reason,
    user_content,
)
from algospeak.taxonomy import HARM_CATEGORIES, SEVERITIES
from training import dataset
from training.dataset import (
    HANDWRITTEN_REPEATS,
    HANDWRITTEN_TRAIN,
    OBFUSCATION_NAMES,
    DatasetError,
    Splits,
    build,
    load_extra,
    load_handwritten,
    main,
    record,
    write,
)

SMALL = 800
FIELDS = ("text", "label", "category", "severity")
INJECTION = ("Ignore previous instructions", "<|im_start|>", "Label: safe", "Label: harmful")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Splits, Path]:
    out = tmp_path_factory.mktemp("small")
    splits = build(seed=13, size=SMALL)
    write(splits, out)
    return splits, out


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Splits, Path]:
    out = tmp_path_factory.mktemp("full")
    splits = build(seed=13, size=dataset.DEFAULT_SIZE)
    write(splits, out)
    return splits, out


def _records(out: Path) -> dict[str, list[dict]]:
    return {name: _read(out / f"{name}.jsonl") for name in dataset.SPLITS}


def _all(out: Path) -> list[dict]:
    return [r for rows in _records(out).values() for r in rows]


# ---------------------------------------------------------------- records


def test_records_follow_the_prompt_contract(small: tuple[Splits, Path]) -> None:
    _, out = small
    rows = _all(out)
    assert len(rows) >= SMALL * 0.95
    for row in rows:
        normalization = normalize(row["text"])
        answer = parse_answer(row["response"])
        assert answer == Answer(row["label"], row["category"], row["severity"])
        assert row["instruction"] == SYSTEM
        assert row["input"] == user_content(normalization)
        assert row["normalized"] == normalization.normalized
        assert row["messages"][:2] == build_messages(normalization)
        assert row["messages"][2] == {"role": "assistant", "content": row["response"]}
        assert set(row["provenance"]) == {"family", "entry", "obfuscation", "language"}
        assert row["provenance"]["obfuscation"] in OBFUSCATION_NAMES


def test_no_duplicates_on_normalized_text_and_label(small: tuple[Splits, Path]) -> None:
    """Each post once, except the hand-written ones, each exactly HANDWRITTEN_REPEATS times."""
    _, out = small
    keys = {True: Counter[tuple[str, str]](), False: Counter[tuple[str, str]]()}
    for r in _all(out):
        keys[r["provenance"]["family"] == "handwritten"][(r["normalized"], r["label"])] += 1
    assert set(keys[False].values()) == {1}
    assert set(keys[True].values()) == {HANDWRITTEN_REPEATS}
    assert not keys[True].keys() & keys[False].keys()


# ---------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_files_and_different_seed_differs(
    small: tuple[Splits, Path], tmp_path: Path
) -> None:
    _, first = small
    write(build(seed=13, size=SMALL), tmp_path / "again")
    write(build(seed=14, size=SMALL), tmp_path / "other")
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "card.md"):
        assert (first / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert (first / "train.jsonl").read_bytes() != (tmp_path / "other" / "train.jsonl").read_bytes()


# ---------------------------------------------------------------- splits


def test_held_out_families_and_entries_never_reach_train(small: tuple[Splits, Path]) -> None:
    splits, out = small
    assert splits.held_out_families and splits.held_out_entries
    records = _records(out)
    for row in records["train"]:
        assert row["provenance"]["family"] not in splits.held_out_families
        assert row["provenance"]["entry"] not in splits.held_out_entries
    held = [r for r in records["dev"] if r["provenance"]["family"] in splits.held_out_families]
    assert held, "dev also gets held-out families"


def test_every_test_example_is_unseen_in_train(small: tuple[Splits, Path]) -> None:
    _, out = small
    records = _records(out)
    train_families = {r["provenance"]["family"] for r in records["train"]}
    train_entries = {r["provenance"]["entry"] for r in records["train"]}
    assert records["test"]
    for row in records["test"]:
        family, entry = row["provenance"]["family"], row["provenance"]["entry"]
        assert family not in train_families or (entry is not None and entry not in train_entries)


def test_held_out_entries_are_about_a_tenth_and_depend_on_the_seed() -> None:
    first, other = build(seed=13, size=300), build(seed=99, size=300)
    used = {
        c.entry.id
        for f in dataset.load_templates(dataset.TEMPLATES)[1]  # the entries the templates use
        for c in f.choices
    }
    assert 0.07 <= len(first.held_out_entries) / len(used) <= 0.13
    assert first.held_out_entries != other.held_out_entries


def test_train_keeps_every_severity(small: tuple[Splits, Path]) -> None:
    splits, _ = small
    assert {e.severity for e in splits.train} == set(SEVERITIES)


# ---------------------------------------------------------------- content


def test_default_size_is_large_and_balanced(full: tuple[Splits, Path]) -> None:
    _, out = full
    rows = _all(out)
    assert len(rows) >= 20000
    labels = Counter(r["label"] for r in rows)
    for label in ("harmful", "safe"):
        assert labels[label] / len(rows) >= 0.35, labels


def test_at_the_default_size_every_family_gets_its_share(full: tuple[Splits, Path]) -> None:
    # A family that runs out of distinct posts leaves its share to the others (file order).
    splits, _ = full
    families = dataset.load_templates(dataset.TEMPLATES)[1]
    total = sum(f.weight for f in families)
    counts = Counter(e.family for _, part in splits.items() for e in part)
    for family in families:
        assert counts[family.id] >= int(splits.size * family.weight / total), family.id


def test_train_keeps_every_category_and_severity_the_templates_have(
    full: tuple[Splits, Path],
) -> None:
    splits, _ = full
    families = dataset.load_templates(dataset.TEMPLATES)[1]
    wanted = {(f.category, f.severity) for f in families if f.category != "from_entry"}
    assert {(e.category, e.severity) for e in splits.train} >= wanted
    assert {c for c, _ in wanted} == {*HARM_CATEGORIES, "none"}


def test_every_category_has_harm_with_and_without_algospeak_under_each_obfuscation(
    full: tuple[Splits, Path],
) -> None:
    _, out = full
    harmful = [r for r in _all(out) if r["label"] == "harmful"]
    for category in HARM_CATEGORIES:
        rows = [r for r in harmful if r["category"] == category]
        plain = [r for r in rows if r["provenance"]["entry"] is None]
        coded = [r for r in rows if r["provenance"]["entry"] is not None]
        assert plain and coded, category
        seen = {r["provenance"]["obfuscation"] for r in coded}
        assert seen == set(OBFUSCATION_NAMES), (category, seen)


def test_severity_follows_intent(full: tuple[Splits, Path]) -> None:
    _, out = full
    by_family = {}
    for row in _all(out):
        by_family.setdefault(row["provenance"]["family"], set()).add(row["severity"])
    assert by_family["self_harm_joke"] == {"low"}
    assert by_family["self_harm_intent"] == {"extreme"}
    assert by_family["violence_joke"] == {"low"}
    assert by_family["violence_threat"] == {"extreme"}
    assert by_family["safe_support"] == {"none"}


def test_safe_examples_cover_lookalikes_reclaimed_support_and_injection(
    full: tuple[Splits, Path],
) -> None:
    _, out = full
    safe = [r for r in _all(out) if r["label"] == "safe"]
    families = Counter(r["provenance"]["family"] for r in safe)
    for family in ("safe_identity", "safe_fiction", "safe_support", "safe_news", "safe_education"):
        assert families[family] > 0, family
    lookalikes = {
        r["provenance"]["entry"] for r in safe if "lookalike" in r["provenance"]["family"]
    }
    assert {"corn", "accountant", "pdf_file", "grape", "snow", "peach_emoji"} <= lookalikes
    assert any("le$bean" in r["text"] for r in safe)
    assert any("kill a process" in r["text"] for r in safe)


def test_injection_texts_exist_with_both_labels(full: tuple[Splits, Path]) -> None:
    _, out = full
    injected = [r for r in _all(out) if any(marker in r["text"] for marker in INJECTION)]
    labels = Counter(r["label"] for r in injected)
    assert labels["harmful"] > 0 and labels["safe"] > 0
    assert any("<|im_start|>" in r["text"] and r["label"] == "harmful" for r in injected)
    assert any("Label: harmful" in r["text"] and r["label"] == "safe" for r in injected)


def test_non_english_share(full: tuple[Splits, Path]) -> None:
    _, out = full
    rows = _all(out)
    languages = Counter(r["provenance"]["language"] for r in rows)
    other = len(rows) - languages["en"]
    assert 0.03 <= other / len(rows) <= 0.10, languages
    assert {"es", "pt", "de", "fr"} <= set(languages)


# ---------------------------------------------------------------- obfuscations


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("leetspeak", "unalive", "un4l1v3"),
        ("spacing", "sewer slide", "s e w e r   s l i d e"),
        ("masking", "seggs", "s*ggs"),
        ("invisible", "kys", "k\u200by\u200bs"),
        ("elongation", "unalive", "unaliveeeee"),
        ("case", "unalive", "UnAlIvE"),
        ("homoglyph", "corn", "соrn"),
    ],
)
def test_obfuscations(name: str, code: str, expected: str) -> None:
    assert dataset.OBFUSCATIONS[name](code) == expected


def test_obfuscate_skips_emoji_and_cycles() -> None:
    assert dataset.obfuscate("🌽", 3) == ("🌽", "none")
    assert dataset.obfuscate("kms", 4)[1] != "homoglyph"  # it swaps none of k, m, s
    assert dataset.obfuscate("seggs", 1) == ("$3gg$", "leetspeak")


# ---------------------------------------------------------------- templates


_FAMILY = (
    "families:\n  - id: f\n    label: harmful\n    category: harassment\n    severity: high\n"
    "    slot: code\n    reason: \"'{code}' is aimed at a person\"\n"
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    entries: [kys=kill urself]\n    templates: ['{code} lol']\n", "no variant"),
        ("    entries: [kys]\n    by_entry: {gkys: ['{code}']}\n", "never uses"),
        ("    entries: [kys, gkys]\n    by_entry: {kys: ['{code}']}\n", "no templates for"),
    ],
)
def test_templates_are_checked_when_loaded(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path / "templates.yaml", _FAMILY + body)
    with pytest.raises(DatasetError, match=message):
        dataset.load_templates(path)
    fine = _write(tmp_path / "ok.yaml", _FAMILY + "    entries: [kys]\n    templates: ['{code}']\n")
    assert [f.id for f in dataset.load_templates(fine)[1]] == ["f"]


# ---------------------------------------------------------------- user data


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_extra_rows_are_validated_and_added_to_train(tmp_path: Path) -> None:
    csv_file = _write(
        tmp_path / "extra.csv",
        "text,label,category,severity\n"
        '"my own harmful post, kys",harmful,harassment,high\n'
        "grilled corn tonight!!! extra,safe,none,none\n",
    )
    jsonl_file = _write(
        tmp_path / "extra.jsonl",
        json.dumps(dict(zip(FIELDS, ("user jsonl post", "safe", "none", "none"), strict=True)))
        + "\n",
    )
    assert [e.family for e in load_extra(csv_file)] == ["user", "user"]
    splits = build(seed=13, size=200, extra=[csv_file, jsonl_file])
    user = [e for e in splits.train if e.family == "user"]
    assert {e.text for e in user} == {
        "my own harmful post, kys",
        "grilled corn tonight!!! extra",
        "user jsonl post",
    }
    assert not any(e.family == "user" for e in splits.dev + splits.test)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "text,label,category,severity\nok,safe,none,none\nx,bad,none,none\n", "row 2"),
        ("bad.csv", "text,label,category,severity\n  ,safe,none,none\n", "row 1: 'text' is empty"),
        ("bad.csv", "text,label,category,severity\nhi,safe,hate,none\n", "row 1"),
        ("bad.csv", "text,label,category,severity\nhi,harmful,none,high\n", "row 1"),
        ("bad.csv", "text,label,category,severity\nhi,harmful,violence,huge\n", "row 1"),
        ("bad.csv", "text,label\nhi,safe\n", "missing columns"),
        (
            "bad.jsonl",
            '{"text": "a", "label": "safe", "category": "none", "severity": "none"}\nnot json\n',
            "row 2",
        ),
        ("bad.jsonl", '{"text": "a", "label": "safe", "category": "none"}\n', "row 1"),
        ("bad.txt", "text\n", ".csv or .jsonl"),
    ],
)
def test_extra_errors_name_file_and_row(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(DatasetError) as caught:
        load_extra(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_hand_written_posts_go_to_train_only_each_repeated(tmp_path: Path) -> None:
    posts = _write(
        tmp_path / "posts.yaml",
        "posts:\n"
        '  - {text: "my own post about soup", label: safe, category: none, severity: none}\n'
        '  - {text: "u r worthless, go away", label: harmful, category: harassment,'
        " severity: medium, tags: [plain]}\n",
    )
    splits = build(seed=13, size=200, handwritten=posts)
    written = Counter(e.text for e in splits.train if e.family == "handwritten")
    texts = ("my own post about soup", "u r worthless, go away")
    assert written == dict.fromkeys(texts, HANDWRITTEN_REPEATS)
    assert not any(e.family == "handwritten" for e in splits.dev + splits.test)
    without = build(seed=13, size=200, handwritten=None)
    assert not any(e.family == "handwritten" for e in without.train)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("posts:\n  - {text: hi, label: safe, category: hate, severity: none}\n", "row 1"),
        ("posts:\n  - {text: a, label: safe, category: none, severity: none}\n  - 7\n", "row 2"),
        ("items: []\n", "'posts:' list"),
        ("posts: [\n", "'posts:' list"),
    ],
)
def test_hand_written_errors_name_file_and_post(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path / "posts.yaml", content)
    with pytest.raises(DatasetError) as caught:
        load_handwritten(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_the_hand_written_sets_share_no_post() -> None:
    """Training posts, dev posts (calibration) and the evaluation set are separate: no post of
    one is in another, even up to normalization."""
    from recipes.default_model import DEV_POSTS, HANDWRITTEN

    sets = {"train": HANDWRITTEN_TRAIN, "dev": DEV_POSTS, "evaluation": HANDWRITTEN}
    seen: dict[str, str] = {}
    for name, path in sets.items():
        examples = load_handwritten(path)
        assert len(examples) >= 250, name
        for example in examples:
            key = normalize(example.text).normalized.lower().strip()
            assert seen.setdefault(key, name) == name, (name, seen[key], example.text)


def test_cli_reports_bad_extra_and_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path / "bad.csv", "text,label,category,severity\nhi,safe,hate,none\n")
    assert main(["build", "--out", str(tmp_path / "x"), "--extra", str(bad)]) == 2
    assert "bad.csv: row 1" in capsys.readouterr().err
    out = tmp_path / "ok"
    assert main(["build", "--out", str(out), "--size", "150", "--seed", "5"]) == 0
    assert {p.name for p in out.iterdir()} == {"train.jsonl", "dev.jsonl", "test.jsonl", "card.md"}


# ---------------------------------------------------------------- card


def _card_table(card: str, title: str) -> dict[str, list[int]]:
    section = card.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and cells[0] and cells[1].isdigit():
            rows[cells[0]] = [int(c) for c in cells[1:]]
    return rows


def test_card_counts_agree_with_files(small: tuple[Splits, Path]) -> None:
    splits, out = small
    card = (out / "card.md").read_text(encoding="utf-8")
    records = _records(out)
    table = _card_table(card, "Split x label")
    for name, rows in records.items():
        labels = Counter(r["label"] for r in rows)
        assert table[name] == [labels["harmful"], labels["safe"], len(rows)]
    for title, key in [
        ("Category", lambda r: r["category"]),
        ("Obfuscation", lambda r: r["provenance"]["obfuscation"]),
        ("Template family", lambda r: r["provenance"]["family"]),
        ("Language", lambda r: r["provenance"]["language"]),
    ]:
        expected = {}
        for split_index, name in enumerate(dataset.SPLITS):
            for row in records[name]:
                expected.setdefault(key(row), [0, 0, 0])[split_index] += 1
        assert _card_table(card, title) == {k: [*v, sum(v)] for k, v in expected.items()}
    assert f"seed: {splits.seed}" in card
    for family in splits.held_out_families:
        assert f"`{family}`" in card
    for entry in splits.held_out_entries:
        assert f"`{entry}`" in card
    assert re.search(r"python -m training\.dataset build --out DIR --seed 13 --size 800", card)


def test_the_test_split_measures_injections_of_both_labels(full: tuple[Splits, Path]) -> None:
    splits, _ = full
    families = Counter(e.label for e in splits.test if e.family.startswith("injection"))
    assert families["harmful"] > 0 and families["safe"] > 0


# ---------------------------------------------------------------- reasons


def test_every_record_has_a_one_line_reason(small: tuple[Splits, Path]) -> None:
    splits, out = small
    rows = _all(out)
    assert all(r["reason"].strip() and "\n" not in r["reason"] for r in rows)
    assert all(r["messages"][-1]["content"] == r["response"] for r in rows)  # off by default
    assert "reason line in the answers: no" in (out / "card.md").read_text(encoding="utf-8")
    # The reason quotes the code, and a code written plainly is right there in the post.
    plain = [
        e for _, part in splits.items() for e in part
        if e.entry and e.obfuscation == "none" and e.reason.startswith("'")
    ]  # fmt: skip
    assert len(plain) > 50
    for example in plain:
        code = example.reason.split("'")[1]
        assert code.lower() in example.text.lower(), (example.text, example.reason)


def test_reasons_say_why_in_the_families_terms(small: tuple[Splits, Path]) -> None:
    splits, _ = small
    by_family = {e.family: e.reason for _, part in splits.items() for e in part}
    assert "ordinary sense" in by_family["lookalike_curated"]
    assert "instruct the moderator" in by_family["injection_safe"]
    assert "is algospeak for" in by_family["violence_threat"]
    assert by_family["hate_plain"].startswith("the post plainly")


def test_with_reasons_the_answer_ends_with_its_reason_line(small: tuple[Splits, Path]) -> None:
    splits, _ = small
    for example in splits.train[:200]:
        plain, reasoned = record(example), record(example, reasons=True)
        content = reasoned["messages"][-1]["content"]
        assert content == format_answer(example.answer, example.reason)
        assert parse_answer_and_reason(content) == (example.answer, example.reason)
        assert reasoned["messages"][:-1] == plain["messages"][:-1]
        assert {k: v for k, v in reasoned.items() if k != "messages"} == {
            k: v for k, v in plain.items() if k != "messages"
        }


def test_reasons_draw_no_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reasons were added after datasets had been built: the same seed must give the same posts.
    # Template posts only: the hand-written ones bring their own reasons.
    with_reasons = build(seed=13, size=300, handwritten=None)
    monkeypatch.setattr(dataset.templates, "_reason", lambda template, values: "")
    without = build(seed=13, size=300, handwritten=None)
    for (name, part), (_, other) in zip(with_reasons.items(), without.items(), strict=True):
        assert [e.provenance | {"text": e.text, "answer": e.answer} for e in part] == [
            e.provenance | {"text": e.text, "answer": e.answer} for e in other
        ], name
    assert not any(e.reason for _, part in without.items() for e in part)


def test_the_cli_writes_reason_lines_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "reasons"
    assert main(["build", "--out", str(out), "--size", "60", "--reasons"]) == 0
    for row in _all(out):
        assert parse_answer_and_reason(row["messages"][-1]["content"]) == (
            parse_answer(row["response"]),
            row["reason"],
        )
    card = (out / "card.md").read_text(encoding="utf-8")
    assert "--size 60 --reasons`" in card and "reason line in the answers: yes" in card


def test_user_rows_bring_their_reason_or_get_one_from_their_label(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "extra.csv",
        "text,label,category,severity,reason\n"
        "kys loser,harmful,harassment,high,'kys' is aimed at a person\n"
        "hello,safe,none,none,\n"
        "die,harmful,violence,medium,\n",
    )
    assert [e.reason for e in load_extra(path)] == [
        "'kys' is aimed at a person",
        "nothing in the post is harmful",
        "the post's content is harmful (violence)",
    ]
    bad = _write(
        tmp_path / "bad.jsonl",
        json.dumps({"text": "a", "label": "safe", "category": "none", "severity": "none",
                    "reason": "two\nlines"}) + "\n",
    )  # fmt: skip
    with pytest.raises(DatasetError, match="row 1: 'reason'"):
        load_extra(bad)
