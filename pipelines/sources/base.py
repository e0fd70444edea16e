"""The one interface every stream source implements.

A source is described by a `SourceSpec` (a URI plus a few options); the spec is small
and picklable, so the driver hands it to each member actor and the member opens its
own partitions with `open_source(spec)`. Rows never pass through the driver.

A partition is either *bounded* (a synthetic stream, a set of files: it ends) or *live*
(Kafka, a followed directory, a rate-limited generator: more rows may arrive).
`PartitionReader.read_batch` tells the three cases apart:

- a `SourceBatch` with rows: data, possibly fewer rows than asked for;
- a `SourceBatch` with no rows: a live partition had nothing new within `max_wait_s`;
- ``None``: a bounded partition is exhausted; it never has more rows.

Offsets are the source's own positions within a partition: a row index for synthetic
streams and files, a message offset for Kafka. A batch whose rows do not have
consecutive offsets (Kafka: one Arrow message holds many rows, all at the message's
offset; a compacted topic has gaps) carries them in `SourceBatch.offsets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from pipelines.schema import DeadLetter, StreamSchema

__all__ = ["PartitionReader", "SourceBatch", "SourceSpec", "StreamSource"]


@dataclass(frozen=True)
class SourceSpec:
    """What a member needs to open a source by itself.

    Args:
        uri: where the stream is, e.g. ``synthetic://hyperplane`` or ``file:///data/dir``.
        partitions: how many partitions to split the stream into, for sources that can
            be split freely (synthetic, files). Sources with fixed partitions ignore it.
        rows: cap on the total rows of a synthetic stream (``None``: its default).
        seed: seed of synthetic streams.
        follow: for a directory of files, keep watching it for new files (a live
            source) instead of ending after the files present at start.
    """

    uri: str
    partitions: int = 4
    rows: int | None = None
    seed: int = 0
    follow: bool = False


@dataclass(frozen=True)
class SourceBatch:
    """Rows read from one partition, starting at `first_offset`.

    Args:
        partition: the partition the rows come from.
        first_offset: offset of the first row (for an empty batch: the reader's position).
        batch: the rows; may have none (a live partition with nothing new).
        offsets: per-row offsets (int64, one per row) when they are not
            ``first_offset, first_offset + 1, ...``; None when they are.
        end_offset: the position after this batch, when it is not
            ``first_offset + batch.num_rows`` (Kafka: one past the last message read).
        dead_letters: records the source could not turn into rows (unparseable JSON, a
            CSV line with the wrong field count); the member counts and sinks them.
    """

    partition: int
    first_offset: int
    batch: pa.RecordBatch
    offsets: np.ndarray | None = None
    end_offset: int | None = None
    dead_letters: tuple[DeadLetter, ...] = ()

    @property
    def next_offset(self) -> int:
        """The position after this batch: where the next read starts."""
        if self.end_offset is not None:
            return self.end_offset
        return self.first_offset + self.batch.num_rows

    def row_offsets(self) -> np.ndarray:
        """The source offset of each row (int64)."""
        if self.offsets is not None:
            return self.offsets
        return np.arange(self.first_offset, self.first_offset + self.batch.num_rows, dtype=np.int64)

    @classmethod
    def empty(cls, partition: int, position: int, schema: pa.Schema) -> SourceBatch:
        """The answer of a live partition with nothing new: no rows, at `position`."""
        return cls(partition, position, pa.RecordBatch.from_pylist([], schema=schema))


@runtime_checkable
class PartitionReader(Protocol):
    """An open partition, read forward from an offset."""

    partition: int

    @property
    def position(self) -> int:
        """Offset of the next row `read_batch` returns."""
        ...

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        """Up to `max_rows` rows; None once a bounded partition is exhausted.

        A live partition waits up to `max_wait_s` for its first row and returns an empty
        batch if none arrived; it never returns None. A bounded one never waits.
        """
        ...

    def high_watermark(self) -> int | None:
        """Offset one past the newest row available, if the source knows it (for lag)."""
        ...

    def commit(self, offset: int) -> None:
        """Record that every row before `offset` is durably learned.

        Members call it only after a checkpoint holding `offset` is written, so a source
        that keeps commits (a Kafka consumer group) never runs ahead of the state.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class StreamSource(Protocol):
    """A partitioned, labelled stream with a declared schema."""

    spec: SourceSpec
    schema: StreamSchema

    def partitions(self) -> list[int]:
        """Ids of the partitions this source has."""
        ...

    def open(self, partition: int, offset: int | None = None) -> PartitionReader:
        """Open one partition, positioned at `offset`.

        ``None`` resumes from the offset the source has committed for this partition
        (a Kafka consumer group's), or from the start when it keeps none.
        """
        ...
