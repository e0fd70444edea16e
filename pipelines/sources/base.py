"""The one interface every stream source implements.

A source is described by a `SourceSpec` (a URI plus a few options); the spec is small
and picklable, so the driver hands it to each member actor and the member opens its
own partitions with `open_source(spec)`. Rows never pass through the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pyarrow as pa

from pipelines.schema import StreamSchema

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
    """

    uri: str
    partitions: int = 4
    rows: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class SourceBatch:
    """Rows read from one partition, starting at `first_offset`."""

    partition: int
    first_offset: int
    batch: pa.RecordBatch

    @property
    def next_offset(self) -> int:
        return self.first_offset + self.batch.num_rows


@runtime_checkable
class PartitionReader(Protocol):
    """An open partition, read forward from an offset."""

    partition: int

    @property
    def position(self) -> int:
        """Offset of the next row `read_batch` returns."""
        ...

    def read_batch(self, max_rows: int) -> SourceBatch | None:
        """Up to `max_rows` rows, or None when a bounded partition is exhausted."""
        ...

    def high_watermark(self) -> int | None:
        """Offset one past the newest row available, if the source knows it (for lag)."""
        ...

    def commit(self, offset: int) -> None:
        """Record that every row before `offset` is durably learned."""
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

    def open(self, partition: int, offset: int = 0) -> PartitionReader:
        """Open one partition, positioned at `offset`."""
        ...
