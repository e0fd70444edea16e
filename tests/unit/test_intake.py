"""PartitionIntake: round-robin, gathering on slow streams, keeping pace, exact counts."""

from __future__ import annotations

import numpy as np
import pytest

from actors.errors import ConfigError
from actors.intake import PartitionIntake
from actors.specs import IngestSpec
from tests.helpers import ArrayReader, LiveArrayReader


def arrays(rows: int, features: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((rows, features), dtype=np.float32)
    return x, (x.sum(axis=1) > features / 2).astype(np.float32)


def drain(intake: PartitionIntake, live_rows: int | None = None) -> dict[str, int]:
    """Sum what `intake` takes until bounded readers end, or live ones reach `live_rows`."""
    totals = {"read": 0, "kept": 0, "sampled": 0, "dead": 0, "steps": 0}

    def more() -> bool:
        return live_rows is None or sum(r.position for r in intake.readers) < live_rows

    while more() and (step := intake.next()) is not None:
        totals["read"] += step.rows_read
        totals["kept"] += step.rows_kept
        totals["sampled"] += step.rows_sampled
        totals["dead"] += len(step.source_dead)
        totals["steps"] += 1
    return totals


def test_bounded_partitions_are_read_round_robin_to_the_end():
    readers = [ArrayReader(*arrays(1000, seed=p), partition=p) for p in range(3)]
    intake = PartitionIntake(readers, batch_size=128)
    order = [intake.next().partition for _ in range(6)]
    assert order == [0, 1, 2, 0, 1, 2]
    totals = drain(intake)
    assert intake.done
    assert totals["kept"] + 6 * 128 == 3000
    assert totals["sampled"] == totals["dead"] == 0


def test_a_slow_live_partition_is_gathered_to_min_batch():
    reader = LiveArrayReader(*arrays(1000), released=10)
    spec = IngestSpec(min_batch=64, max_wait_ms=1000)
    intake = PartitionIntake([reader], batch_size=128, spec=spec)

    original = reader.read_batch

    def trickle(max_rows, max_wait_s=0.0):
        reader.release(10)  # ten more rows arrive while the member waits
        return original(max_rows, max_wait_s)

    reader.read_batch = trickle
    step = intake.next()
    assert step.partition == 0
    assert 64 <= step.rows_kept <= 128
    assert any(wait > 0 for wait in reader.waits)  # it waited for the rest, bounded


def test_a_quiet_stream_gives_an_idle_step_after_one_bounded_wait():
    reader = LiveArrayReader(*arrays(100), released=0)
    intake = PartitionIntake([reader], batch_size=32, spec=IngestSpec(max_wait_ms=250))
    step = intake.next()
    assert step is not None and step.partition is None and step.rows_read == 0
    assert reader.waits == [0.0, 0.25]
    assert not intake.done  # a live partition never ends


def test_uniform_sampling_keeps_pace_and_counts_every_row():
    x, y = arrays(200_000)
    reader = LiveArrayReader(x, y, released=200_000)
    spec = IngestSpec(max_lag_rows=10_000, lag_policy="uniform", max_read_factor=16)
    intake = PartitionIntake([reader], batch_size=256, spec=spec, seed=3)
    first = intake.next()
    # lag 200,000 over a bound of 10,000: keep ~5%, so one step reads 16 x 256 rows.
    assert first.rows_read == 16 * 256
    assert first.rows_kept == pytest.approx(0.05 * 16 * 256, rel=0.35)
    totals = drain(intake, live_rows=200_000)
    totals["read"] += first.rows_read
    totals["kept"] += first.rows_kept
    totals["sampled"] += first.rows_sampled
    assert totals["read"] == 200_000 == totals["kept"] + totals["sampled"]
    assert totals["sampled"] > 0
    # Kept offsets are real, increasing source offsets.
    offsets = first.pieces[0].row_offsets()
    assert np.all(np.diff(offsets) > 0) and offsets[-1] < 16 * 256


def test_newest_policy_skips_the_oldest_rows_past_the_bound():
    x, y = arrays(50_000)
    reader = LiveArrayReader(x, y, released=50_000)
    intake = PartitionIntake(
        [reader], batch_size=100, spec=IngestSpec(max_lag_rows=1_000, lag_policy="newest")
    )
    step = intake.next()
    assert step.rows_sampled == 49_000
    assert step.rows_kept == 100
    assert step.pieces[0].first_offset == 49_000
    assert step.rows_read == 49_100


def test_source_dead_letters_are_counted_with_their_offsets():
    x, y = arrays(500)
    reader = LiveArrayReader(x, y, released=500)
    reader.dead_at = {3, 250, 499}
    totals = {"read": 0, "kept": 0, "dead": []}
    intake = PartitionIntake([reader], batch_size=128)
    while reader.position < 500:
        step = intake.next()
        totals["read"] += step.rows_read
        totals["kept"] += step.rows_kept
        totals["dead"] += [letter.offset for letter in step.source_dead]
    assert totals["read"] == 500 == totals["kept"] + len(totals["dead"])
    assert totals["dead"] == [3, 250, 499]


def test_lag_is_summed_over_partitions():
    readers = [LiveArrayReader(*arrays(100), partition=p, released=40) for p in range(2)]
    intake = PartitionIntake(readers, batch_size=30)
    assert intake.lag() == 80
    intake.next()
    assert intake.lag() == 50


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_batch", 0, "min_batch"),
        ("max_wait_ms", -1.0, "max_wait_ms"),
        ("max_lag_rows", 0, "max_lag_rows"),
        ("lag_policy", "oldest", "lag_policy"),
    ],
)
def test_bad_ingest_settings_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        IngestSpec(**{field: value})
