"""``synthetic://periodic``: a seeded time series whose label is the next row's value."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from actors.errors import ConfigError
from pipelines.sources import PartitionReader, SourceSpec, StreamSource, open_source
from pipelines.sources.synthetic import (
    BLOCK_ROWS,
    GENERATORS,
    PeriodicGenerator,
    SyntheticSource,
    periodic_schema,
)


def periodic(query: str = "", partitions: int = 2, seed: int = 0) -> SyntheticSource:
    source = open_source(SourceSpec(f"synthetic://periodic?{query}", partitions, None, seed))
    assert isinstance(source, SyntheticSource)
    return source


def read_series(reader: PartitionReader, max_rows: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Every remaining `value` and `next_value` of `reader`, and each batch's first offset."""
    values, labels, starts = [], [], []
    while (read := reader.read_batch(max_rows)) is not None:
        starts.append(read.first_offset)
        values.append(read.batch.column("value").to_numpy())
        labels.append(read.batch.column("next_value").to_numpy())
    if not starts:
        return np.empty(0, np.float32), np.empty(0, np.float32), starts
    return np.concatenate(values), np.concatenate(labels), starts


def autocorrelation(series: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(series[:-lag], series[lag:])[0, 1])


def test_periodic_schema_and_batches():
    source = periodic("rows=100")
    assert "periodic" in GENERATORS and "hyperplane" in GENERATORS
    assert isinstance(source, StreamSource) and isinstance(source.open(0), PartitionReader)
    assert isinstance(source.generator, PeriodicGenerator)
    assert source.schema == periodic_schema()
    assert (source.schema.features, source.schema.label) == (("value",), "next_value")
    read = source.open(1).read_batch(50)
    assert read is not None
    assert read.batch.schema.equals(source.schema.arrow_schema())  # float32 value, next_value
    validated = source.schema.validate(read.batch, partition=1, first_offset=0)
    assert validated.rows == 50 and not validated.dead_letters
    assert validated.x.shape == (50, 1)


@pytest.mark.parametrize("max_rows", [1, 999, BLOCK_ROWS, BLOCK_ROWS + 1])
def test_periodic_label_is_the_next_rows_value_across_blocks_and_reads(max_rows):
    source = periodic("rows=26000&noise=0.2", partitions=2)  # 13_000 rows: four blocks
    start = 3 * BLOCK_ROWS - 5 if max_rows == 1 else 0  # one row at a time is slow
    values, labels, starts = read_series(source.open(1, start), max_rows)
    assert values.size == 13_000 - start
    np.testing.assert_array_equal(labels[:-1], values[1:])
    block_edges = [b * BLOCK_ROWS - 1 - start for b in (1, 2, 3) if b * BLOCK_ROWS > start]
    read_edges = [s - 1 - start for s in starts[1:]]
    for row in block_edges + read_edges:
        assert labels[row] == values[row + 1], row


def test_periodic_last_label_is_the_value_past_the_end():
    short = periodic("rows=5000&drift_at=none", partitions=1)
    longer = periodic("rows=9000&drift_at=none", partitions=1)  # same rows, further
    values, labels, _ = read_series(short.open(0), 1000)
    more, _, _ = read_series(longer.open(0, 4990), 1000)
    np.testing.assert_array_equal(values[4990:], more[:10])
    assert labels[-1] == more[10]
    assert abs(labels[-1] - short.clean_signal(0, 5000, 5001)[0]) < 6 * 0.05


def test_periodic_is_deterministic_whatever_the_read():
    source = periodic("rows=24000&noise=0.1,0.3", partitions=2)
    reference, labels, _ = read_series(source.open(1), 5000)
    again, again_labels, _ = read_series(periodic("rows=24000&noise=0.1,0.3").open(1), 777)
    np.testing.assert_array_equal(again, reference)
    np.testing.assert_array_equal(again_labels, labels)
    for offset in (1, BLOCK_ROWS - 1, BLOCK_ROWS, 9_001, 12_000):
        tail, tail_labels, _ = read_series(source.open(1, offset), 3000)
        np.testing.assert_array_equal(tail, reference[offset:])
        np.testing.assert_array_equal(tail_labels, labels[offset:])
    unpickled = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(read_series(unpickled.open(1), 5000)[0], reference)
    other_seed, _, _ = read_series(periodic("rows=24000", seed=1).open(1), 5000)
    assert not np.array_equal(other_seed, reference)


def test_periodic_clean_signal_follows_the_documented_formula():
    source = periodic("rows=8000&amplitude=2&period=48&drift_period=20&drift_at=0.25", 2)
    switch = source.switch_offset(1)
    assert switch == 1000
    phase = source.generator.phase(1)
    t = np.arange(0, 2000, dtype=np.float64)
    a = 2 * math.pi * t / 48 + phase
    b = 2 * math.pi * t / 20 + phase
    expected = np.where(
        t < switch, 2 * (np.sin(a) + 0.5 * np.sin(2 * a)), 2 * (np.sin(b) + 0.3 * np.sin(3 * b))
    )
    np.testing.assert_allclose(source.clean_signal(1, 0, 2000), expected, atol=1e-9)
    np.testing.assert_allclose(source.clean_signal(1, 990, 1010), expected[990:1010], atol=1e-9)
    assert source.clean_signal(1, 7, 7).size == 0


def test_periodic_drift_changes_the_period_at_the_stated_row():
    source = periodic("rows=40000&noise=0.05&drift_at=none,0.3", partitions=2)
    assert source.switch_offset(0) is None
    switch = source.switch_offset(1)
    assert switch == 6000
    values, _, _ = read_series(source.open(1), 5000)
    before, after = values[:switch], values[switch:]
    assert autocorrelation(before, 48) > 0.99 and autocorrelation(before, 20) < 0.5
    assert autocorrelation(after, 20) > 0.99 and autocorrelation(after, 48) < 0.5
    # The stream follows the old wave up to the row before the switch and the new one from it.
    clean = source.clean_signal(1, 0, values.size)
    residual = values - clean
    assert np.abs(residual).max() < 6 * 0.05
    steady, _, _ = read_series(periodic("rows=40000&noise=0.05&drift_at=none").open(1), 5000)
    np.testing.assert_array_equal(values[:switch], steady[:switch])
    assert np.abs(values[switch:] - steady[switch:]).mean() > 0.3
    # Partition 0 never drifts.
    undrifted, _, _ = read_series(source.open(0), 5000)
    assert autocorrelation(undrifted[switch:], 48) > 0.99


def test_periodic_drift_changes_the_shape_not_only_the_period():
    # The same period on both sides isolates the shape: harmonics 1+2, then 1+3.
    source = periodic("rows=9600&period=48&drift_period=48&noise=0&drift_at=0.5", partitions=1)
    values, _, _ = read_series(source.open(0), 5000)

    def harmonics(segment: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(segment[: 48 * (segment.size // 48)]))
        cycles = segment.size // 48
        return spectrum[[cycles, 2 * cycles, 3 * cycles]] / spectrum[cycles]

    np.testing.assert_allclose(harmonics(values[:4800]), [1.0, 0.5, 0.0], atol=1e-3)
    np.testing.assert_allclose(harmonics(values[4800:]), [1.0, 0.0, 0.3], atol=1e-3)


def test_periodic_noise_std_per_partition():
    source = periodic("rows=80000&drift_at=none&noise=0,0.02,0.1,0.5", partitions=5)
    assert [source.noise(p) for p in range(5)] == [0.0, 0.02, 0.1, 0.5, 0.0]
    for partition, requested in enumerate([0.0, 0.02, 0.1, 0.5, 0.0]):
        values, _, _ = read_series(source.open(partition), 8000)
        residual = values - source.clean_signal(partition, 0, values.size)
        if requested == 0:
            assert np.abs(residual).max() < 1e-6  # float32 rounding only
        else:
            assert abs(residual.std() / requested - 1) < 0.03, (partition, residual.std())
            assert abs(residual.mean()) < 4 * requested / math.sqrt(values.size)


def test_periodic_phase_differs_per_partition_amplitude_does_not():
    source = periodic("rows=40000&noise=0&drift_at=none", partitions=4)
    phases = [source.generator.phase(p) for p in range(4)]
    assert all(0 <= p < 2 * math.pi for p in phases)
    assert min(abs(a - b) for i, a in enumerate(phases) for b in phases[i + 1 :]) > 1e-3
    waves = [read_series(source.open(p), 5000)[0] for p in range(4)]
    for wave in waves[1:]:
        assert not np.allclose(wave, waves[0], atol=0.01)
        assert np.isclose(np.ptp(wave), np.ptp(waves[0]), rtol=0.01)
    assert periodic("rows=40000", seed=1).generator.phase(0) != phases[0]
    doubled = periodic("rows=40000&noise=0&drift_at=none&amplitude=2", partitions=4)
    np.testing.assert_allclose(doubled.clean_signal(2, 0, 500), 2 * source.clean_signal(2, 0, 500))


def test_generator_specific_helpers_refuse_the_other_generator():
    hyperplane = open_source(SourceSpec("synthetic://hyperplane?rows=100"))
    assert isinstance(hyperplane, SyntheticSource)
    with pytest.raises(ConfigError, match="clean_signal is only defined for a Periodic stream"):
        hyperplane.clean_signal(0, 0, 10)
    with pytest.raises(ConfigError, match="concept_weights is only defined for a Hyperplane"):
        periodic("rows=100").concept_weights(0, 0)
    with pytest.raises(ConfigError, match="start=5, stop=4"):
        periodic("rows=100").clean_signal(0, 5, 4)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("period=4", ["period", "4.0", "> 4", "harmonic 2"]),
        ("period=abc", ["period", "'abc'", "rows > 4"]),
        ("period=inf", ["period", "'inf'"]),
        ("drift_period=6", ["drift_period", "6.0", "> 6", "harmonic 3"]),
        ("amplitude=-1", ["amplitude", "-1.0", ">= 0"]),
        ("noise=0.1,-0.2", ["noise", "-0.2", "standard deviation >= 0"]),
        ("noise=low", ["noise", "'low'", "standard deviations >= 0"]),
        ("drift_at=1.5", ["drift_at", "1.5", "[0, 1]", "'none'"]),
        ("drift_at=later", ["drift_at", "'later'", "'none'"]),
        ("rows=0", ["rows", "0", ">= 1"]),
        ("rows=many", ["rows", "'many'", "integer"]),
        ("features=3", ["'features'", "synthetic://periodic", "period, drift_period"]),
        ("period=24&period=12", ["period", "twice"]),
    ],
)
def test_periodic_bad_options_name_option_value_and_expectation(query, words):
    with pytest.raises(ConfigError) as caught:
        periodic(query)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message
