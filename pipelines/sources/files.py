"""A file stream, bounded or followed: Parquet, Arrow IPC (Feather v2), CSV or JSON lines.

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
- ``poll_s``: in follow mode, the least time between two listings of the directory
  (default 0.5 seconds).

Other query parameters of a remote URI (``region=...``) are passed on to pyarrow.

Offsets: an offset is a record's index within its partition. A record is a Parquet or IPC
row, a non-blank CSV data line or a non-blank JSON line, whether it becomes a row or a
dead letter: every record read has an offset, and a reader opened at offset N skips
exactly N records.

Bounded (the default): the files present at start. Files are dealt round-robin, in sorted
path order, to ``spec.partitions`` partitions; with fewer Parquet files than partitions,
row groups are dealt instead; otherwise some partitions are empty.

Follow (``SourceSpec(..., follow=True)``, a directory only): every partition is live. It
holds the files present at start and every file that lands later; the reader lists the
directory at most every ``poll_s``, `FilePartitionReader.read_batch` waits up to
``max_wait_s`` for new records and returns an empty batch if none came, and
`FilePartitionReader.high_watermark` counts the records of the files known so far. A file
belongs to partition ``crc32(path relative to the directory) % partitions`` and a
partition's files are read in (modification time, relative path) order, so assignment is
stable as files arrive and offsets are stable across restarts; files are never split by
row group. That holds if writers keep a contract: write a file under a hidden name
(leading ``.`` or ``_``) and rename it into place when complete, so a half-written file is
never read; never change or remove a landed file; land files in modification-time order.
See `pipelines.sources._file_follow`. An empty directory can be followed if ``format=``
and ``features=`` name the columns (the schema otherwise comes from the first file).

Bad records never stop a reader:

- Records that cannot become rows come back in `SourceBatch.dead_letters`, with reason,
  partition, offset and the raw text: a CSV line with the wrong number of fields, a JSON
  line that does not parse or is not an object.
- Bad values survive to be dead-lettered by `StreamSchema.validate`: numeric columns are
  cast to float32 (nulls and NaN kept); CSV feature and label columns are read as text
  and parsed here, so one ``"abc"`` cuts a batch around that row instead of failing the
  read; JSON lines that pyarrow cannot read (a field that changes type) are parsed line
  by line.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "rows.parquet")
    >>> pq.write_table(pa.table({"a": [0.5, 1.5], "label": [0, 1]}), path)
    >>> source = open_file_source(SourceSpec(path, partitions=1))
    >>> source.schema.features, source.open(0).read_batch(10).batch.num_rows
    (('a',), 2)
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from actors.errors import ConfigError, SchemaError, SourceError
from pipelines.schema import DeadLetter, StreamSchema, is_numeric
from pipelines.sources._file_follow import DirectoryWatcher, hidden
from pipelines.sources._file_formats import (
    BadRecord,
    CsvPiece,
    FragmentPiece,
    Item,
    JsonLinesPiece,
    Piece,
    concat,
    normalise,
    read_json_chunk,
    skip_row,
)
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
_OPTIONS = ("format", "label", "features", "key", "event_time", "poll_s")
_DEFAULT_POLL_S = 0.5


@dataclass(frozen=True)
class FileSourceOptions:
    """Query options of a file source; see the module docstring.

    Raises:
        ConfigError: on an unknown format or a `poll_s` that is not a number > 0.
    """

    format: str | None = None
    label: str = "label"
    features: tuple[str, ...] | None = None
    key: str | None = None
    event_time: str | None = None
    poll_s: float = _DEFAULT_POLL_S

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(
                f"format={self.format!r} is not supported; expected one of "
                f"{', '.join(FORMATS)} (or feather, ipc, json, ndjson)"
            )
        if not (math.isfinite(self.poll_s) and self.poll_s > 0):
            raise ConfigError(f"poll_s ({self.poll_s}) must be a number of seconds > 0")

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]]) -> FileSourceOptions:
        """Build from ``(name, value)`` query pairs, all of them file-source options.

        Raises:
            ConfigError: on a repeated option, an empty value, an unknown format or a
                `poll_s` that is not a number > 0.
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
        poll_s = values.get("poll_s")
        try:
            poll = _DEFAULT_POLL_S if poll_s is None else float(poll_s)
        except ValueError:
            raise ConfigError(
                f"file source option poll_s={poll_s!r} is not a number; expected seconds "
                "between directory listings, e.g. poll_s=0.5"
            ) from None
        return cls(
            format=fmt,
            label=values.get("label", "label"),
            features=None if features is None else tuple(f.strip() for f in features.split(",")),
            key=values.get("key"),
            event_time=values.get("event_time"),
            poll_s=poll,
        )


class FileSource:
    """Files under one path, split into `spec.partitions` partitions.

    Args:
        spec: the source spec; `spec.uri` names the file or directory and its options;
            `spec.follow` watches a directory for files that land later.

    Raises:
        ConfigError: if the path does not exist, holds no data files, mixes formats, or an
            option is invalid (unknown format, label or feature column not in the data);
            if `spec.follow` is set and the path is not a directory.
        SourceError: if the filesystem or the first file cannot be read.
    """

    def __init__(self, spec: SourceSpec) -> None:
        if spec.partitions < 1:
            raise ConfigError(f"partitions ({spec.partitions}) must be an integer >= 1")
        self.spec = spec
        self.filesystem, self.path, self.options = _resolve(spec.uri)
        if self.options.poll_s != _DEFAULT_POLL_S and not spec.follow:
            logger.info("%s: poll_s has no effect without follow", spec.uri)
        self.format, self.files = _discover(
            self.filesystem, self.path, self.options, spec.uri, follow=spec.follow
        )
        self.schema = self._inspect()
        self._columns = _columns(self.schema)
        self._text_columns = (*self.schema.features, self.schema.label)
        self._pieces_by_path: dict[str, Piece] = {}
        self._rows: dict[int, int] = {}
        self._assignment: list[list[Piece]] = [[] for _ in range(spec.partitions)]
        self._bare_names = bool(self.files) and all(_format_of(f) is None for f in self.files)
        self.watcher: DirectoryWatcher | None = None
        if spec.follow:
            self.watcher = DirectoryWatcher(
                self.filesystem,
                self.path,
                spec.partitions,
                accept=self._accepts,
                poll_s=self.options.poll_s,
                uri=spec.uri,
            )
            self.watcher.poll(force=True)
            return
        split = self.format == "parquet" and len(self.files) < spec.partitions
        pieces = self._make_pieces(self.files, split_row_groups=split)
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

    def partitions(self) -> list[int]:
        """Ids of the partitions, ``0 .. spec.partitions - 1`` (some may be empty)."""
        return list(range(self.spec.partitions))

    def partition_rows(self, partition: int) -> int:
        """Records in `partition` (a CSV or JSON file is scanned once to count).

        Followed, the records of the files known now (listing again if `poll_s` passed).
        """
        self._check_partition(partition)
        if self.watcher is not None:
            self.watcher.poll()
            return sum(self._piece(f.path).count_rows() for f in self.watcher.landed(partition))
        if partition not in self._rows:
            self._rows[partition] = sum(p.count_rows() for p in self._assignment[partition])
        return self._rows[partition]

    def open(self, partition: int, offset: int | None = None) -> FilePartitionReader:
        """Open `partition` positioned at `offset`.

        Args:
            partition: the partition id.
            offset: the record to start at; ``None`` starts at 0, because files keep no
                committed offsets (the member's checkpoint holds them).

        Raises:
            SourceError: if the partition does not exist or `offset` is past its end.
        """
        return FilePartitionReader(self, partition, 0 if offset is None else offset)

    def _check_partition(self, partition: int) -> None:
        if partition not in range(self.spec.partitions):
            raise SourceError(
                f"no partition {partition}; this source has partitions "
                f"0..{self.spec.partitions - 1}",
                uri=self.spec.uri,
            )

    def _bounded_pieces(self, partition: int) -> list[Piece]:
        return list(self._assignment[partition])

    def _landed_pieces(
        self, partition: int, since: int, force: bool = False
    ) -> tuple[list[tuple[tuple[int, str], Piece]], int]:
        """Pieces of files landed in `partition` after the first `since`, with their
        order keys, and the new `since` (follow mode)."""
        if self.watcher is None:
            return [], since
        self.watcher.poll(force=force)
        landed = self.watcher.landed(partition, since)
        pieces = [(f.order_key, self._piece(f.path)) for f in landed]
        return pieces, since + len(landed)

    def _seconds_to_next_poll(self) -> float:
        return 0.0 if self.watcher is None else self.watcher.seconds_to_next_poll()

    def _accepts(self, relative: str) -> bool:
        """Whether a file that lands in a followed directory belongs to the stream: it
        has the format's extension, or has none where the files at start had none."""
        fmt = _format_of(relative)
        if fmt == self.format:
            return True
        return fmt is None and self._bare_names

    def _piece(self, path: str) -> Piece:
        """The whole-file piece of `path`, made once (so its count is kept)."""
        piece = self._pieces_by_path.get(path)
        if piece is None:
            piece = self._pieces_by_path[path] = self._make_pieces([path], False)[0]
        return piece

    def _make_pieces(self, paths: Sequence[str], split_row_groups: bool) -> list[Piece]:
        if self.format == "jsonl":
            return [JsonLinesPiece(self.filesystem, p, self._columns) for p in paths]
        if self.format == "csv":
            return [CsvPiece(self.filesystem, p, self._columns, self._text_columns) for p in paths]
        file_format = ds.ParquetFileFormat() if self.format == "parquet" else ds.IpcFileFormat()
        try:
            fragments = [file_format.make_fragment(p, filesystem=self.filesystem) for p in paths]
            if split_row_groups:
                fragments = [rg for f in fragments for rg in f.split_by_row_group()]
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"cannot read {self.format} data: {exc}", uri=self.spec.uri) from exc
        return [FragmentPiece(f, self._columns) for f in fragments]

    def _inspect(self) -> StreamSchema:
        """The stream schema: from the first file, or from the options alone when a
        followed directory has no file yet."""
        if not self.files:
            return _declared_schema(self.options, self.spec.uri)
        first = self.files[0]
        if self.format == "jsonl":
            batch = read_json_chunk(self.filesystem, first, self.spec.uri)
            return _stream_schema(batch.schema, self.options, self.spec.uri)
        try:
            if self.format == "csv":
                parse = pa_csv.ParseOptions(invalid_row_handler=skip_row)
                file_format: ds.FileFormat = ds.CsvFileFormat(parse_options=parse)
            elif self.format == "parquet":
                file_format = ds.ParquetFileFormat()
            else:
                file_format = ds.IpcFileFormat()
            arrow_schema = file_format.make_fragment(first, self.filesystem).physical_schema
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(
                f"cannot read {self.format} file {first!r}: {exc}", uri=self.spec.uri
            ) from exc
        return _stream_schema(arrow_schema, self.options, self.spec.uri)


class FilePartitionReader:
    """One partition of a `FileSource`, read forward from an offset.

    Bounded, `read_batch` returns None at the end of the partition's files; followed (a
    live partition), it waits for files to land instead and never returns None.

    Attributes:
        partition: the partition id.
        committed: the last committed offset (0 until `commit` is called).
    """

    def __init__(self, source: FileSource, partition: int, offset: int = 0) -> None:
        source._check_partition(partition)
        if offset < 0:
            raise SourceError(
                f"offset {offset} is negative", uri=source.spec.uri, partition=partition
            )
        self.partition = partition
        self.committed = 0
        self._source = source
        self._live = source.watcher is not None
        self._position = offset
        self._numeric = (*source.schema.features, source.schema.label)
        self._empty_schema = source.schema.arrow_schema()
        self._pending: pa.RecordBatch | None = None
        self._failure: str | None = None
        self._closed = threading.Event()
        # The partition's pieces in read order; those before `_started` are begun (or
        # skipped); `_keys` are their order keys (follow mode), `_seen` how much of the
        # source's log of landed files has been merged in.
        self._pieces: list[Piece] = []
        self._keys: list[tuple[int, str]] = []
        self._seen = 0
        self._started = 0
        self._items: Generator[Item, None, None] | None = None
        if self._live:
            self._merge_landed()
        else:
            self._pieces = source._bounded_pieces(partition)
        found = self._seek(offset)
        if not found and self._live:
            self._merge_landed(force=True)  # files may have landed since the last listing
            found = self._seek(offset)
        if not found:
            known = sum(self._guard(p.count_rows) for p in self._pieces)
            hint = "; followed files must stay in the directory" if self._live else ""
            raise SourceError(
                f"offset {offset} is past the partition's end ({known} records){hint}",
                uri=source.spec.uri,
                partition=partition,
            )

    @property
    def position(self) -> int:
        """Offset of the next record `read_batch` returns."""
        return self._position

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        """Up to `max_rows` records from the current position (rows and dead letters).

        A batch never mixes column types: it ends early where the next rows have a
        different schema (another file, or a run of rows with unparsable text). Records
        that cannot become rows are in `SourceBatch.dead_letters`, at their offsets; the
        rows' offsets are then in `SourceBatch.offsets`.

        Args:
            max_rows: most records to return (rows plus dead letters).
            max_wait_s: followed, how long to wait for records to land when none are
                known; a bounded partition never waits.

        Returns:
            The batch; bounded, None once the files are exhausted; followed, an empty
            batch when nothing landed within `max_wait_s`. After `close`, None.

        Raises:
            ConfigError: if `max_rows` < 1 or `max_wait_s` < 0.
            SourceError: if a file cannot be read; the reader then stays failed, reopen it
                at `position` to retry.
        """
        if max_rows < 1:
            raise ConfigError(f"max_rows ({max_rows}) must be an integer >= 1")
        if not max_wait_s >= 0:
            raise ConfigError(f"max_wait_s ({max_wait_s}) must be a number of seconds >= 0")
        if self._closed.is_set():
            return None
        if not self._live:
            return self._take(max_rows)
        deadline = time.monotonic() + max_wait_s
        while True:
            read = self._take(max_rows)
            if read is not None:
                return read
            if self._merge_landed():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed.is_set():
                return SourceBatch.empty(self.partition, self._position, self._empty_schema)
            # Sleep until the next listing is due (or the wait ends); `close` wakes it.
            self._closed.wait(max(1e-3, min(remaining, self._source._seconds_to_next_poll())))

    def high_watermark(self) -> int:
        """Records in the partition: bounded, all of them; followed, those in the files
        known now (listing again if `poll_s` has passed)."""
        if not self._live:
            return self._guard(lambda: self._source.partition_rows(self.partition))
        self._merge_landed()
        return sum(self._guard(p.count_rows) for p in self._pieces)

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
        """Stop reading (waking a waiting `read_batch`); later reads return None."""
        self._closed.set()
        if self._items is not None:
            self._items.close()
        self._items = None
        self._pending = None

    def _seek(self, offset: int) -> bool:
        """Start reading at record `offset`; False if the known pieces hold fewer."""
        skip = offset
        for index, piece in enumerate(self._pieces):
            rows = self._guard(piece.count_rows)
            if skip < rows:
                self._started = index
                if skip:  # begin the piece now, so no landed file sorts in before it
                    self._items = self._piece_items(piece, skip)
                    self._started += 1
                return True
            skip -= rows
        self._started = len(self._pieces)
        return skip == 0

    def _merge_landed(self, force: bool = False) -> bool:
        """Sort files that landed since the last merge into the pieces; whether any did.

        A file sorts into the pieces not yet begun by its order key. One whose key is
        before a piece already begun cannot go where a restarted reader would put it: it
        is read next, with a warning.
        """
        landed, self._seen = self._source._landed_pieces(self.partition, self._seen, force)
        for key, piece in landed:
            begun = self._keys[self._started - 1] if self._started else None
            if begun is not None and key < begun:
                index = self._started
                logger.warning(
                    "%s: %s landed with a modification time before that of a file partition "
                    "%d has already read from; it is read next, but a reader restarted from "
                    "a checkpoint orders it earlier, so offsets from here on will differ. "
                    "Land files in modification-time order (write under a hidden name, "
                    "rename when complete)",
                    self._source.spec.uri,
                    piece.name,
                    self.partition,
                )
            else:
                index = bisect.bisect_right(self._keys, key, lo=self._started)
            self._keys.insert(index, key)
            self._pieces.insert(index, piece)
        return bool(landed)

    def _take(self, max_rows: int) -> SourceBatch | None:
        """Up to `max_rows` records from the known pieces; None if they have no more."""
        start = at = self._position
        parts: list[pa.RecordBatch] = []
        offsets: list[np.ndarray] = []
        dead: list[DeadLetter] = []
        while at - start < max_rows:
            item = self._pending if self._pending is not None else self._next_item()
            self._pending = None
            if item is None:
                break
            if isinstance(item, BadRecord):
                dead.append(DeadLetter(self.partition, at, item.reason, item.text))
                at += 1
                continue
            if parts and not item.schema.equals(parts[0].schema):
                self._pending = item
                break
            take = min(item.num_rows, max_rows - (at - start))
            if take < item.num_rows:
                self._pending = item.slice(take)
                item = item.slice(0, take)
            parts.append(item)
            offsets.append(np.arange(at, at + take, dtype=np.int64))
            at += take
        if at == start:
            return None
        self._position = at
        if not parts:
            batch = pa.RecordBatch.from_pylist([], schema=self._empty_schema)
        else:
            batch = parts[0] if len(parts) == 1 else concat(parts)
        if not dead:
            return SourceBatch(partition=self.partition, first_offset=start, batch=batch)
        return SourceBatch(
            partition=self.partition,
            first_offset=start,
            batch=batch,
            offsets=np.concatenate(offsets) if offsets else np.empty(0, np.int64),
            end_offset=at,
            dead_letters=tuple(dead),
        )

    def _next_item(self) -> Item | None:
        if self._failure is not None:
            raise SourceError(
                f"the reader failed earlier ({self._failure}); reopen at offset {self._position}",
                uri=self._source.spec.uri,
                partition=self.partition,
            )
        try:
            while True:
                if self._items is not None:
                    item = next(self._items, None)
                    if item is not None:
                        return item
                    self._items = None
                if self._started >= len(self._pieces):
                    return None
                piece = self._pieces[self._started]
                self._started += 1
                self._items = self._piece_items(piece, 0)
        except (pa.ArrowException, OSError) as exc:
            self._failure = str(exc)
            raise SourceError(
                f"cannot read at offset {self._position}: {exc}",
                uri=self._source.spec.uri,
                partition=self.partition,
            ) from exc

    def _piece_items(self, piece: Piece, skip: int) -> Generator[Item, None, None]:
        """The piece's records from the `skip`-th on, rows normalised to float32."""
        for item in piece.items():
            if isinstance(item, BadRecord):
                if skip:
                    skip -= 1
                else:
                    yield item
                continue
            if skip >= item.num_rows:
                skip -= item.num_rows
                continue
            if skip:
                item, skip = item.slice(skip), 0
            for segment in normalise(item, self._numeric):
                if segment.num_rows:
                    yield segment

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
        spec: the source spec, e.g. ``SourceSpec("data/ticks?format=csv&label=y")``, or
            ``SourceSpec("s3://bucket/landing", follow=True)`` to follow a directory.

    Returns:
        The `FileSource`.

    Raises:
        ConfigError: on a missing path, an unknown option or format, columns not found,
            or follow on a path that is not a directory.
        SourceError: if the filesystem or the data cannot be read.
    """
    return FileSource(spec)


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
    filesystem: pafs.FileSystem,
    path: str,
    options: FileSourceOptions,
    uri: str,
    follow: bool = False,
) -> tuple[str, list[str]]:
    """The format and sorted data files under `path` (none only for a followed
    directory whose columns the options name)."""
    try:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ConfigError(f"no such file or directory: {path!r} (source {uri!r})")
        if info.type == pafs.FileType.File:
            if follow:
                raise ConfigError(
                    f"follow watches a directory for files that land in it, but {path!r} is "
                    f"a file (source {uri!r}); point the URI at the directory, or drop follow"
                )
            files = [path]
        else:
            selector = pafs.FileSelector(path, recursive=True)
            files = sorted(
                i.path
                for i in filesystem.get_file_info(selector)
                if i.type == pafs.FileType.File and not hidden(i.path[len(path) :])
            )
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot list {path!r}: {exc}", uri=uri) from exc
    by_format: dict[str, list[str]] = {}
    for name in files:
        fmt = _format_of(name)
        if fmt is not None:
            by_format.setdefault(fmt, []).append(name)
    if follow and not files and options.format is not None and options.features is not None:
        return options.format, []  # the schema comes from the options
    follow_hint = (
        "; to follow a directory before its first file lands, name the columns: "
        "?format=parquet|arrow|csv|jsonl&features=a,b (and label=NAME if not 'label')"
        if follow
        else ""
    )
    if options.format is not None:
        matching = by_format.get(options.format, [])
        chosen = matching or files  # a named file, or extension-less part files
        if not chosen:
            raise ConfigError(f"no data files under {path!r} (source {uri!r}){follow_hint}")
        return options.format, chosen
    if not by_format:
        if not files:
            raise ConfigError(f"no data files under {path!r} (source {uri!r}){follow_hint}")
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


def _declared_schema(options: FileSourceOptions, uri: str) -> StreamSchema:
    """The schema the options name (a followed directory with no file yet)."""
    try:
        return StreamSchema(
            features=options.features or (),
            label=options.label,
            key=options.key,
            event_time=options.event_time,
        )
    except SchemaError as exc:
        raise ConfigError(f"{exc} (source {uri!r})") from exc


def _columns(schema: StreamSchema) -> list[str]:
    """The columns a batch carries: features, label, then key and event time if declared."""
    names = [*schema.features, schema.label]
    return names + [c for c in (schema.key, schema.event_time) if c is not None]


def _format_of(name: str) -> str | None:
    lower = name.lower()
    for fmt, extensions in FORMATS.items():
        if lower.endswith(extensions):
            return fmt
    return None


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
            f.name for f in arrow_schema if f.name not in carried and is_numeric(f.type)
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
