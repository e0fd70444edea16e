"""A bounded file stream: Parquet, Arrow IPC (Feather v2), CSV or JSON lines.

The URI is a plain path, a ``file://`` URI, or any URI `pyarrow.fs.FileSystem.from_uri`
accepts (``s3://bucket/dir``, ``gs://...``, ``hdfs://...``); it names one file or a
directory, read recursively (names starting with ``.`` or ``_`` are skipped, as Spark and
Hive write them). Options go in the query string:

- ``format``: ``parquet``, ``arrow`` (``feather``, ``ipc``), ``csv`` or ``jsonl``
  (``json``); default: from the file extensions.
- ``label``: the label column (default ``label``).
- ``features``: comma list of feature columns; default: every numeric (or boolean) column
  of the first file other than the label, key and event-time columns.
- ``key``, ``event_time``: optional columns carried along, not learned from.

Other query parameters of a remote URI (``region=...``) are passed on to pyarrow.

Partitioning: files are dealt round-robin to ``spec.partitions`` partitions; with fewer
Parquet files than partitions, row groups are dealt instead; otherwise some partitions are
empty. An offset is a row index within a partition, its files in sorted path order.

Bad values survive to be dead-lettered by `StreamSchema.validate`: numeric columns are
cast to float32 (nulls and NaN kept); CSV feature and label columns are read as text and
parsed here, so one ``"abc"`` cuts a batch around that row instead of failing the read;
JSON lines that pyarrow cannot read (a field that changes type, a malformed line) are
parsed line by line. CSV rows with the wrong number of fields are skipped with a warning.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.parquet")
    >>> pq.write_table(pa.table({"a": [0.5, 1.5], "label": [0, 1]}), path)
    >>> source = open_file_source(SourceSpec(path, partitions=1))
    >>> source.schema.features, source.open(0).read_batch(10).batch.num_rows
    (('a',), 2)
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.json as pa_json

from actors.errors import ConfigError, SchemaError, SourceError
from pipelines.schema import StreamSchema
from pipelines.sources.base import SourceBatch, SourceSpec

__all__ = [
    "FORMATS",
    "FilePartitionReader",
    "FileSource",
    "FileSourceOptions",
    "open_file_source",
]

logger = logging.getLogger(__name__)

FORMATS: dict[str, tuple[str, ...]] = {
    "parquet": (".parquet", ".pq"),
    "arrow": (".arrow", ".feather", ".ipc"),
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson", ".json"),
}
"""Format name -> file extensions that imply it."""

_FORMAT_ALIASES = {"feather": "arrow", "ipc": "arrow", "json": "jsonl", "ndjson": "jsonl"}
_OPTIONS = ("format", "label", "features", "key", "event_time")
_JSON_CHUNK_BYTES = 4 << 20
_FLOAT_PATTERN = r"(?i)^[+-]?((\d+\.?\d*)|(\.\d+))(e[+-]?\d+)?$|^[+-]?(inf|infinity|nan)$"


@dataclass(frozen=True)
class FileSourceOptions:
    """Query options of a file source; see the module docstring.

    Raises:
        ConfigError: on an unknown format.
    """

    format: str | None = None
    label: str = "label"
    features: tuple[str, ...] | None = None
    key: str | None = None
    event_time: str | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(
                f"format={self.format!r} is not supported; expected one of "
                f"{', '.join(FORMATS)} (or feather, ipc, json, ndjson)"
            )

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]]) -> FileSourceOptions:
        """Build from ``(name, value)`` query pairs, all of them file-source options.

        Raises:
            ConfigError: on a repeated option, an empty value or an unknown format.
        """
        values: dict[str, str] = {}
        for name, value in pairs:
            if name in values:
                raise ConfigError(f"file source option {name!r} is given twice")
            if not value.strip():
                raise ConfigError(f"file source option {name}= is empty; expected a value")
            values[name] = value.strip()
        fmt = values.get("format")
        if fmt is not None:
            fmt = _FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
        features = values.get("features")
        return cls(
            format=fmt,
            label=values.get("label", "label"),
            features=None if features is None else tuple(f.strip() for f in features.split(",")),
            key=values.get("key"),
            event_time=values.get("event_time"),
        )


class _Piece(Protocol):
    """A unit of a partition: a file, or one Parquet row group."""

    name: str

    def count_rows(self) -> int: ...

    def batches(self) -> Iterator[pa.RecordBatch]: ...


class FileSource:
    """Files under one path, split into `spec.partitions` partitions.

    Args:
        spec: the source spec; `spec.uri` names the file or directory and its options.

    Raises:
        ConfigError: if the path does not exist, holds no data files, mixes formats, or an
            option is invalid (unknown format, label or feature column not in the data).
        SourceError: if the filesystem or the first file cannot be read.
    """

    def __init__(self, spec: SourceSpec) -> None:
        if spec.partitions < 1:
            raise ConfigError(f"partitions ({spec.partitions}) must be an integer >= 1")
        self.spec = spec
        self.filesystem, self.path, self.options = _resolve(spec.uri)
        self.format, self.files = _discover(self.filesystem, self.path, self.options, spec.uri)
        pieces: list[_Piece]
        if self.format == "jsonl":
            first = _read_json_chunk(self.filesystem, self.files[0], spec.uri)
            self.schema = _stream_schema(first.schema, self.options, spec.uri)
            columns = _columns(self.schema)
            pieces = [_JsonLinesPiece(self.filesystem, path, columns) for path in self.files]
        else:
            self.schema, pieces = self._dataset_pieces()
        self._assignment: list[list[_Piece]] = [[] for _ in range(spec.partitions)]
        for i, piece in enumerate(pieces):
            self._assignment[i % spec.partitions].append(piece)
        empty = [p for p, assigned in enumerate(self._assignment) if not assigned]
        if empty:
            logger.info(
                "partitions %s of %s are empty: %d piece(s) for %d partitions",
                empty,
                spec.uri,
                len(pieces),
                spec.partitions,
            )
        self._rows: dict[int, int] = {}

    def partitions(self) -> list[int]:
        """Ids of the partitions, ``0 .. spec.partitions - 1`` (some may be empty)."""
        return list(range(self.spec.partitions))

    def partition_rows(self, partition: int) -> int:
        """Rows in `partition` (counted once; a CSV or JSON file is scanned to count)."""
        if partition not in self._rows:
            self._rows[partition] = sum(p.count_rows() for p in self._pieces(partition))
        return self._rows[partition]

    def open(self, partition: int, offset: int = 0) -> FilePartitionReader:
        """Open `partition` positioned at `offset`.

        Raises:
            SourceError: if the partition does not exist or `offset` is past its end.
        """
        return FilePartitionReader(self, partition, offset)

    def _pieces(self, partition: int) -> list[_Piece]:
        if partition not in range(self.spec.partitions):
            raise SourceError(
                f"no partition {partition}; this source has partitions "
                f"0..{self.spec.partitions - 1}",
                uri=self.spec.uri,
            )
        return self._assignment[partition]

    def _dataset_pieces(self) -> tuple[StreamSchema, list[_Piece]]:
        """The schema and the pieces of a Parquet, IPC or CSV dataset."""
        skipped = _SkippedRows(self.spec.uri)
        try:
            dataset = ds.dataset(
                self.files,
                format=_dataset_format(self.format, skipped, text_columns=()),
                filesystem=self.filesystem,
            )
            schema = _stream_schema(dataset.schema, self.options, self.spec.uri)
            if self.format == "csv":
                numeric = (*schema.features, schema.label)
                dataset = ds.dataset(
                    self.files,
                    format=_dataset_format("csv", skipped, text_columns=numeric),
                    filesystem=self.filesystem,
                )
            fragments = list(dataset.get_fragments())
            if self.format == "parquet" and len(fragments) < self.spec.partitions:
                fragments = [rg for f in fragments for rg in f.split_by_row_group()]
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"cannot read {self.format} data: {exc}", uri=self.spec.uri) from exc
        columns = _columns(schema)
        return schema, [_FragmentPiece(f, self.format, columns) for f in fragments]


class FilePartitionReader:
    """One partition of a `FileSource`, read forward from an offset.

    Attributes:
        partition: the partition id.
        committed: the last committed offset (0 until `commit` is called).
    """

    def __init__(self, source: FileSource, partition: int, offset: int = 0) -> None:
        pieces = source._pieces(partition)
        self.partition = partition
        self.committed = 0
        self._source = source
        self._position = offset
        self._numeric = (*source.schema.features, source.schema.label)
        self._pending: pa.RecordBatch | None = None
        self._failure: str | None = None
        if offset < 0:
            raise SourceError(
                f"offset {offset} is negative", uri=source.spec.uri, partition=partition
            )
        first, skip = 0, offset
        for piece in pieces:
            rows = self._guard(piece.count_rows)
            if skip < rows:
                break
            skip -= rows
            first += 1
        else:
            if skip:
                raise SourceError(
                    f"offset {offset} is past the partition's end ({offset - skip} rows)",
                    uri=source.spec.uri,
                    partition=partition,
                )
        self._segments = self._iter_segments(pieces[first:], skip)

    @property
    def position(self) -> int:
        """Offset of the next row `read_batch` returns."""
        return self._position

    def read_batch(self, max_rows: int) -> SourceBatch | None:
        """Up to `max_rows` rows from the current position, or None when exhausted.

        A batch never mixes column types: it ends early where the next rows have a
        different schema (another file, or a run of rows with unparsable text).

        Raises:
            ConfigError: if `max_rows` < 1.
            SourceError: if a file cannot be read; the reader then stays failed, reopen it
                at `position` to retry.
        """
        if max_rows < 1:
            raise ConfigError(f"max_rows ({max_rows}) must be an integer >= 1")
        parts: list[pa.RecordBatch] = []
        rows = 0
        while rows < max_rows:
            segment = self._pending if self._pending is not None else self._next_segment()
            self._pending = None
            if segment is None:
                break
            if parts and not segment.schema.equals(parts[0].schema):
                self._pending = segment
                break
            take = min(segment.num_rows, max_rows - rows)
            if take < segment.num_rows:
                self._pending = segment.slice(take)
                segment = segment.slice(0, take)
            parts.append(segment)
            rows += take
        if not parts:
            return None
        batch = parts[0] if len(parts) == 1 else _concat(parts)
        first_offset = self._position
        self._position += rows
        return SourceBatch(partition=self.partition, first_offset=first_offset, batch=batch)

    def high_watermark(self) -> int:
        """The partition's row count (the files are bounded)."""
        return self._guard(lambda: self._source.partition_rows(self.partition))

    def commit(self, offset: int) -> None:
        """Record that every row before `offset` is durably learned.

        Raises:
            SourceError: if `offset` is negative or past the rows read so far.
        """
        if not 0 <= offset <= self._position:
            raise SourceError(
                f"cannot commit offset {offset}: expected 0..{self._position} "
                "(the rows read so far)",
                uri=self._source.spec.uri,
                partition=self.partition,
            )
        self.committed = offset

    def close(self) -> None:
        """Stop reading; later reads return None."""
        self._segments.close()
        self._pending = None

    def _iter_segments(
        self, pieces: list[_Piece], skip: int
    ) -> Generator[pa.RecordBatch, None, None]:
        for piece in pieces:
            for raw in piece.batches():
                if skip >= raw.num_rows:
                    skip -= raw.num_rows
                    continue
                if skip:
                    raw, skip = raw.slice(skip), 0
                for segment in _normalise(raw, self._numeric):
                    if segment.num_rows:
                        yield segment

    def _next_segment(self) -> pa.RecordBatch | None:
        if self._failure is not None:
            raise SourceError(
                f"the reader failed earlier ({self._failure}); reopen at offset {self._position}",
                uri=self._source.spec.uri,
                partition=self.partition,
            )
        try:
            return next(self._segments, None)
        except (pa.ArrowException, OSError) as exc:
            self._failure = str(exc)
            raise SourceError(
                f"cannot read at offset {self._position}: {exc}",
                uri=self._source.spec.uri,
                partition=self.partition,
            ) from exc

    def _guard(self, count: Callable[[], int]) -> int:
        try:
            return count()
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(
                f"cannot count rows: {exc}", uri=self._source.spec.uri, partition=self.partition
            ) from exc


def open_file_source(spec: SourceSpec) -> FileSource:
    """Open a file or directory stream.

    Args:
        spec: the source spec, e.g. ``SourceSpec("data/ticks?format=csv&label=y")``.

    Returns:
        The `FileSource`.

    Raises:
        ConfigError: on a missing path, an unknown option or format, or columns not found.
        SourceError: if the filesystem or the data cannot be read.
    """
    return FileSource(spec)


class _FragmentPiece:
    """A `pyarrow.dataset` fragment: a Parquet, IPC or CSV file, or one Parquet row group."""

    def __init__(self, fragment: ds.Fragment, fmt: str, columns: list[str]) -> None:
        self.fragment = fragment
        self.format = fmt
        self.columns = columns
        self.name = fragment.path
        self._rows: int | None = None

    def count_rows(self) -> int:
        if self._rows is None:
            if isinstance(self.fragment, ds.ParquetFileFragment):
                self._rows = sum(rg.num_rows for rg in self.fragment.row_groups)
            elif self.format == "csv":
                # Count by parsing, so that rows skipped as malformed are not counted.
                self._rows = sum(b.num_rows for b in self.fragment.to_batches(columns=[]))
            else:
                self._rows = self.fragment.count_rows()
        return self._rows

    def batches(self) -> Iterator[pa.RecordBatch]:
        present = set(self.fragment.physical_schema.names)
        columns = [c for c in self.columns if c in present]
        yield from self.fragment.to_batches(columns=columns)


class _JsonLinesPiece:
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

    def batches(self) -> Iterator[pa.RecordBatch]:
        for chunk in _chunks(self.filesystem, self.name):
            batch = _parse_json(chunk, self.name, self.columns)
            if batch.num_rows:
                yield batch


class _SkippedRows:
    """CSV invalid-row handler: skip the row, warn once per row."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._seen: set[tuple[int | None, str]] = set()

    def __call__(self, row: pa_csv.InvalidRow) -> str:
        key = (row.number, row.text)
        if key not in self._seen and len(self._seen) < 10_000:
            self._seen.add(key)
            logger.warning(
                "skipping malformed CSV row %s of %s: expected %d fields, got %d: %.200s",
                row.number,
                self.uri,
                row.expected_columns,
                row.actual_columns,
                row.text,
            )
        return "skip"


def _resolve(uri: str) -> tuple[pafs.FileSystem, str, FileSourceOptions]:
    """Filesystem, path and options of a source URI."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = [(k, v) for k, v in pairs if k in _OPTIONS]
    theirs = [(k, v) for k, v in pairs if k not in _OPTIONS]
    options = FileSourceOptions.from_pairs(ours)
    if len(scheme) <= 1 or scheme in ("file", "local"):
        if theirs:
            raise ConfigError(
                f"unknown file source option(s) {[k for k, _ in theirs]} in {uri!r}; "
                f"expected {', '.join(_OPTIONS)}"
            )
        if len(scheme) <= 1:  # a plain path (or a Windows drive letter): no unquoting
            path = uri.split("?", 1)[0]
        else:
            netloc = "" if parts.netloc in ("", "localhost") else parts.netloc
            path = unquote(netloc + parts.path)
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path)), options
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs), ""))
    try:
        filesystem, path = pafs.FileSystem.from_uri(base)
    except (pa.ArrowException, OSError, ImportError) as exc:
        raise SourceError(f"cannot open the filesystem: {exc}", uri=uri) from exc
    return filesystem, path, options


def _discover(
    filesystem: pafs.FileSystem, path: str, options: FileSourceOptions, uri: str
) -> tuple[str, list[str]]:
    """The format and sorted data files under `path`."""
    try:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ConfigError(f"no such file or directory: {path!r} (source {uri!r})")
        if info.type == pafs.FileType.File:
            files = [path]
        else:
            selector = pafs.FileSelector(path, recursive=True)
            files = sorted(
                i.path
                for i in filesystem.get_file_info(selector)
                if i.type == pafs.FileType.File and not _hidden(i.path[len(path) :])
            )
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot list {path!r}: {exc}", uri=uri) from exc
    by_format: dict[str, list[str]] = {}
    for name in files:
        fmt = _format_of(name)
        if fmt is not None:
            by_format.setdefault(fmt, []).append(name)
    if options.format is not None:
        matching = by_format.get(options.format, [])
        chosen = matching or files  # a named file, or extension-less part files
        if not chosen:
            raise ConfigError(f"no data files under {path!r} (source {uri!r})")
        return options.format, chosen
    if not by_format:
        raise ConfigError(
            f"cannot tell the format of {path!r}: no file ends in "
            f"{', '.join(e for exts in FORMATS.values() for e in exts)}; "
            "add ?format=parquet|arrow|csv|jsonl to the URI"
        )
    if len(by_format) > 1:
        raise ConfigError(
            f"{path!r} mixes formats {sorted(by_format)}; point at one format's files or "
            "add ?format=... to the URI to pick one"
        )
    (fmt, chosen), *_ = by_format.items()
    skipped = len(files) - len(chosen)
    if skipped:
        logger.info("ignoring %d file(s) under %s that are not %s", skipped, path, fmt)
    return fmt, chosen


def _columns(schema: StreamSchema) -> list[str]:
    """The columns a batch carries: features, label, then key and event time if declared."""
    names = [*schema.features, schema.label]
    return names + [c for c in (schema.key, schema.event_time) if c is not None]


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def _format_of(name: str) -> str | None:
    lower = name.lower()
    for fmt, extensions in FORMATS.items():
        if lower.endswith(extensions):
            return fmt
    return None


def _dataset_format(fmt: str, skipped: _SkippedRows, text_columns: Sequence[str]) -> ds.FileFormat:
    if fmt == "parquet":
        return ds.ParquetFileFormat()
    if fmt == "arrow":
        return ds.IpcFileFormat()
    return ds.CsvFileFormat(
        parse_options=pa_csv.ParseOptions(invalid_row_handler=skipped),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in text_columns},
            strings_can_be_null=True,
        ),
    )


def _stream_schema(arrow_schema: pa.Schema, options: FileSourceOptions, uri: str) -> StreamSchema:
    """The stream schema the options and the first file's columns imply."""
    names = arrow_schema.names
    for role, column in (
        ("label", options.label),
        ("key", options.key),
        ("event_time", options.event_time),
    ):
        if column is not None and column not in names:
            raise ConfigError(
                f"{role} column {column!r} not found in {uri!r}; its columns are {names}; "
                f"pass ?{role}=NAME"
            )
    carried = {options.label, options.key, options.event_time}
    if options.features is not None:
        missing = [f for f in options.features if f not in names]
        if missing:
            raise ConfigError(
                f"feature column(s) {missing} not found in {uri!r}; its columns are {names}"
            )
        features = options.features
    else:
        features = tuple(
            f.name for f in arrow_schema if f.name not in carried and _is_numeric(f.type)
        )
        ignored = [n for n in names if n not in carried and n not in features]
        if ignored:
            logger.info("%s: not using non-numeric column(s) %s as features", uri, ignored)
        if not features:
            raise ConfigError(
                f"no numeric feature columns in {uri!r} (columns {names}, label "
                f"{options.label!r}); pass ?features=a,b,c"
            )
    try:
        return StreamSchema(
            features=features, label=options.label, key=options.key, event_time=options.event_time
        )
    except SchemaError as exc:
        raise ConfigError(f"{exc} (source {uri!r})") from exc


def _is_numeric(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    )


def _normalise(batch: pa.RecordBatch, numeric: Sequence[str]) -> Iterator[pa.RecordBatch]:
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
        if _is_numeric(column.type) or pa.types.is_null(column.type):
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


def _concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
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


def _read_json_chunk(filesystem: pafs.FileSystem, path: str, uri: str) -> pa.RecordBatch:
    """The first chunk of a JSON-lines file, all of its columns (for the schema)."""
    try:
        chunk = next(_chunks(filesystem, path), b"")
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot read {path!r}: {exc}", uri=uri) from exc
    return _parse_json(chunk, path, None)


def _parse_json(chunk: bytes, path: str, columns: list[str] | None) -> pa.RecordBatch:
    """Parse a chunk of JSON lines; `columns` None keeps every column, in order seen."""
    lines = _count_lines(chunk)
    try:
        options = pa_json.ReadOptions(use_threads=False, block_size=max(len(chunk), 1 << 16) + 1)
        table = pa_json.read_json(io.BytesIO(chunk), read_options=options)
        if table.num_rows == lines:
            return _select(table, columns)
    except pa.ArrowInvalid:
        pass
    return _parse_json_slowly(chunk, path, columns)


def _select(table: pa.Table, columns: list[str] | None) -> pa.RecordBatch:
    names = table.column_names if columns is None else columns
    arrays = [
        table.column(n).combine_chunks() if n in table.column_names else pa.nulls(table.num_rows)
        for n in names
    ]
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def _parse_json_slowly(chunk: bytes, path: str, columns: list[str] | None) -> pa.RecordBatch:
    rows: list[dict[str, object]] = []
    malformed = 0
    for line in chunk.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            malformed += 1
            row = {}
        rows.append(row)
    if malformed:
        logger.warning(
            "%s: %d line(s) are not JSON objects; their fields are null", path, malformed
        )
    if columns is None:
        columns = list(dict.fromkeys(name for row in rows for name in row))
    arrays = [_python_column([row.get(name) for row in rows]) for name in columns]
    return pa.RecordBatch.from_arrays(arrays, names=columns)


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
