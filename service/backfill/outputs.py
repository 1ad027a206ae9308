"""A backfill's output folder: part files written atomically, and the ids they hold.

OUT is a folder, local or anything ``pyarrow.fs`` opens (``s3://``, ``gs://``, ``hdfs://``).
Every write adds one part file, ``part-<32 hex digits>.jsonl`` or ``.parquet``, written under a
hidden temporary name (``.tmp-part-...``) and renamed once complete (on a local disk after an
fsync), so a part file is either whole or absent: a crash mid-write leaves only a temporary
file, which a rerun deletes and which readers skip (pyarrow, pandas, Ray Data and Spark all
ignore names starting with "." or "_"). The ids in the complete parts are what a rerun skips.

Every row is ``{"id": ..., "result": {...}}`` or ``{"id": ..., "error": {"type", "message"}}``:
``result`` is exactly an item of POST /classify/batch's ``results`` and ``error`` the API's
error body, as the batch CLI writes them. Parquet holds the same values as typed columns
(``id``, ``result`` a struct, ``error`` a struct; the score maps are Arrow maps).
"""

import io
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from service.backfill.arrow import arrow_type, plain
from service.schemas import ClassifyResponse, ErrorDetail

logger = logging.getLogger(__name__)

Format = Literal["jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "parquet")
PART_PREFIX = "part-"
TEMPORARY_PREFIX = ".tmp-"


class OutputError(Exception):
    """OUT cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Location:
    """A path on a filesystem: ``path`` as that filesystem names it."""

    filesystem: pafs.FileSystem
    path: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)


def locate(uri: str) -> Location:
    """Where ``uri`` points: a URI ``pyarrow.fs`` opens (``s3://bucket/key``, ``file:///x``),
    or a local path (relative paths from the current folder)."""
    if "://" not in uri:
        return Location(pafs.LocalFileSystem(), Path(uri).expanduser().resolve().as_posix())
    filesystem, path = pafs.FileSystem.from_uri(uri)
    return Location(filesystem, path.rstrip("/"))


@cache
def output_schema() -> pa.Schema:
    """The Parquet schema of every part: ``id``, then ``result`` as POST /classify/batch
    answers each text (one struct field per response field) and ``error`` as the API's error
    body; exactly one of the two is set."""
    result = ClassifyResponse.model_json_schema(mode="serialization")
    error = ErrorDetail.model_json_schema(mode="serialization")
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("result", arrow_type(result)),
            pa.field("error", arrow_type(error)),
        ]
    )


def encode(rows: list[str], output_format: Format) -> bytes:
    """A part file holding ``rows`` (each the JSON text of one output row)."""
    if output_format == "jsonl":
        return "".join(row + "\n" for row in rows).encode("utf-8")
    table = pa.Table.from_pylist([json.loads(row) for row in rows], schema=output_schema())
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


class OutputFolder:
    """The part files of one format in the folder ``uri`` (created when missing)."""

    def __init__(self, uri: str, output_format: Format) -> None:
        self.uri = uri
        self.format = output_format
        self.location = locate(uri)
        self.suffix = f".{output_format}"

    def create(self) -> None:
        """Make the folder; OutputError when a file has its name."""
        info = self.location.filesystem.get_file_info(self.location.path)
        if info.type == pafs.FileType.File:
            raise OutputError(f"{self.uri} is a file; OUT must be a folder (it gets part files)")
        self.location.filesystem.create_dir(self.location.path, recursive=True)

    def _names(self) -> list[str]:
        """Names of the files directly in the folder (none when it does not exist)."""
        selector = pafs.FileSelector(self.location.path, allow_not_found=True)
        infos = self.location.filesystem.get_file_info(selector)
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.File)

    def parts(self) -> list[str]:
        """Names of the complete part files of this format."""
        return [n for n in self._names() if _is_part(n) and n.endswith(self.suffix)]

    def foreign_parts(self) -> list[str]:
        """Names of part files of another format (a folder holds one format)."""
        return [n for n in self._names() if _is_part(n) and not n.endswith(self.suffix)]

    def remove_temporaries(self) -> int:
        """Delete what crashed writes left (never counted as output); how many."""
        leftovers = [n for n in self._names() if n.startswith(TEMPORARY_PREFIX + PART_PREFIX)]
        for name in leftovers:
            self.location.filesystem.delete_file(self._path(name))
        return len(leftovers)

    def remove_parts(self) -> int:
        """Delete every part file of this format (to start over); how many."""
        parts = self.parts()
        for name in parts:
            self.location.filesystem.delete_file(self._path(name))
        return len(parts)

    def ids(self) -> list[str]:
        """The ids of every row in the complete parts, in file order. OutputError when a part
        cannot be read."""
        ids: list[str] = []
        for name in self.parts():
            ids += self._ids(name)
        return ids

    def rows(self) -> list[dict[str, Any]]:
        """Every row of the complete parts, in JSON terms (as the JSONL parts hold them)."""
        rows: list[dict[str, Any]] = []
        for name in self.parts():
            rows += self._rows(name)
        return rows

    def write_part(self, rows: list[str]) -> str:
        """Write ``rows`` (JSON texts) as a new part file, atomically; its name."""
        name = f"{PART_PREFIX}{uuid.uuid4().hex}{self.suffix}"
        self._write_atomically(name, encode(rows, self.format))
        return name

    def _path(self, name: str) -> str:
        return f"{self.location.path}/{name}"

    def _write_atomically(self, name: str, data: bytes) -> None:
        """``data`` as ``name``: written under a temporary name, then renamed."""
        temporary, final = self._path(TEMPORARY_PREFIX + name), self._path(name)
        if self.location.is_local:
            # Synced before the rename, so that after a machine crash the name never points
            # at a file whose blocks did not reach the disk.
            with Path(temporary).open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            Path(temporary).replace(final)
            return
        with self.location.filesystem.open_output_stream(temporary) as stream:
            stream.write(data)
        # Object stores copy and delete: the final object appears whole or not at all.
        self.location.filesystem.move(temporary, final)

    def _ids(self, name: str) -> list[str]:
        """The ids of the part ``name``: its ``id`` column, or in JSONL the value each line
        starts with (rows are written id first), without decoding the rest of the line."""
        if self.format == "parquet":
            return [row["id"] for row in self._rows(name, columns=["id"])]
        return self._rows(name, ids_only=True)

    def _rows(
        self, name: str, columns: list[str] | None = None, ids_only: bool = False
    ) -> list[Any]:
        """The rows of the part ``name``, in JSON terms (with ``ids_only``, of a JSONL part,
        each row's id where the row starts with it)."""
        try:
            with self.location.filesystem.open_input_file(self._path(name)) as file:
                if self.format == "parquet":
                    return _plain_rows(pq.read_table(file, columns=columns))
                lines = _lines(file.read())
                return [_leading_id(line) if ids_only else json.loads(line) for line in lines]
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise OutputError(
                f"part {self._path(name)} cannot be read ({exc}); delete it and rerun: its rows "
                "are classified again"
            ) from exc


def _is_part(name: str) -> bool:
    return name.startswith(PART_PREFIX) and name.endswith(tuple(f".{f}" for f in FORMATS))


def _lines(data: bytes) -> Iterable[bytes]:
    return (line for line in data.split(b"\n") if line)


_ID_PREFIX = '{"id": '
_DECODER = json.JSONDecoder()


def _leading_id(line: bytes) -> Any:
    """The id of a JSONL row: read alone when the row starts with it, as this module writes
    rows, else from the whole row decoded."""
    text = line.decode("utf-8")
    if text.startswith(_ID_PREFIX):
        return _DECODER.raw_decode(text, len(_ID_PREFIX))[0]
    return json.loads(text)["id"]


def _plain_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of ``table`` in JSON terms; a row keeps only the one of ``result`` and
    ``error`` that is set, as a JSONL part does."""
    rows = []
    for row in table.to_pylist():
        plain_row = {
            name: plain(value, table.schema.field(name).type) for name, value in row.items()
        }
        rows.append({key: value for key, value in plain_row.items() if value is not None})
    return rows
