"""User data: extra labelled rows from ``.csv`` or ``.jsonl`` files, validated row by row."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from algospeak.prompt import AnswerError
from algospeak.taxonomy import CATEGORY_NAMES
from training.dataset.examples import HANDWRITTEN_FAMILY, USER_FAMILY, DatasetError, Example


def load_extra(path: Path) -> list[Example]:
    """Rows of a ``.csv`` or ``.jsonl`` file with ``text,label,category,severity`` (optional
    ``language``) as examples of family ``user``. Raises DatasetError naming the file and the
    1-based data row (the CSV header is not counted) of the first bad row."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    if suffix == ".csv":
        rows = _csv_rows(raw, path)
    elif suffix == ".jsonl":
        rows = _jsonl_rows(raw, path)
    else:
        raise DatasetError(f"{path}: extra data must be a .csv or .jsonl file")
    return [_extra_example(row, path, number) for number, row in rows]


def load_handwritten(path: Path) -> list[Example]:
    """The posts of a hand-written set (YAML: ``posts:``, each with ``text``, ``label``,
    ``category``, ``severity``, optional ``tags`` and ``language``) as examples of family
    ``handwritten``. Raises DatasetError naming the file and the 1-based post of the first bad
    one."""
    import yaml

    path = Path(path)
    try:
        posts = yaml.safe_load(path.read_text(encoding="utf-8"))["posts"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a hand-written set (a 'posts:' list): {exc}") from exc
    return [
        _extra_example(_with_language(row), path, number, family=HANDWRITTEN_FAMILY)
        for number, row in enumerate(posts, start=1)
    ]


def _with_language(row: Any) -> Any:
    """A hand-written post is in English unless it says otherwise (``language``) or is tagged
    ``multilingual`` (language undetermined)."""
    if not isinstance(row, dict) or "language" in row:
        return row
    return row | {"language": "und" if "multilingual" in (row.get("tags") or ()) else "en"}


_EXTRA_FIELDS = ("text", "label", "category", "severity")


def _csv_rows(raw: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(raw.splitlines())
    missing = [f for f in _EXTRA_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing} (need {list(_EXTRA_FIELDS)})")
    return list(enumerate(reader, start=1))


def _jsonl_rows(raw: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: row {number}: not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: row {number}: must be a JSON object")
        rows.append((number, row))
    return rows


def _extra_example(
    row: dict[str, Any], path: Path, number: int, family: str = USER_FAMILY
) -> Example:
    where = f"{path}: row {number}"
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: must be a mapping")
    for name in _EXTRA_FIELDS:
        if not isinstance(row.get(name), str):
            raise DatasetError(f"{where}: {name!r} must be a string")
    text = row["text"]
    if not text.strip():
        raise DatasetError(f"{where}: 'text' is empty")
    values = [row[name].strip() for name in _EXTRA_FIELDS[1:]]
    language = row.get("language") or "und"
    reason = row.get("reason") or _user_reason(values[0], values[1])
    if not isinstance(reason, str) or "\n" in reason.strip():
        raise DatasetError(f"{where}: 'reason' must be one line of text")
    try:
        return Example(text, *values, family=family, language=str(language), reason=reason.strip())
    except AnswerError as exc:
        raise DatasetError(f"{where}: {exc}") from exc


def _user_reason(label: str, category: str) -> str:
    """The reason of a user row that brings none: its label and category in words."""
    if label == "safe":
        return "nothing in the post is harmful"
    return f"the post's content is harmful ({CATEGORY_NAMES.get(category, category)})"
