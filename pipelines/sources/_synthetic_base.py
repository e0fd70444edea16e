"""What every ``synthetic://`` generator shares: the block scheme, the layout, the protocol.

A generator produces a partition's rows in fixed blocks of `BLOCK_ROWS`, each from its
own ``SeedSequence(seed, spawn_key=(prefix, partition, block))``; the prefix is the
generator's own, so no two generators share a random stream. Prefixes in use:

====  ==========================================================================
0     hyperplane: the concept (``(0,)``)
1     hyperplane: rows
2     periodic: each partition's phase (``(2, partition)``)
3     periodic: observation noise
4     sea: rows
5     agrawal: rows
6     delivery: each partition's shops and climate (``(6, partition)``)
7     delivery: rows (per shop-hour draws)
====  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from pipelines.schema import StreamSchema
from pipelines.sources._synthetic_options import cycled
from pipelines.sources.base import SourceSpec

BLOCK_ROWS = 4096
"""Rows per generated block; part of the stream's identity (changing it changes the data)."""

DEFAULT_ROWS = 1_000_000


@dataclass(frozen=True)
class PartitionLayout:
    """How the rows of a synthetic stream split over its partitions.

    Args:
        total_rows: rows over all partitions.
        partitions: number of partitions; the remainder rows go to the first ones.
    """

    total_rows: int
    partitions: int

    @classmethod
    def of(cls, spec: SourceSpec, rows_option: int | None) -> PartitionLayout:
        """The layout of `spec`; the URI's ``rows`` option wins over `spec.rows`."""
        return cls(rows_option or spec.rows or DEFAULT_ROWS, spec.partitions)

    def partition_rows(self, partition: int) -> int:
        """Number of rows of `partition`."""
        base, extra = divmod(self.total_rows, self.partitions)
        return base + (1 if partition < extra else 0)

    def switch_offset(self, partition: int, drift_at: tuple[float | None, ...]) -> int | None:
        """First offset of `partition` after its drift (`drift_at` cycled); None: no drift."""
        fraction = cycled(drift_at, partition)
        if fraction is None:
            return None
        return int(fraction * self.partition_rows(partition))


class SyntheticGenerator(Protocol):
    """What `SyntheticSource` needs from a generator: schemas and columns, block by block.

    A generator is a pure function of its options, the seed and the layout, so a block is
    the same whichever reader (or process) asks for it.

    Attributes:
        schema: features, label, key and event time of the stream.
        arrow_schema: every column of a batch, in order: the schema's features and label
            plus any carried column (a key, an event time, columns that are not features).
        layout: rows per partition.
    """

    schema: StreamSchema
    arrow_schema: pa.Schema
    layout: PartitionLayout

    def switch_offset(self, partition: int) -> int | None:
        """First offset of `partition` after its drift; None for no drift."""
        ...

    def noise(self, partition: int) -> float:
        """The noise level of `partition` (its meaning depends on the generator)."""
        ...

    def generate_columns(self, partition: int, block: int) -> dict[str, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: one array per `arrow_schema` column.

        A block is always generated in full so that a row never depends on the
        partition's length; readers cut it to the partition. Arrays are read-only, of
        length `BLOCK_ROWS`, features and label float32.
        """
        ...


def block_rng(seed: int, prefix: int, partition: int, block: int) -> np.random.Generator:
    """The random stream of one block: ``SeedSequence(seed, spawn_key=(prefix, p, block))``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(prefix, partition, block)))


def block_offsets(block: int) -> np.ndarray:
    """Partition offsets of the rows of `block` (int64)."""
    return np.arange(block * BLOCK_ROWS, (block + 1) * BLOCK_ROWS, dtype=np.int64)


def drifted(offsets: np.ndarray, switch_offset: int | None) -> np.ndarray:
    """Which of `offsets` lie at or after the switch (all False without one)."""
    if switch_offset is None:
        return np.zeros(offsets.shape, dtype=bool)
    return np.asarray(offsets >= switch_offset)


def feature_label_columns(
    schema: StreamSchema, x: np.ndarray, y: np.ndarray
) -> dict[str, np.ndarray]:
    """The columns of a stream that has only features (rows of `x`) and a label `y`."""
    columns = dict(zip(schema.features, x, strict=True))
    columns[schema.label] = y
    return columns


def frozen(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`columns` with every array made read-only (a block is shared through a cache)."""
    for array in columns.values():
        array.flags.writeable = False
    return columns


class PerPartitionDrift:
    """`switch_offset` and `noise` for a generator whose options hold per-partition
    ``drift_at`` and ``noise`` lists (cycled over partitions)."""

    options: Any
    layout: PartitionLayout

    def switch_offset(self, partition: int) -> int | None:
        """First offset of `partition` after its drift; None for no drift."""
        return self.layout.switch_offset(partition, self.options.drift_at)

    def noise(self, partition: int) -> float:
        """The noise of `partition` (a label-flip probability; periodic: a std)."""
        return float(cycled(self.options.noise, partition))
