"""A backfill's input: the JSONL or Parquet files IN names, read by Ray Data, a row a record.

IN is a file or a folder of files (names ending in the format's extensions; names starting with
"." or "_", like the markers other tools leave, are skipped), local or any ``pyarrow.fs`` URI.
Each record becomes a row ``{"id", "text", "error_type", "error_message"}``: its id as text,
and its text when the API would accept it, else the API's error for it (the rules of
service/records.py, shared with the batch CLI). A JSONL record is a line: a JSON object with
``text`` and an optional ``id``, or a JSON string; a Parquet record is a row with a ``text``
column and an optional ``id`` column (other columns are ignored). A line or row that cannot be
classified (not JSON, no ``text``, empty, too long) is still a row, with its error.

The id: a string id is kept, an integer id becomes its decimal digits, any other value its
compact JSON text; a record without one (no ``id``, null, a bare string, an unreadable line)
gets ``"<file>:<n>"``, its file's path under IN (IN's own name when IN is a file) and its line
or row number counted from 1, so the same input gives the same ids on every run.
"""

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.datasource import FileBasedDatasource

from service.backfill.outputs import Format, Location, locate
from service.records import read_fields, read_line
from service.validation import TextProblem, has_unpaired_surrogates

INPUT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
    ]
)
JSONL_EXTENSIONS = ("jsonl", "ndjson", "json", "jsonl.gz", "ndjson.gz", "json.gz")
PARQUET_EXTENSIONS = ("parquet",)
_READ_CHUNK = 1 << 20
EXTENSIONS: dict[Format, tuple[str, ...]] = {
    "jsonl": JSONL_EXTENSIONS,
    "parquet": PARQUET_EXTENSIONS,
}


class InputError(Exception):
    """IN cannot be read as asked; the message says why and what to do."""


@dataclass(frozen=True)
class InputFiles:
    """The files a backfill reads: ``files`` under ``location`` (IN itself when ``single``)."""

    location: Location
    files: list[str]
    single: bool


def input_format_of(uri: str) -> Format:
    """IN's format from its name, or from the files in it when it is a folder. InputError
    when neither tells."""
    name = uri.rstrip("/").lower()
    for candidate, extensions in EXTENSIONS.items():
        if name.endswith(tuple(f".{extension}" for extension in extensions)):
            return candidate
    location = locate(uri)
    if location.filesystem.get_file_info(location.path).type == pafs.FileType.NotFound:
        raise InputError(f"input {uri} not found")
    found = {
        candidate
        for candidate in EXTENSIONS
        if _listing(location, EXTENSIONS[candidate], must_exist=False)
    }
    if len(found) != 1:
        kinds = " and ".join(sorted(found)) or "no JSONL or Parquet files"
        raise InputError(f"{uri} holds {kinds}: pass --input-format jsonl or parquet")
    return found.pop()


def input_files(uri: str, input_format: Format) -> InputFiles:
    """IN's files of ``input_format``: IN itself, or the files under the folder IN (names
    ending in the format's extensions; hidden names, starting with "." or "_", skipped)."""
    location = locate(uri)
    info = location.filesystem.get_file_info(location.path)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input {uri} not found")
    if info.type == pafs.FileType.File:
        return InputFiles(location, [location.path], single=True)
    files = _listing(location, EXTENSIONS[input_format], must_exist=True)
    if not files:
        endings = ", ".join(f".{extension}" for extension in EXTENSIONS[input_format])
        raise InputError(f"no {input_format} files under {uri} (names ending in {endings})")
    return InputFiles(location, files, single=False)


def _listing(location: Location, extensions: tuple[str, ...], must_exist: bool) -> list[str]:
    selector = pafs.FileSelector(location.path, recursive=True, allow_not_found=not must_exist)
    try:
        infos = location.filesystem.get_file_info(selector)
    except (FileNotFoundError, NotADirectoryError):
        return []
    endings = tuple(f".{extension}" for extension in extensions)
    return sorted(
        info.path
        for info in infos
        if info.type == pafs.FileType.File
        and info.path.lower().endswith(endings)
        and not any(
            part.startswith((".", "_"))
            for part in posixpath.relpath(info.path, location.path).split("/")
        )
    )


def id_text(value: Any) -> str | None:
    """A record's id as the output writes it; None when the record has none."""
    if value is None:
        return None
    if isinstance(value, str) and not has_unpaired_surrogates(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    try:
        # ASCII, so that even a string with unpaired surrogates becomes valid text.
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)  # a Parquet value JSON has no type for (bytes, timestamps)


def input_row(item_id: Any, text: str | TextProblem, name: str, number: int) -> dict[str, Any]:
    """The row for record ``number`` of the file ``name``: its id (its position when it has
    none) and its text or the reason it has none."""
    row_id = id_text(item_id)
    if row_id is None:
        row_id = f"{name}:{number}"
    if isinstance(text, TextProblem):
        return {"id": row_id, "text": None, "error_type": text.type, "error_message": text.message}
    return {"id": row_id, "text": text, "error_type": None, "error_message": None}


def lines(stream: Any) -> Iterator[bytes]:
    """The lines of a binary stream as iterating over a file gives them (newlines kept, a last
    line without one counts), so that each is read exactly as the batch CLI reads it."""
    pending = b""
    while chunk := stream.read(_READ_CHUNK):
        pieces = (pending + chunk).split(b"\n")
        pending = pieces.pop()
        yield from (piece + b"\n" for piece in pieces)
    if pending:
        yield pending


def jsonl_rows(stream: Any, name: str, max_chars: int) -> Iterator[dict[str, Any]]:
    """The rows of the JSONL file ``name``, one per line, blank and broken lines included."""
    for number, raw in enumerate(lines(stream), start=1):
        item_id, text = read_line(raw, max_chars)
        yield input_row(item_id, text, name, number)


def parquet_rows(file: Any, name: str, max_chars: int, chunk: int) -> Iterator[dict[str, Any]]:
    """The rows of the Parquet file ``name``, reading only its ``id`` and ``text`` columns."""
    parquet = pq.ParquetFile(file)
    names = parquet.schema_arrow.names
    # At least one column, so that a file without "text" still yields (error) rows.
    columns = [column for column in ("id", "text") if column in names] or names[:1]
    number = 0
    for batch in parquet.iter_batches(batch_size=chunk, columns=columns):
        for fields in batch.to_pylist():
            number += 1
            present = {key: fields[key] for key in ("id", "text") if key in fields}
            item_id, text = read_fields(present, max_chars)
            yield input_row(item_id, text, name, number)


class _RecordSource(FileBasedDatasource):
    """Rows of INPUT_SCHEMA from ``files``, in blocks of at most ``block_rows`` rows, without
    the rows whose id is in the Arrow string array behind ``skip`` (an object ref)."""

    def __init__(
        self,
        files: list[str],
        *,
        filesystem: Any,
        base: str,
        single: bool,
        max_chars: int,
        block_rows: int,
        skip: ray.ObjectRef | None,
    ) -> None:
        super().__init__(files, filesystem=filesystem)
        self._base = base
        self._single = single
        self._max_chars = max_chars
        self._block_rows = block_rows
        self._skip = skip

    def _name(self, path: str) -> str:
        """The file's path under IN (IN's own name when IN is the file): stable across runs."""
        if self._single:
            return posixpath.basename(self._base)
        return posixpath.relpath(path, self._base)

    def _rows(self, f: Any, name: str) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
        skip = ray.get(self._skip) if self._skip is not None else None
        block: list[dict[str, Any]] = []
        for row in self._rows(f, self._name(path)):
            block.append(row)
            if len(block) == self._block_rows:
                yield from _kept(block, skip)
                block = []
        if block:
            yield from _kept(block, skip)


class JsonlSource(_RecordSource):
    """JSONL files (gzip-compressed ones too, by their ``.gz`` name)."""

    def _rows(self, f: Any, name: str) -> Iterator[dict[str, Any]]:
        return jsonl_rows(f, name, self._max_chars)


class ParquetSource(_RecordSource):
    """Parquet files, opened for random access (the footer comes first)."""

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> Any:
        return filesystem.open_input_file(path)

    def _rows(self, f: Any, name: str) -> Iterator[dict[str, Any]]:
        return parquet_rows(f, name, self._max_chars, self._block_rows)


def _kept(rows: list[dict[str, Any]], skip: pa.Array | None) -> Iterator[pa.Table]:
    """``rows`` as one block, less those whose id is in ``skip``; nothing when none is left."""
    table = pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)
    if skip is not None and len(skip):
        table = table.filter(pc.invert(pc.is_in(table["id"], value_set=skip)))
    if table.num_rows:
        yield table
