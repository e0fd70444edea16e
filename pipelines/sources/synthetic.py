"""Seeded, reproducible synthetic labelled streams (``synthetic://``).

One generator so far, ``synthetic://hyperplane`` (``synthetic://`` alone means the same):
features are float32, uniform in [0, 1], named ``x0 .. x{d-1}``; the float32 0/1 label
is ``1 if sum(w_i * x_i) > sum(w_i) / 2``, i.e. which side of a hyperplane through the
centre of the cube a row lies on. Every partition shares the concept ``w``.

Concept switch: at ``drift_at`` (a fraction of the partition's rows) the concept switches
abruptly to a *fresh* weight vector drawn from the seed and made orthogonal to the old
one. A model of the old concept is then at chance (about 50% accuracy) on the new one,
instead of being perfectly wrong as it would be after a plain negation of ``w``, which a
weighting policy could exploit by inverting the model. ``rotation`` adds gradual drift on
top: the active concept turns by ``rotation`` radians per row (of the partition's offset)
in a fixed plane drawn from the seed.

``drift_at`` is per partition, like ``noise``: a comma list cycled over partitions, each
entry a fraction or ``none`` (that partition never switches). One value applies to every
partition. ``drift_at=none,none,0.3,none`` switches only partition 2 (and 6, 10, ...), at
30% of its rows. Every switching partition moves to the same new concept.

Noise: each label is then flipped with the partition's ``noise`` probability; 0.5 makes
the labels pure noise.

URI options (query string): ``features`` (int >= 2, default 10), ``drift_at`` (fraction in
[0, 1] or ``none`` per partition, a comma list cycled over partitions, default 0.5),
``noise`` (flip probability per partition in [0, 1], a comma list cycled over partitions,
default ``0.0,0.05,0.1,0.3``), ``rotation`` (radians per row, >= 0, default 0.0), ``rows``
(total rows, overrides ``SourceSpec.rows``; default 1_000_000), split evenly over
``spec.partitions`` with the remainder going to the first ones.

Determinism: rows are generated in fixed blocks of `BLOCK_ROWS`, each from its own
``SeedSequence(seed, spawn_key=(1, partition, block))``, so a row depends only on
(seed, partition, offset) and the stream options, never on how it is read.

Example:
    >>> from pipelines.sources.base import SourceSpec
    >>> source = open_synthetic_source(
    ...     SourceSpec("synthetic://hyperplane?features=3&rows=10", partitions=2)
    ... )
    >>> reader = source.open(0)
    >>> reader.read_batch(4).batch.num_rows, reader.high_watermark()
    (4, 5)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pyarrow as pa

from actors.errors import ConfigError, SourceError
from pipelines.schema import StreamSchema
from pipelines.sources.base import SourceBatch, SourceSpec

__all__ = [
    "BLOCK_ROWS",
    "DEFAULT_ROWS",
    "GENERATORS",
    "HyperplaneConcept",
    "HyperplaneOptions",
    "SyntheticPartitionReader",
    "SyntheticSource",
    "hyperplane_schema",
    "open_synthetic_source",
]

logger = logging.getLogger(__name__)

BLOCK_ROWS = 4096
"""Rows per generated block; part of the stream's identity (changing it changes the data)."""

DEFAULT_ROWS = 1_000_000
DEFAULT_NOISE = (0.0, 0.05, 0.1, 0.3)
GENERATORS = ("hyperplane",)

_OPTIONS = ("features", "drift_at", "noise", "rotation", "rows")


def hyperplane_schema(features: int) -> StreamSchema:
    """The schema of a hyperplane stream: features ``x0 .. x{features-1}``, label ``label``.

    Args:
        features: number of feature columns.

    Returns:
        The `StreamSchema` every batch of the stream conforms to.
    """
    return StreamSchema(features=tuple(f"x{i}" for i in range(features)), label="label")


@dataclass(frozen=True)
class HyperplaneOptions:
    """Options of ``synthetic://hyperplane``; see the module docstring for their meaning.

    Args:
        features: number of features, >= 2 (an orthogonal concept needs two dimensions).
        drift_at: per partition, cycled when shorter: the fraction of the partition's rows
            after which the concept switches, in [0, 1], or None for no switch.
        noise: label-flip probabilities, one per partition, cycled when shorter.
        rotation: gradual drift, radians per row, >= 0.
        rows: total rows over all partitions; None defers to `SourceSpec.rows`.

    Raises:
        ConfigError: if a value is out of range.
    """

    features: int = 10
    drift_at: tuple[float | None, ...] = (0.5,)
    noise: tuple[float, ...] = DEFAULT_NOISE
    rotation: float = 0.0
    rows: int | None = None

    def __post_init__(self) -> None:
        if self.features < 2:
            raise ConfigError(
                f"features ({self.features}) must be an integer >= 2: the concept switch "
                "needs a second dimension"
            )
        if not self.drift_at:
            raise ConfigError(
                "drift_at must list at least one fraction in [0, 1] or 'none', one per partition"
            )
        for fraction in self.drift_at:
            if fraction is not None and not 0.0 <= fraction <= 1.0:
                raise ConfigError(
                    f"drift_at ({fraction}) must be a fraction in [0, 1], or 'none' for no "
                    "concept switch (a comma list gives one per partition, cycled)"
                )
        if not self.noise:
            raise ConfigError("noise must list at least one probability in [0, 1]")
        for p in self.noise:
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"noise ({p}) must be a label-flip probability in [0, 1]")
        if not (math.isfinite(self.rotation) and self.rotation >= 0.0):
            raise ConfigError(
                f"rotation ({self.rotation}) must be a finite number of radians per row >= 0"
            )
        if self.rows is not None and self.rows < 1:
            raise ConfigError(f"rows ({self.rows}) must be an integer >= 1")

    @classmethod
    def from_query(cls, query: str) -> HyperplaneOptions:
        """Parse a URI query string such as ``features=5&noise=0.1,0.2&drift_at=none,0.3``.

        Args:
            query: the part of the URI after ``?`` (may be empty).

        Returns:
            The parsed options, defaults for the ones not given.

        Raises:
            ConfigError: on an unknown or repeated option, or a value that does not parse or
                is out of range; the message names the option, the value and what is expected.
        """
        values: dict[str, str] = {}
        for name, text in parse_qsl(query, keep_blank_values=True):
            if name not in _OPTIONS:
                raise ConfigError(
                    f"unknown synthetic option {name!r}; expected one of {', '.join(_OPTIONS)}"
                )
            if name in values:
                raise ConfigError(f"synthetic option {name!r} is given twice")
            values[name] = text.strip()
        drift_at = cls.drift_at
        if "drift_at" in values:
            drift_at = tuple(
                None
                if part.strip().lower() == "none"
                else _parse_float(
                    "drift_at",
                    part.strip(),
                    "comma-separated fractions in [0, 1] or 'none', one per partition",
                )
                for part in values["drift_at"].split(",")
            )
        noise = cls.noise
        if "noise" in values:
            noise = tuple(
                _parse_float("noise", part, "comma-separated probabilities in [0, 1]")
                for part in values["noise"].split(",")
            )
        return cls(
            features=(
                _parse_int("features", values["features"], "an integer >= 2")
                if "features" in values
                else cls.features
            ),
            drift_at=drift_at,
            noise=noise,
            rotation=(
                _parse_float("rotation", values["rotation"], "radians per row >= 0")
                if "rotation" in values
                else cls.rotation
            ),
            rows=_parse_int("rows", values["rows"], "an integer >= 1")
            if "rows" in values
            else None,
        )


@dataclass(frozen=True)
class HyperplaneConcept:
    """The weight vectors of a hyperplane stream, drawn from its seed.

    Attributes:
        before: weights before the switch, shape (d,).
        after: weights after the switch, orthogonal to `before`, same norm.
        before_turn: direction `before` rotates towards (orthogonal to it, same norm).
        after_turn: direction `after` rotates towards (orthogonal to it, same norm).
    """

    before: np.ndarray
    after: np.ndarray
    before_turn: np.ndarray
    after_turn: np.ndarray

    @classmethod
    def from_seed(cls, seed: int, features: int) -> HyperplaneConcept:
        """Draw the concept of stream `seed` with `features` dimensions."""
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
        before = rng.standard_normal(features)
        after = _orthogonal_draw(rng, before)
        return cls(
            before=before,
            after=after,
            before_turn=_orthogonal_draw(rng, before),
            after_turn=_orthogonal_draw(rng, after),
        )

    def weights(self, offset: int, switch_offset: int | None, rotation: float) -> np.ndarray:
        """The concept weights in force at partition offset `offset`.

        Args:
            offset: row offset within the partition.
            switch_offset: first offset of the new concept; None for no switch.
            rotation: radians per row of gradual drift.

        Returns:
            Weights ``w`` of shape (d,): the label is ``x @ w > w.sum() / 2``.
        """
        switched = switch_offset is not None and offset >= switch_offset
        base, turn = (self.after, self.after_turn) if switched else (self.before, self.before_turn)
        angle = rotation * offset
        return np.cos(angle) * base + np.sin(angle) * turn

    def scores(
        self, x: np.ndarray, offsets: np.ndarray, switch_offset: int | None, rotation: float
    ) -> np.ndarray:
        """Signed distances ``x @ w - w.sum() / 2`` of rows `x` (shape (d, n)) at `offsets`."""
        centred = x.T.astype(np.float64) - 0.5
        switched = (
            np.zeros(offsets.shape, dtype=bool)
            if switch_offset is None
            else offsets >= switch_offset
        )
        score = np.where(switched, centred @ self.after, centred @ self.before)
        if rotation:
            angle = rotation * offsets.astype(np.float64)
            turn = np.where(switched, centred @ self.after_turn, centred @ self.before_turn)
            score = np.cos(angle) * score + np.sin(angle) * turn
        return np.asarray(score)


class SyntheticSource:
    """A seeded synthetic stream split into `spec.partitions` bounded partitions.

    Args:
        spec: the source spec; its URI selects the generator and its options.

    Raises:
        ConfigError: on an unknown generator, a bad option, or a bad partition count/seed.
    """

    def __init__(self, spec: SourceSpec) -> None:
        parts = urlsplit(spec.uri)
        generator = (parts.netloc or parts.path.strip("/")) or "hyperplane"
        if generator not in GENERATORS:
            raise ConfigError(
                f"unknown synthetic generator {generator!r} in {spec.uri!r}; available: "
                + ", ".join(f"synthetic://{name}" for name in GENERATORS)
            )
        if spec.partitions < 1:
            raise ConfigError(f"partitions ({spec.partitions}) must be an integer >= 1")
        if spec.seed < 0:
            raise ConfigError(f"seed ({spec.seed}) must be an integer >= 0")
        if spec.rows is not None and spec.rows < 1:
            raise ConfigError(f"rows ({spec.rows}) must be an integer >= 1")
        self.spec = spec
        self.options = HyperplaneOptions.from_query(parts.query)
        self.schema = hyperplane_schema(self.options.features)
        self.concept = HyperplaneConcept.from_seed(spec.seed, self.options.features)
        self.total_rows = self.options.rows or spec.rows or DEFAULT_ROWS

    def partitions(self) -> list[int]:
        """Ids of the partitions, ``0 .. spec.partitions - 1``."""
        return list(range(self.spec.partitions))

    def partition_rows(self, partition: int) -> int:
        """Number of rows of `partition` (the remainder goes to the first partitions)."""
        base, extra = divmod(self.total_rows, self.spec.partitions)
        return base + (1 if partition < extra else 0)

    def switch_offset(self, partition: int) -> int | None:
        """First offset of `partition` generated from the new concept; None for no switch."""
        fraction = self.options.drift_at[partition % len(self.options.drift_at)]
        if fraction is None:
            return None
        return int(fraction * self.partition_rows(partition))

    def noise(self, partition: int) -> float:
        """Label-flip probability of `partition`."""
        return self.options.noise[partition % len(self.options.noise)]

    def concept_weights(self, partition: int, offset: int) -> np.ndarray:
        """Weights ``w`` in force at `offset` of `partition` (label: ``x @ w > w.sum() / 2``)."""
        return self.concept.weights(offset, self.switch_offset(partition), self.options.rotation)

    def open(self, partition: int, offset: int = 0) -> SyntheticPartitionReader:
        """Open `partition` positioned at `offset`.

        Raises:
            SourceError: if the partition does not exist or the offset is outside it.
        """
        return SyntheticPartitionReader(self, partition, offset)

    def generate_block(self, partition: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: features (d, BLOCK_ROWS), labels.

        A block is always generated in full so that a row never depends on the
        partition's length; readers cut it to the partition.
        """
        rng = np.random.default_rng(
            np.random.SeedSequence(self.spec.seed, spawn_key=(1, partition, block))
        )
        x = rng.random((self.options.features, BLOCK_ROWS), dtype=np.float32)
        flip_draw = rng.random(BLOCK_ROWS)
        offsets = np.arange(block * BLOCK_ROWS, (block + 1) * BLOCK_ROWS, dtype=np.int64)
        scores = self.concept.scores(
            x, offsets, self.switch_offset(partition), self.options.rotation
        )
        labels = (scores > 0) ^ (flip_draw < self.noise(partition))
        y = labels.astype(np.float32)
        x.flags.writeable = False
        y.flags.writeable = False
        return x, y


class SyntheticPartitionReader:
    """One partition of a `SyntheticSource`, read forward from an offset.

    Attributes:
        partition: the partition id.
        committed: the last committed offset (0 until `commit` is called).
    """

    def __init__(self, source: SyntheticSource, partition: int, offset: int = 0) -> None:
        if partition not in range(source.spec.partitions):
            raise SourceError(
                f"no partition {partition}; this source has partitions "
                f"0..{source.spec.partitions - 1}",
                uri=source.spec.uri,
            )
        length = source.partition_rows(partition)
        if not 0 <= offset <= length:
            raise SourceError(
                f"offset {offset} is outside the partition's rows 0..{length}",
                uri=source.spec.uri,
                partition=partition,
            )
        self.partition = partition
        self.committed = 0
        self._source = source
        self._length = length
        self._position = offset
        self._arrow_schema = source.schema.arrow_schema()
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    @property
    def position(self) -> int:
        """Offset of the next row `read_batch` returns."""
        return self._position

    def read_batch(self, max_rows: int) -> SourceBatch | None:
        """Up to `max_rows` rows from the current position, or None when exhausted.

        Raises:
            ConfigError: if `max_rows` < 1.
        """
        if max_rows < 1:
            raise ConfigError(f"max_rows ({max_rows}) must be an integer >= 1")
        start = self._position
        end = min(start + max_rows, self._length)
        if start >= end:
            return None
        xs, ys = [], []
        pos = start
        while pos < end:
            block, first = divmod(pos, BLOCK_ROWS)
            last = min(BLOCK_ROWS, first + end - pos)
            x, y = self._block(block)
            xs.append(x[:, first:last])
            ys.append(y[first:last])
            pos += last - first
        x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=1)
        y = ys[0] if len(ys) == 1 else np.concatenate(ys)
        arrays = [pa.array(column) for column in x]
        arrays.append(pa.array(y))
        batch = pa.RecordBatch.from_arrays(arrays, schema=self._arrow_schema)
        self._position = end
        return SourceBatch(partition=self.partition, first_offset=start, batch=batch)

    def high_watermark(self) -> int:
        """The partition's length: it is bounded and fully available."""
        return self._length

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
        """Drop the cached block."""
        self._cached = None

    def _block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != block:
            x, y = self._source.generate_block(self.partition, block)
            self._cached = (block, x, y)
        return self._cached[1], self._cached[2]


def open_synthetic_source(spec: SourceSpec) -> SyntheticSource:
    """Open a ``synthetic://`` stream.

    Args:
        spec: the source spec, e.g. ``SourceSpec("synthetic://hyperplane?noise=0.1")``.

    Returns:
        The `SyntheticSource`.

    Raises:
        ConfigError: on an unknown generator or a bad option.
    """
    return SyntheticSource(spec)


def _orthogonal_draw(rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """A standard-normal draw made orthogonal to `reference`, scaled to its norm."""
    norm = float(np.linalg.norm(reference))
    for _ in range(100):
        draw = rng.standard_normal(reference.shape[0])
        draw -= (draw @ reference) / (reference @ reference) * reference
        draw_norm = float(np.linalg.norm(draw))
        if draw_norm > 1e-6 * norm:
            return np.asarray(draw * (norm / draw_norm))
    raise SourceError("could not draw an orthogonal concept; the reference has no length")


def _parse_int(name: str, text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"synthetic option {name}={text!r} is not valid; expected {expected}"
        ) from None


def _parse_float(name: str, text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"synthetic option {name}={text!r} is not valid; expected {expected}"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"synthetic option {name}={text!r} is not valid; expected {expected}")
    return value
