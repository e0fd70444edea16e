"""``synthetic://sea``: the SEA concepts of Street and Kim (2001), with an abrupt switch.

Three float32 features ``f0, f1, f2``, uniform in [0, 10]; only ``f0`` and ``f1`` matter.
The float32 label is ``1 if f0 + f1 <= theta`` (the sum taken in float64 of the float32
values, so a rule applied to a batch reproduces its clean labels exactly), with the four
standard thresholds `SEA_THRESHOLDS` = (8, 9, 7, 9.5), concepts 0 to 3. About 32%, 41%,
25% and 45% of the rows are positive under them.

Each partition starts on concept ``concept`` and switches abruptly at ``drift_at`` to
``drift_concept``; both are comma lists cycled over partitions like ``drift_at`` and
``noise``, so partitions can start on different concepts. Labels are then flipped with the
partition's ``noise`` probability. The default switch, 8 -> 7, relabels about 7.5% of the
rows, the standard SEA step: a small, abrupt drift that a model must notice under noise.

Options: ``concept`` (0..3, default 0), ``drift_concept`` (0..3, default 2),
``drift_at`` (default 0.5), ``noise`` (flip probability in [0, 1], default 0.1), ``rows``,
``rate``. Rows of block ``b`` of partition ``p`` come from spawn key ``(4, p, b)``.

Example:
    >>> from pipelines.sources import SourceSpec, open_source
    >>> source = open_source(SourceSpec("synthetic://sea?rows=100&noise=0", partitions=2))
    >>> source.schema.features, source.generator.threshold(0, 0)
    (('f0', 'f1', 'f2'), 8.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.errors import ConfigError
from pipelines.schema import StreamSchema
from pipelines.sources._synthetic_base import (
    BLOCK_ROWS,
    PartitionLayout,
    PerPartitionDrift,
    block_offsets,
    block_rng,
    drifted,
    frozen,
)
from pipelines.sources._synthetic_options import (
    check_choices,
    check_drift_at,
    check_flip_noise,
    check_rows,
    cycled,
    parse_drift_at,
    parse_flip_noise,
    parse_ints,
    parse_rows,
    query_values,
)
from pipelines.sources.base import SourceSpec

__all__ = ["SEA_THRESHOLDS", "SeaGenerator", "SeaOptions", "sea_schema"]

SEA_THRESHOLDS = (8.0, 9.0, 7.0, 9.5)
"""``theta`` of SEA concepts 0..3: the label is ``f0 + f1 <= theta``."""

_OPTIONS = ("concept", "drift_concept", "drift_at", "noise", "rows")
_SPAWN_PREFIX = 4


def sea_schema() -> StreamSchema:
    """The schema of a SEA stream: features ``f0, f1, f2``, label ``label``."""
    return StreamSchema(features=("f0", "f1", "f2"), label="label")


@dataclass(frozen=True)
class SeaOptions:
    """Options of ``synthetic://sea``; see the module docstring for their meaning.

    Args:
        concept: per partition, cycled: the concept (0..3) before the switch.
        drift_concept: per partition, cycled: the concept after the switch.
        drift_at: per partition, cycled: the fraction of the partition's rows after which
            the concept switches, in [0, 1], or None for no switch.
        noise: label-flip probabilities, one per partition, cycled.
        rows: total rows over all partitions; None defers to `SourceSpec.rows`.

    Raises:
        ConfigError: if a value is out of range.
    """

    concept: tuple[int, ...] = (0,)
    drift_concept: tuple[int, ...] = (2,)
    drift_at: tuple[float | None, ...] = (0.5,)
    noise: tuple[float, ...] = (0.1,)
    rows: int | None = None

    def __post_init__(self) -> None:
        check_choices("concept", self.concept, len(SEA_THRESHOLDS), "SEA concept")
        check_choices("drift_concept", self.drift_concept, len(SEA_THRESHOLDS), "SEA concept")
        check_drift_at(self.drift_at)
        check_flip_noise(self.noise)
        check_rows(self.rows)

    @classmethod
    def from_query(cls, query: str) -> SeaOptions:
        """Parse a URI query string such as ``concept=0,1&drift_concept=3&noise=0.1``.

        Raises:
            ConfigError: on an unknown or repeated option, or a value that does not parse or
                is out of range; the message names the option, the value and what is expected.
        """
        values = query_values(query, "sea", _OPTIONS)
        concepts = {
            name: parse_ints(name, values[name], "comma-separated SEA concepts in 0..3")
            for name in ("concept", "drift_concept")
            if name in values
        }
        return cls(
            concept=concepts.get("concept", cls.concept),
            drift_concept=concepts.get("drift_concept", cls.drift_concept),
            drift_at=parse_drift_at(values["drift_at"]) if "drift_at" in values else cls.drift_at,
            noise=parse_flip_noise(values, cls.noise),
            rows=parse_rows(values),
        )


class SeaGenerator(PerPartitionDrift):
    """The rows of ``synthetic://sea``: three features in [0, 10], 0/1 labels.

    Args:
        options: the stream's options.
        seed: the stream's seed; draws every block.
        layout: rows per partition, which places each partition's switch.
    """

    def __init__(self, options: SeaOptions, seed: int, layout: PartitionLayout) -> None:
        self.options = options
        self.seed = seed
        self.layout = layout
        self.schema = sea_schema()
        self.arrow_schema = self.schema.arrow_schema()

    @classmethod
    def from_spec(cls, spec: SourceSpec, query: str) -> SeaGenerator:
        """The generator of `spec`, with options parsed from the URI's `query`."""
        options = SeaOptions.from_query(query)
        return cls(options, spec.seed, PartitionLayout.of(spec, options.rows))

    def threshold(self, partition: int, offset: int) -> float:
        """``theta`` in force at `offset` of `partition`: the label is ``f0 + f1 <= theta``.

        Raises:
            ConfigError: if `offset` is negative.
        """
        if offset < 0:
            raise ConfigError(f"offset ({offset}) must be >= 0")
        switch = self.switch_offset(partition)
        options = self.options
        concept = options.concept if switch is None or offset < switch else options.drift_concept
        return SEA_THRESHOLDS[cycled(concept, partition)]

    def generate_columns(self, partition: int, block: int) -> dict[str, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: ``f0, f1, f2`` and ``label``."""
        rng = block_rng(self.seed, _SPAWN_PREFIX, partition, block)
        x = rng.random((3, BLOCK_ROWS), dtype=np.float32) * np.float32(10.0)
        flip_draw = rng.random(BLOCK_ROWS)
        after = drifted(block_offsets(block), self.switch_offset(partition))
        theta = np.where(
            after,
            SEA_THRESHOLDS[cycled(self.options.drift_concept, partition)],
            SEA_THRESHOLDS[cycled(self.options.concept, partition)],
        )
        clean = x[0].astype(np.float64) + x[1] <= theta
        labels = clean ^ (flip_draw < self.noise(partition))
        columns = dict(zip(self.schema.features, x, strict=True))
        columns[self.schema.label] = labels.astype(np.float32)
        return frozen(columns)
