"""Seeded, reproducible synthetic streams (``synthetic://``), one generator per URI host.

* ``synthetic://hyperplane`` (``synthetic://`` alone means the same): binary
  classification of points in a cube, with an abrupt concept switch and gradual rotation.
* ``synthetic://periodic``: a noisy periodic time series for one-step-ahead forecasting
  (regression) with sequence models; its period and shape change abruptly at the drift.
* ``synthetic://sea``: the SEA concepts (``f0 + f1 <= theta``), one abrupt switch
  (`pipelines.sources.sea`).
* ``synthetic://agrawal``: Agrawal et al.'s loan applicants, a switch between two of the
  ten classification functions (`pipelines.sources.agrawal`).
* ``synthetic://delivery``: is a delivery shop busy this hour; rules that change, a key
  and an event time, and post-hour columns that leak the label (`pipelines.sources.delivery`).

Shared options (URI query string): ``drift_at`` is per partition, a comma list cycled
over partitions, each entry a fraction of the partition's rows or ``none`` (that partition
never drifts); one value applies to every partition, so ``drift_at=none,none,0.3,none``
drifts only partition 2 (and 6, 10, ...), at 30% of its rows, and every drifting
partition of a hyperplane or periodic stream moves to the same new concept. ``noise`` is
per partition too, cycled the same way. ``rows`` (total rows, overrides
``SourceSpec.rows``; default 1_000_000) is split evenly over ``spec.partitions`` with the
remainder going to the first ones. ``rate`` (rows per second per partition, default
``none``) makes every partition live: its rows become available at that rate from when a
reader opens it (see `SyntheticPartitionReader`), for backpressure and slow-stream tests.
An unknown or repeated option, or a bad value, raises `ConfigError` naming the option and
what it takes.

Hyperplane: features are float32, uniform in [0, 1], named ``x0 .. x{d-1}``; the float32
0/1 label is ``1 if sum(w_i * x_i) > sum(w_i) / 2``, i.e. which side of a hyperplane
through the centre of the cube a row lies on. Every partition shares the concept ``w``.
At ``drift_at`` the concept switches abruptly to a *fresh* weight vector drawn from the
seed and made orthogonal to the old one. A model of the old concept is then at chance
(about 50% accuracy) on the new one, instead of being perfectly wrong as it would be after
a plain negation of ``w``, which a weighting policy could exploit by inverting the model.
``rotation`` adds gradual drift on top: the active concept turns by ``rotation`` radians
per row (of the partition's offset) in a fixed plane drawn from the seed; like ``noise``
it is per partition, cycled, so ``rotation=0,0,0.001`` keeps partitions 0 and 1 on a
fixed concept while partition 2's keeps turning away from it. Each label is
then flipped with the partition's ``noise`` probability; 0.5 makes the labels pure noise.
Options: ``features`` (int >= 2, default 10), ``drift_at`` (default 0.5), ``noise`` (flip
probability in [0, 1], default ``0.0,0.05,0.1,0.3``), ``rotation`` (radians per row,
>= 0, per partition, default 0.0), ``rows``.

Periodic: one float32 feature, ``value``, the observed series at step ``t`` (the row's
offset in its partition, so no time column is needed), and the float32 label
``next_value``, the observed series at ``t + 1``: exactly the next row's ``value``, noise
included, so a forecaster fed sliding windows of consecutive rows learns a one-step-ahead
forecast. The last row's label is the value one step past the partition's end. The clean
signal is ``amplitude * (sin(a) + 0.5 * sin(2a))`` with ``a = 2 pi t / period + phase``;
at ``drift_at`` it switches abruptly to ``amplitude * (sin(b) + 0.3 * sin(3b))`` with
``b = 2 pi t / drift_period + phase``: a new period and a new shape. ``phase`` is drawn per
partition from the seed, so partitions carry the same wave, shifted. Observed values add
Gaussian noise with the partition's ``noise`` standard deviation, which is the floor of a
forecaster's RMSE away from the drift; `SyntheticSource.clean_signal` gives the
noise-free series to measure against it. Options: ``period`` (rows > 4, default 48),
``drift_period`` (rows > 6, default 20), ``amplitude`` (>= 0, default 1.0), ``drift_at``
(default 0.5), ``noise`` (standard deviation >= 0, default 0.05), ``rows``.

Determinism: rows are generated in fixed blocks of `BLOCK_ROWS`, each from its own
``SeedSequence``, so a row depends only on (seed, partition, offset) and the stream
options, never on how it is read. Spawn keys: hyperplane ``(0,)`` for the concept and
``(1, partition, block)`` for the rows; periodic ``(2, partition)`` for the phase and
``(3, partition, block)`` for the noise; the others are listed in
`pipelines.sources._synthetic_base`.

Example:
    >>> from pipelines.sources.base import SourceSpec
    >>> source = open_synthetic_source(
    ...     SourceSpec("synthetic://hyperplane?features=3&rows=10", partitions=2)
    ... )
    >>> reader = source.open(0)
    >>> reader.read_batch(4).batch.num_rows, reader.high_watermark()
    (4, 5)
    >>> series = open_synthetic_source(SourceSpec("synthetic://periodic?rows=100", 2))
    >>> series.schema.features, series.schema.label
    (('value',), 'next_value')
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from actors.errors import ConfigError, SourceError
from pipelines.schema import StreamSchema
from pipelines.sources._synthetic_base import (
    BLOCK_ROWS,
    DEFAULT_ROWS,
    PartitionLayout,
    PerPartitionDrift,
    SyntheticGenerator,
    block_offsets,
    block_rng,
    feature_label_columns,
    frozen,
)
from pipelines.sources._synthetic_options import (
    check_drift_at,
    check_flip_noise,
    check_rows,
    cycled,
    parse_drift_at,
    parse_flip_noise,
    parse_float,
    parse_floats,
    parse_int,
    parse_rate,
    parse_rows,
    query_values,
)
from pipelines.sources.agrawal import AgrawalGenerator
from pipelines.sources.base import SourceBatch, SourceSpec
from pipelines.sources.delivery import DeliveryGenerator
from pipelines.sources.sea import SeaGenerator

__all__ = [
    "BLOCK_ROWS",
    "DEFAULT_ROWS",
    "GENERATORS",
    "HyperplaneConcept",
    "HyperplaneGenerator",
    "HyperplaneOptions",
    "PartitionLayout",
    "PeriodicGenerator",
    "PeriodicOptions",
    "SyntheticGenerator",
    "SyntheticPartitionReader",
    "SyntheticSource",
    "hyperplane_schema",
    "open_synthetic_source",
    "periodic_schema",
]

logger = logging.getLogger(__name__)

DEFAULT_NOISE = (0.0, 0.05, 0.1, 0.3)

_HYPERPLANE_OPTIONS = ("features", "drift_at", "noise", "rotation", "rows")
_PERIODIC_OPTIONS = ("period", "drift_period", "amplitude", "drift_at", "noise", "rows")

# (harmonic, weight) pairs of the periodic signal before and after its drift: a skewed
# wave, then an odd harmonic that flattens the crests, so the shape changes as well as
# the period and a forecaster cannot adapt by rescaling time alone.
_SHAPE_BEFORE = ((1, 1.0), (2, 0.5))
_SHAPE_AFTER = ((1, 1.0), (3, 0.3))


_Generator = TypeVar("_Generator", bound=SyntheticGenerator)


# --- hyperplane --------------------------------------------------------------------------


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
        rotation: gradual drift, radians per row, >= 0, one per partition, cycled when
            shorter (one value turns every partition's concept alike).
        rows: total rows over all partitions; None defers to `SourceSpec.rows`.

    Raises:
        ConfigError: if a value is out of range.
    """

    features: int = 10
    drift_at: tuple[float | None, ...] = (0.5,)
    noise: tuple[float, ...] = DEFAULT_NOISE
    rotation: tuple[float, ...] = (0.0,)
    rows: int | None = None

    def __post_init__(self) -> None:
        if self.features < 2:
            raise ConfigError(
                f"features ({self.features}) must be an integer >= 2: the concept switch "
                "needs a second dimension"
            )
        check_drift_at(self.drift_at)
        check_flip_noise(self.noise)
        for rotation in self.rotation:
            if not (math.isfinite(rotation) and rotation >= 0.0):
                raise ConfigError(
                    f"rotation ({rotation}) must be a finite number of radians per row >= 0"
                )
        check_rows(self.rows)

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
        values = query_values(query, "hyperplane", _HYPERPLANE_OPTIONS)
        return cls(
            features=(
                parse_int("features", values["features"], "an integer >= 2")
                if "features" in values
                else cls.features
            ),
            drift_at=parse_drift_at(values["drift_at"]) if "drift_at" in values else cls.drift_at,
            noise=parse_flip_noise(values, cls.noise),
            rotation=(
                parse_floats("rotation", values["rotation"], "radians per row >= 0")
                if "rotation" in values
                else cls.rotation
            ),
            rows=parse_rows(values),
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


class HyperplaneGenerator(PerPartitionDrift):
    """The rows of ``synthetic://hyperplane``: points in the unit cube, 0/1 labels.

    Args:
        options: the stream's options.
        seed: the stream's seed; draws the concept and every block.
        layout: rows per partition, which places each partition's switch.
    """

    def __init__(self, options: HyperplaneOptions, seed: int, layout: PartitionLayout) -> None:
        self.options = options
        self.seed = seed
        self.layout = layout
        self.schema = hyperplane_schema(options.features)
        self.arrow_schema = self.schema.arrow_schema()
        self.concept = HyperplaneConcept.from_seed(seed, options.features)

    @classmethod
    def from_spec(cls, spec: SourceSpec, query: str) -> HyperplaneGenerator:
        """The generator of `spec`, with options parsed from the URI's `query`."""
        options = HyperplaneOptions.from_query(query)
        return cls(options, spec.seed, PartitionLayout.of(spec, options.rows))

    def concept_weights(self, partition: int, offset: int) -> np.ndarray:
        """Weights ``w`` in force at `offset` of `partition` (label: ``x @ w > w.sum() / 2``)."""
        return self.concept.weights(offset, self.switch_offset(partition), self.rotation(partition))

    def rotation(self, partition: int) -> float:
        """Radians per row that `partition`'s concept turns by."""
        return float(cycled(self.options.rotation, partition))

    def generate_block(self, partition: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: features (d, BLOCK_ROWS), labels."""
        rng = block_rng(self.seed, 1, partition, block)
        x = rng.random((self.options.features, BLOCK_ROWS), dtype=np.float32)
        flip_draw = rng.random(BLOCK_ROWS)
        offsets = block_offsets(block)
        scores = self.concept.scores(
            x, offsets, self.switch_offset(partition), self.rotation(partition)
        )
        labels = (scores > 0) ^ (flip_draw < self.noise(partition))
        y = labels.astype(np.float32)
        x.flags.writeable = False
        y.flags.writeable = False
        return x, y

    def generate_columns(self, partition: int, block: int) -> dict[str, np.ndarray]:
        """The block's columns by name: ``x0 .. x{d-1}`` and ``label``."""
        return frozen(feature_label_columns(self.schema, *self.generate_block(partition, block)))


# --- periodic ----------------------------------------------------------------------------


def periodic_schema() -> StreamSchema:
    """The schema of a periodic stream: feature ``value``, label ``next_value``."""
    return StreamSchema(features=("value",), label="next_value")


@dataclass(frozen=True)
class PeriodicOptions:
    """Options of ``synthetic://periodic``; see the module docstring for their meaning.

    Args:
        period: rows per cycle before the drift, > 4 so that its second harmonic has more
            than two rows per cycle (fewer would alias it).
        drift_period: rows per cycle after the drift, > 6 for its third harmonic's sake.
        amplitude: scale of the clean signal, >= 0 (0 leaves pure noise).
        drift_at: per partition, cycled when shorter: the fraction of the partition's rows
            after which period and shape change, in [0, 1], or None for no change.
        noise: standard deviations of the Gaussian observation noise, one per partition,
            cycled when shorter.
        rows: total rows over all partitions; None defers to `SourceSpec.rows`.

    Raises:
        ConfigError: if a value is out of range.
    """

    period: float = 48.0
    drift_period: float = 20.0
    amplitude: float = 1.0
    drift_at: tuple[float | None, ...] = (0.5,)
    noise: tuple[float, ...] = (0.05,)
    rows: int | None = None

    def __post_init__(self) -> None:
        for name, value, shape in (
            ("period", self.period, _SHAPE_BEFORE),
            ("drift_period", self.drift_period, _SHAPE_AFTER),
        ):
            if not (math.isfinite(value) and value > _shortest_period(shape)):
                raise ConfigError(
                    f"{name} ({value}) must be a number of rows > {_shortest_period(shape)}: "
                    f"its harmonic {_top_harmonic(shape)} needs more than 2 rows per cycle"
                )
        if not (math.isfinite(self.amplitude) and self.amplitude >= 0.0):
            raise ConfigError(f"amplitude ({self.amplitude}) must be a finite number >= 0")
        check_drift_at(self.drift_at)
        if not self.noise:
            raise ConfigError("noise must list at least one standard deviation >= 0")
        for std in self.noise:
            if not (math.isfinite(std) and std >= 0.0):
                raise ConfigError(f"noise ({std}) must be a standard deviation >= 0")
        check_rows(self.rows)

    @classmethod
    def from_query(cls, query: str) -> PeriodicOptions:
        """Parse a URI query string such as ``period=24&noise=0.1,0.5&drift_at=none,0.3``.

        Args:
            query: the part of the URI after ``?`` (may be empty).

        Returns:
            The parsed options, defaults for the ones not given.

        Raises:
            ConfigError: on an unknown or repeated option, or a value that does not parse or
                is out of range; the message names the option, the value and what is expected.
        """
        values = query_values(query, "periodic", _PERIODIC_OPTIONS)
        numbers = {
            name: parse_float(name, values[name], expected)
            for name, expected in (
                ("period", f"a number of rows > {_shortest_period(_SHAPE_BEFORE)}"),
                ("drift_period", f"a number of rows > {_shortest_period(_SHAPE_AFTER)}"),
                ("amplitude", "a number >= 0"),
            )
            if name in values
        }
        return cls(
            period=numbers.get("period", cls.period),
            drift_period=numbers.get("drift_period", cls.drift_period),
            amplitude=numbers.get("amplitude", cls.amplitude),
            drift_at=parse_drift_at(values["drift_at"]) if "drift_at" in values else cls.drift_at,
            noise=(
                parse_floats("noise", values["noise"], "comma-separated standard deviations >= 0")
                if "noise" in values
                else cls.noise
            ),
            rows=parse_rows(values),
        )


class PeriodicGenerator(PerPartitionDrift):
    """The rows of ``synthetic://periodic``: a noisy wave and its next value.

    Args:
        options: the stream's options.
        seed: the stream's seed; draws each partition's phase and every block's noise.
        layout: rows per partition, which places each partition's drift.
    """

    def __init__(self, options: PeriodicOptions, seed: int, layout: PartitionLayout) -> None:
        self.options = options
        self.seed = seed
        self.layout = layout
        self.schema = periodic_schema()
        self.arrow_schema = self.schema.arrow_schema()

    @classmethod
    def from_spec(cls, spec: SourceSpec, query: str) -> PeriodicGenerator:
        """The generator of `spec`, with options parsed from the URI's `query`."""
        options = PeriodicOptions.from_query(query)
        return cls(options, spec.seed, PartitionLayout.of(spec, options.rows))

    def phase(self, partition: int) -> float:
        """Phase of `partition`'s wave in radians, in [0, 2 pi), drawn from the seed."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2, partition)))
        return float(rng.uniform(0.0, 2.0 * math.pi))

    def clean_signal(self, partition: int, start: int, stop: int) -> np.ndarray:
        """The noise-free series of `partition` at offsets ``start .. stop - 1`` (float64).

        `stop` may pass the partition's end: the last row's label lies one step beyond it.

        Raises:
            ConfigError: unless ``0 <= start <= stop``.
        """
        if not 0 <= start <= stop:
            raise ConfigError(
                f"clean_signal needs offsets 0 <= start <= stop, got start={start}, stop={stop}"
            )
        return self._clean(partition, np.arange(start, stop, dtype=np.int64))

    def generate_block(self, partition: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: values (1, BLOCK_ROWS), next values.

        The last label is the first value of the next block, which is generated in full
        rather than alone so that a value never depends on which block asked for it.
        """
        values = self._observed(partition, block)
        following = self._observed(partition, block + 1)
        x = values.reshape(1, BLOCK_ROWS)
        y = np.concatenate((values[1:], following[:1]))
        x.flags.writeable = False
        y.flags.writeable = False
        return x, y

    def generate_columns(self, partition: int, block: int) -> dict[str, np.ndarray]:
        """The block's columns by name: ``value`` and ``next_value``."""
        return frozen(feature_label_columns(self.schema, *self.generate_block(partition, block)))

    def _observed(self, partition: int, block: int) -> np.ndarray:
        """The observed (noisy) float32 values of `block`; a pure function of its inputs."""
        rng = block_rng(self.seed, 3, partition, block)
        noise = self.noise(partition) * rng.standard_normal(BLOCK_ROWS)
        return (self._clean(partition, block_offsets(block)) + noise).astype(np.float32)

    def _clean(self, partition: int, offsets: np.ndarray) -> np.ndarray:
        phase = self.phase(partition)
        signal = _waveform(offsets, self.options.period, phase, _SHAPE_BEFORE)
        switch = self.switch_offset(partition)
        if switch is not None:
            after = _waveform(offsets, self.options.drift_period, phase, _SHAPE_AFTER)
            signal = np.where(offsets >= switch, after, signal)
        return np.asarray(self.options.amplitude * signal)


_FACTORIES: dict[str, Callable[[SourceSpec, str], SyntheticGenerator]] = {
    "hyperplane": HyperplaneGenerator.from_spec,
    "periodic": PeriodicGenerator.from_spec,
    "sea": SeaGenerator.from_spec,
    "agrawal": AgrawalGenerator.from_spec,
    "delivery": DeliveryGenerator.from_spec,
}

GENERATORS = tuple(_FACTORIES)
"""Names of the generators, the host part of a ``synthetic://`` URI."""


# --- the source --------------------------------------------------------------------------


class SyntheticSource:
    """A seeded synthetic stream split into `spec.partitions` partitions.

    Without a ``rate`` option every partition is bounded and fully available. With
    ``rate=R`` each partition is live: a reader sees its rows arrive at R rows per second
    from when it was opened (see `SyntheticPartitionReader`), and still ends after the
    partition's rows.

    Args:
        spec: the source spec; its URI selects the generator and its options.

    Attributes:
        generator: the generator that produces the rows (`HyperplaneGenerator`, ...).
        schema: the generator's schema.
        arrow_schema: every column of a batch (the schema's plus any carried column).
        total_rows: rows over all partitions.
        rate: rows per second per partition, or None for fully available partitions.

    Raises:
        ConfigError: on an unknown generator, a bad option, or a bad partition count/seed.
    """

    def __init__(self, spec: SourceSpec) -> None:
        parts = urlsplit(spec.uri)
        name = (parts.netloc or parts.path.strip("/")) or "hyperplane"
        factory = _FACTORIES.get(name)
        if factory is None:
            raise ConfigError(
                f"unknown synthetic generator {name!r} in {spec.uri!r}; available: "
                + ", ".join(f"synthetic://{known}" for known in GENERATORS)
            )
        if spec.partitions < 1:
            raise ConfigError(f"partitions ({spec.partitions}) must be an integer >= 1")
        if spec.seed < 0:
            raise ConfigError(f"seed ({spec.seed}) must be an integer >= 0")
        if spec.rows is not None and spec.rows < 1:
            raise ConfigError(f"rows ({spec.rows}) must be an integer >= 1")
        self.spec = spec
        self.generator = factory(spec, parts.query)
        self.rate = parse_rate(parts.query)
        self.schema = self.generator.schema
        self.arrow_schema = self.generator.arrow_schema
        self.total_rows = self.generator.layout.total_rows

    def partitions(self) -> list[int]:
        """Ids of the partitions, ``0 .. spec.partitions - 1``."""
        return list(range(self.spec.partitions))

    def partition_rows(self, partition: int) -> int:
        """Number of rows of `partition` (the remainder goes to the first partitions)."""
        return self.generator.layout.partition_rows(partition)

    def switch_offset(self, partition: int) -> int | None:
        """First offset of `partition` after its drift; None for no drift."""
        return self.generator.switch_offset(partition)

    def noise(self, partition: int) -> float:
        """Noise of `partition`: label-flip probability, or std for ``periodic``."""
        return self.generator.noise(partition)

    def concept_weights(self, partition: int, offset: int) -> np.ndarray:
        """Weights ``w`` in force at `offset` of `partition` (label: ``x @ w > w.sum() / 2``).

        Raises:
            ConfigError: if this is not a ``synthetic://hyperplane`` stream.
        """
        generator = self._generator_as(HyperplaneGenerator, "concept_weights")
        return generator.concept_weights(partition, offset)

    def clean_signal(self, partition: int, start: int, stop: int) -> np.ndarray:
        """The noise-free series of `partition` at offsets ``start .. stop - 1`` (float64).

        Raises:
            ConfigError: if this is not a ``synthetic://periodic`` stream, or unless
                ``0 <= start <= stop``.
        """
        generator = self._generator_as(PeriodicGenerator, "clean_signal")
        return generator.clean_signal(partition, start, stop)

    def open(self, partition: int, offset: int | None = None) -> SyntheticPartitionReader:
        """Open `partition` positioned at `offset`.

        A synthetic stream keeps no commits, so ``None`` means the start (offset 0).

        Raises:
            SourceError: if the partition does not exist or the offset is outside it.
        """
        return SyntheticPartitionReader(self, partition, 0 if offset is None else offset)

    def generate_columns(self, partition: int, block: int) -> dict[str, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`, one array per batch column."""
        return self.generator.generate_columns(partition, block)

    def generate_block(self, partition: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``block * BLOCK_ROWS ..`` of `partition`: features (d, BLOCK_ROWS), labels."""
        columns = self.generate_columns(partition, block)
        x = np.stack([columns[name] for name in self.schema.features])
        return x, columns[self.schema.label]

    def _generator_as(self, kind: type[_Generator], method: str) -> _Generator:
        if not isinstance(self.generator, kind):
            raise ConfigError(
                f"{method} is only defined for a {kind.__name__.removesuffix('Generator')} "
                f"stream; this source is {self.spec.uri!r}"
            )
        return self.generator


class SyntheticPartitionReader:
    """One partition of a `SyntheticSource`, read forward from an offset.

    With the source's ``rate`` the partition is live: ``rate`` rows per second become
    available from the moment the reader is opened, counting from the open offset;
    `high_watermark` is then the offset one past the newest available row, so
    ``high_watermark() - position`` is the lag of a consumer slower than the rate.

    Args:
        source: the source.
        partition: the partition to read.
        offset: where to start.
        clock: seconds on a monotonic clock (tests pass a fake one).
        sleep: waits a number of seconds (tests pass one that advances their clock).

    Attributes:
        partition: the partition id.
        committed: the last committed offset (0 until `commit` is called).

    Raises:
        SourceError: if the partition does not exist or the offset is outside it.
    """

    def __init__(
        self,
        source: SyntheticSource,
        partition: int,
        offset: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
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
        self._rate = source.rate
        self._clock = clock
        self._sleep = sleep
        self._opened_at = clock()
        self._opened_offset = offset
        self._arrow_schema = source.arrow_schema
        self._cached: tuple[int, pa.RecordBatch] | None = None  # (block, its rows)

    @property
    def position(self) -> int:
        """Offset of the next row `read_batch` returns."""
        return self._position

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        """Up to `max_rows` available rows from the current position; None once all are read.

        Without a rate every row is available and it never waits. With one, when no row
        is available yet it sleeps until the next is due, but at most `max_wait_s`, and
        returns an empty batch if that row is still not due.

        Raises:
            ConfigError: if `max_rows` < 1 or `max_wait_s` < 0.
        """
        if max_rows < 1:
            raise ConfigError(f"max_rows ({max_rows}) must be an integer >= 1")
        if not max_wait_s >= 0.0:
            raise ConfigError(f"max_wait_s ({max_wait_s}) must be a number of seconds >= 0")
        start = self._position
        if start >= self._length:
            return None
        available = self.high_watermark()
        if available <= start and max_wait_s > 0.0:
            self._sleep(min(max_wait_s, self._seconds_until_due(start + 1)))
            available = self.high_watermark()
        if available <= start:
            return SourceBatch.empty(self.partition, start, self._arrow_schema)
        end = min(start + max_rows, available)
        pieces = []
        pos = start
        while pos < end:
            block, first = divmod(pos, BLOCK_ROWS)
            last = min(BLOCK_ROWS, first + end - pos)
            pieces.append(self._block_batch(block).slice(first, last - first))
            pos += last - first
        # Slices of a block's cached batch are zero-copy: a read costs a few µs instead
        # of building every column again (a member reads a batch per training step).
        batch = pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)
        self._position = end
        return SourceBatch(partition=self.partition, first_offset=start, batch=batch)

    def high_watermark(self) -> int:
        """Offset one past the newest available row: the partition's length without a rate."""
        if self._rate is None:
            return self._length
        elapsed = self._clock() - self._opened_at
        # The epsilon keeps a row due at exactly `elapsed` from rounding down to not due.
        due = self._opened_offset + math.floor(self._rate * elapsed + 1e-9)
        return min(self._length, due)

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

    def _seconds_until_due(self, end: int) -> float:
        """Seconds from now until the rows before offset `end` are available (rate only)."""
        if self._rate is None:
            return 0.0
        due_at = (end - self._opened_offset) / self._rate
        return max(0.0, due_at - (self._clock() - self._opened_at))

    def _block_batch(self, block: int) -> pa.RecordBatch:
        if self._cached is None or self._cached[0] != block:
            columns = self._source.generate_columns(self.partition, block)
            arrays = [pa.array(columns[f.name], type=f.type) for f in self._arrow_schema]
            self._cached = (block, pa.RecordBatch.from_arrays(arrays, schema=self._arrow_schema))
        return self._cached[1]


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


def _waveform(
    offsets: np.ndarray, period: float, phase: float, shape: tuple[tuple[int, float], ...]
) -> np.ndarray:
    """Sum of ``weight * sin(harmonic * angle)`` over `shape`, angle at each offset."""
    angle = 2.0 * math.pi * offsets.astype(np.float64) / period + phase
    return np.asarray(sum(weight * np.sin(harmonic * angle) for harmonic, weight in shape))


def _top_harmonic(shape: tuple[tuple[int, float], ...]) -> int:
    return max(harmonic for harmonic, _ in shape)


def _shortest_period(shape: tuple[tuple[int, float], ...]) -> int:
    """Rows per cycle a wave of `shape` must exceed: its top harmonic needs > 2 (Nyquist)."""
    return 2 * _top_harmonic(shape)


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
