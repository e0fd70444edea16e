"""How the file source reads each format: rows in batches, and records that cannot be rows.

A `Piece` is a unit of a partition (a file, or one Parquet row group). `Piece.items`
yields, in record order, `pyarrow.RecordBatch`es of rows and a `BadRecord` for each
record that cannot become a row, so that every record keeps its offset:

- Parquet and IPC (`FragmentPiece`): every row is a row; bad values are left for
  `StreamSchema.validate`.
- CSV (`CsvPiece`): a line with the wrong number of fields is a `BadRecord` where it was.
- JSON lines (`JsonLinesPiece`): a line that does not parse, or is not an object, is a
  `BadRecord` where it was.

`normalise` then casts the feature and label columns to float32, keeping what cannot be
parsed for validation to reject, row by row.
"""

from __future__ import annotations

import heapq
import io
import itertools
import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.json as pa_json

from actors.errors import SourceError
from pipelines.schema import is_numeric

__all__ = [
    "BadRecord",
    "CsvPiece",
    "FragmentPiece",
    "Item",
    "JsonLinesPiece",
    "Piece",
    "concat",
    "normalise",
    "read_json_chunk",
    "skip_row",
]

_JSON_CHUNK_BYTES = 4 << 20
_FLOAT_PATTERN = r"(?i)^[+-]?((\d+\.?\d*)|(\.\d+))(e[+-]?\d+)?$|^[+-]?(inf|infinity|nan)$"
# pyarrow's JSON reader takes a `null` line for a row of nulls, and crashes the process
# (pyarrow 26) when a chunk starts with one: such chunks go to the line-by-line parser.
_JSON_NULL_LINE = re.compile(rb"(?m)^[ \t\r]*null[ \t\r]*$")
_RECORD_TEXT_CHARS = 500


@dataclass(frozen=True)
class BadRecord:
    """A record the source could not turn into a row (it still takes an offset)."""

    reason: str
    text: str


Item: TypeAlias = "pa.RecordBatch | BadRecord"


class Piece(Protocol):
    """A unit of a partition: a file, or one Parquet row group."""

    name: str

    def count_rows(self) -> int:
        """Records in the piece: rows and bad records."""
        ...

    def items(self) -> Iterator[Item]:
        """The piece's rows (in batches) and bad records, in record order."""
        ...


class FragmentPiece:
    """A `pyarrow.dataset` fragment: a Parquet or IPC file, or one Parquet row group."""

    def __init__(self, fragment: ds.Fragment, columns: list[str]) -> None:
        self.fragment = fragment
        self.columns = columns
        self.name = fragment.path
        self._rows: int | None = None

    def count_rows(self) -> int:
        if self._rows is None:
            if isinstance(self.fragment, ds.ParquetFileFragment):
                self._rows = sum(rg.num_rows for rg in self.fragment.row_groups)
            else:
                self._rows = self.fragment.count_rows()
        return self._rows

    def items(self) -> Iterator[Item]:
        present = set(self.fragment.physical_schema.names)
        columns = [c for c in self.columns if c in present]
        yield from self.fragment.to_batches(columns=columns)


class CsvPiece:
    """A CSV file; a line with the wrong number of fields is a bad record in its place.

    pyarrow skips such a line and reports it to an invalid-row handler with its row
    number (1-based, header included, blank lines not counted), so it can be put back
    between the rows around it. Each scan gets its own handler: counting and reading may
    interleave (the high watermark counts a file while it is being read).
    """

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        path: str,
        columns: list[str],
        text_columns: Sequence[str],
    ) -> None:
        self.filesystem = filesystem
        self.name = path
        self.columns = columns
        self.text_columns = tuple(text_columns)
        self._rows: int | None = None

    def count_rows(self) -> int:
        if self._rows is None:
            bad = _CsvBadRows()
            rows = sum(b.num_rows for b in self._fragment(bad).to_batches(columns=[]))
            self._rows = rows + len(bad)
        return self._rows

    def items(self) -> Iterator[Item]:
        bad = _CsvBadRows()
        fragment = self._fragment(bad)
        present = set(fragment.physical_schema.names)
        columns = [c for c in self.columns if c in present]
        record = 0  # index of the next record (row or bad line) in the file
        for batch in fragment.to_batches(columns=columns):
            # pyarrow has parsed (and reported the bad lines of) a block before it
            # yields that block's rows, so every bad line before a row is known here.
            start = 0
            while start < batch.num_rows:
                index = bad.next_index()
                if index is not None and index <= record:
                    yield bad.pop()
                    record += 1
                    continue
                run = batch.num_rows - start
                if index is not None:
                    run = min(run, index - record)
                yield batch.slice(start, run)
                start += run
                record += run
        yield from bad.drain()

    def _fragment(self, bad: _CsvBadRows) -> ds.Fragment:
        file_format = ds.CsvFileFormat(
            parse_options=pa_csv.ParseOptions(invalid_row_handler=bad),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in self.text_columns},
                strings_can_be_null=True,
            ),
        )
        return file_format.make_fragment(self.name, filesystem=self.filesystem)


class _CsvBadRows:
    """CSV invalid-row handler: skips the line and keeps it as a bad record by index.

    pyarrow calls it from its own threads, and may call it twice for a line (once while
    inferring the schema), hence the lock and the set of row numbers seen.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[int, BadRecord]] = []
        self._seen: set[int] = set()
        # Lines without a row number (pyarrow knows none when values may hold newlines,
        # which this source never allows): kept, at the end of the file.
        self._unplaced: list[BadRecord] = []

    def __call__(self, row: pa_csv.InvalidRow) -> str:
        reason = f"CSV row has {row.actual_columns} fields, expected {row.expected_columns}"
        record = BadRecord(reason, _truncate(row.text))
        with self._lock:
            if row.number is None or row.number < 2:
                self._unplaced.append(record)
            elif row.number not in self._seen:
                self._seen.add(row.number)
                heapq.heappush(self._heap, (row.number - 2, record))  # header is row 1
        return "skip"

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen) + len(self._unplaced)

    def next_index(self) -> int | None:
        """Record index of the first bad line not yet taken, if one is known."""
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def pop(self) -> BadRecord:
        with self._lock:
            return heapq.heappop(self._heap)[1]

    def drain(self) -> list[BadRecord]:
        """Every bad line not yet taken, in file order."""
        with self._lock:
            rest = [heapq.heappop(self._heap)[1] for _ in range(len(self._heap))]
            rest += self._unplaced
            self._unplaced = []
            return rest


def skip_row(row: pa_csv.InvalidRow) -> str:
    return "skip"


class JsonLinesPiece:
    """A JSON-lines file, read in chunks by pyarrow, line by line where pyarrow fails."""

    def __init__(self, filesystem: pafs.FileSystem, path: str, columns: list[str]) -> None:
        self.filesystem = filesystem
        self.name = path
        self.columns = columns
        self._rows: int | None = None

    def count_rows(self) -> int:
        if self._rows is None:
            self._rows = sum(_count_lines(chunk) for chunk in _chunks(self.filesystem, self.name))
        return self._rows

    def items(self) -> Iterator[Item]:
        for chunk in _chunks(self.filesystem, self.name):
            batch, bad = _parse_json(chunk, self.columns)
            row = record = 0
            for index, record_bad in bad:
                run = index - record
                if run:
                    yield batch.slice(row, run)
                    row += run
                yield record_bad
                record = index + 1
            if row < batch.num_rows:
                yield batch.slice(row)


def _truncate(text: str) -> str:
    if len(text) <= _RECORD_TEXT_CHARS:
        return text
    return text[: _RECORD_TEXT_CHARS - 3] + "..."


def normalise(batch: pa.RecordBatch, numeric: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Cast the feature and label columns to float32, keeping what cannot be parsed.

    Numbers, booleans, decimals and all-null columns become float32 with nulls and NaN
    kept. A text column becomes float32 if every value parses; otherwise the batch is cut
    into runs: runs of parsable rows are converted, runs with an unparsable value keep
    that column as text so that validation rejects exactly those rows.
    """
    converted: dict[str, pa.Array] = {}
    partial: dict[str, tuple[pa.Array, np.ndarray]] = {}
    names = batch.schema.names
    for name in numeric:
        if name not in names:
            continue
        column = batch.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        if is_numeric(column.type) or pa.types.is_null(column.type):
            converted[name] = pc.cast(column, pa.float32(), safe=False)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values, bad = _parse_text(column)
            if bad is None:
                converted[name] = values
            else:
                partial[name] = (values, bad)
    if not partial:
        yield _replace(batch, converted)
        return
    any_bad = np.logical_or.reduce([bad for _, bad in partial.values()])
    edges = np.flatnonzero(np.diff(any_bad.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), batch.num_rows]
    for start, stop in itertools.pairwise(bounds):
        length = stop - start
        columns = {name: array.slice(start, length) for name, array in converted.items()}
        for name, (values, bad) in partial.items():
            if not bad[start:stop].any():
                columns[name] = values.slice(start, length)
        yield _replace(batch.slice(start, length), columns)


def _parse_text(column: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """Text as float32, and a mask of rows that do not parse (None when all do).

    Surrounding spaces are ignored, ``""`` is null, ``true``/``false`` are 1/0.
    """
    try:  # clean numeric text, the common case
        return pc.cast(pc.cast(column, pa.float64()), pa.float32(), safe=False), None
    except pa.ArrowInvalid:
        pass
    text = pc.utf8_trim_whitespace(column)
    lowered = pc.utf8_lower(text)
    text = pc.if_else(pc.equal(lowered, "true"), "1", text)
    text = pc.if_else(pc.equal(lowered, "false"), "0", text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)
    try:
        return pc.cast(pc.cast(text, pa.float64()), pa.float32(), safe=False), None
    except pa.ArrowInvalid:
        pass
    parsable = pc.fill_null(pc.match_substring_regex(text, _FLOAT_PATTERN), True)
    bad = ~np.asarray(parsable.to_numpy(zero_copy_only=False), dtype=bool)
    try:
        kept = pc.if_else(parsable, text, pa.scalar(None, text.type))
        values = pc.cast(pc.cast(kept, pa.float64()), pa.float32(), safe=False)
    except pa.ArrowInvalid:  # the pattern accepted what the cast refuses: keep it all as text
        return column, np.ones(len(column), dtype=bool)
    return values, bad


def _replace(batch: pa.RecordBatch, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    if not columns:
        return batch
    names = batch.schema.names
    arrays = [columns.get(name, batch.column(i)) for i, name in enumerate(names)]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    table = pa.Table.from_batches(parts).combine_chunks()
    return table.to_batches()[0]


def _chunks(filesystem: pafs.FileSystem, path: str) -> Iterator[bytes]:
    """The file's bytes in chunks of whole lines (the last may lack its newline)."""
    rest = b""
    with filesystem.open_input_stream(path) as stream:
        while True:
            data = stream.read(_JSON_CHUNK_BYTES)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            yield data[:cut]
    if rest.strip():
        yield rest


def _count_lines(chunk: bytes) -> int:
    return sum(1 for line in chunk.split(b"\n") if line.strip())


def read_json_chunk(filesystem: pafs.FileSystem, path: str, uri: str) -> pa.RecordBatch:
    """The first chunk of a JSON-lines file, all of its columns (for the schema)."""
    try:
        chunk = next(_chunks(filesystem, path), b"")
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot read {path!r}: {exc}", uri=uri) from exc
    return _parse_json(chunk, None)[0]


def _parse_json(
    chunk: bytes, columns: list[str] | None
) -> tuple[pa.RecordBatch, list[tuple[int, BadRecord]]]:
    """Parse a chunk of JSON lines into its rows and its bad lines.

    Args:
        chunk: whole lines.
        columns: the columns to keep; None keeps every column, in the order seen.

    Returns:
        The rows of the lines that are JSON objects, and each other line as
        ``(its index among the chunk's non-blank lines, bad record)``, in order.
    """
    if not _JSON_NULL_LINE.search(chunk):
        lines = _count_lines(chunk)
        try:
            options = pa_json.ReadOptions(
                use_threads=False, block_size=max(len(chunk), 1 << 16) + 1
            )
            table = pa_json.read_json(io.BytesIO(chunk), read_options=options)
            if table.num_rows == lines:
                return _select(table, columns), []
        except pa.ArrowInvalid:
            pass
    return _parse_json_slowly(chunk, columns)


def _select(table: pa.Table, columns: list[str] | None) -> pa.RecordBatch:
    names = table.column_names if columns is None else columns
    arrays = [
        table.column(n).combine_chunks() if n in table.column_names else pa.nulls(table.num_rows)
        for n in names
    ]
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def _parse_json_slowly(
    chunk: bytes, columns: list[str] | None
) -> tuple[pa.RecordBatch, list[tuple[int, BadRecord]]]:
    rows: list[dict[str, object]] = []
    bad: list[tuple[int, BadRecord]] = []
    index = 0
    for line in chunk.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            bad.append((index, _bad_json_line(line, f"JSON line does not parse: {detail}")))
        else:
            if isinstance(row, dict):
                rows.append(row)
            else:
                reason = f"JSON line is {_json_kind(row)}, expected an object"
                bad.append((index, _bad_json_line(line, reason)))
        index += 1
    if columns is None:
        columns = list(dict.fromkeys(name for row in rows for name in row))
    arrays = [_python_column([row.get(name) for row in rows]) for name in columns]
    return pa.RecordBatch.from_arrays(arrays, names=columns), bad


def _bad_json_line(line: bytes, reason: str) -> BadRecord:
    return BadRecord(reason, _truncate(line.decode("utf-8", errors="replace").strip()))


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def _python_column(values: list[object]) -> pa.Array:
    """Numbers as float64, booleans as bool, anything else as text (JSON for non-strings)."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.float64() if present else pa.null())
    if all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    return pa.array(
        [v if v is None or isinstance(v, str) else json.dumps(v) for v in values], type=pa.string()
    )
