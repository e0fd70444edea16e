"""The accuracy harness on small streams: the ensemble replay, River's learners, the bench's
JSON, table and plots. TensorFlow and River run for real; no Ray."""

from __future__ import annotations

import numpy as np
import pytest

from actors.errors import ConfigError
from pipelines.bench.accuracy_bench import (
    LEARNERS,
    format_table,
    run_accuracy_bench,
    write_plots,
)
from pipelines.bench.ensemble_replay import replay_ensemble, replay_single_model
from pipelines.bench.river_baselines import run_river
from pipelines.config import JobConfig


def test_the_replay_scores_every_row_once_and_weighs_down_a_noise_partition() -> None:
    rows = 24_000
    # Partition 3's labels are coin flips: its member learns nothing, the rest learn SEA.
    config = JobConfig(
        source="synthetic://sea?noise=0.0,0.0,0.0,0.5&drift_at=0.5",
        rows=rows,
        progress=False,
        checkpoints=False,
    )
    run = replay_ensemble(config, publish_rows=1024)
    assert len(run.y) == len(run.ensemble) == len(run.uniform) == rows
    assert all(len(scores) == rows for scores in run.members.values())
    # Every partition's rows, each once; the four switches fall in one round of batches.
    assert np.bincount(run.partition_of_row).tolist() == [rows // 4] * 4
    assert len(run.drift_rows) == 1 and abs(run.drift_rows[0] - rows // 2) <= 4 * 128
    assert run.final_weights[3] < 0.1 < min(run.final_weights[m] for m in (0, 1, 2))
    # Scored on every row, the noise member is near chance and the others well above it.
    assert run.members[3].mean() < 0.75 < min(run.members[m].mean() for m in (0, 1, 2))
    # Members' batches start at 8 rows and grow to 128 (batch_schedule); the single
    # model reads the same batches, so the same stream order (else it raises).
    assert run.batch_rows[:4] == [8] * 4 and run.batch_rows[-8:-4] == [128] * 4
    assert sum(run.batch_rows) >= rows
    single, single_rows_per_s = replay_single_model(config, run.y, run.batch_rows)
    assert len(single) == rows and single_rows_per_s > 0
    assert 0 < run.learn_rows < rows and run.learn_s > 0  # first batches are not timed


def test_river_learners_run_test_then_train_on_the_rows_given() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3000, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 1.0).astype(np.float32)
    scores, rows_per_s = run_river("river_logreg", x, y, "binary")
    assert scores.shape == (3000,) and rows_per_s > 0
    assert scores[:50].mean() < scores[-1000:].mean()  # tested before trained: it learns
    assert scores[-1000:].mean() > 0.9
    errors, _ = run_river("river_hat", x, x[:, 0] * 2.0, "regression")
    assert errors[-1000:].mean() < errors[:100].mean()
    with pytest.raises(ConfigError, match="unknown River learner"):
        run_river("river_svm", x, y, "binary")


def test_the_bench_reports_every_learner_on_a_synthetic_stream_and_the_dataset(tmp_path) -> None:
    result = run_accuracy_bench(rows=8_000, streams=("sea", "bananas"), river=("river_logreg",))
    expected = [name for name in LEARNERS if not name.startswith("river_")] + ["river_logreg"]
    for name, stream in result["streams"].items():
        assert sorted(stream["accuracy"]) == sorted(expected), name
        assert sorted(stream["rows_per_s"]) == sorted(expected), name
        assert all(0.0 <= a <= 1.0 for a in stream["accuracy"].values()), stream["accuracy"]
    assert result["streams"]["sea"]["rows"] == 8_000
    assert result["streams"]["bananas"]["rows"] == 5_300  # River's Bananas, every row
    assert result["streams"]["bananas"]["drift_rows"] == []
    table = format_table(result)
    assert table.count("\n") == 1 + 2 * len(expected)
    paths = write_plots(result, tmp_path / "plots")
    assert [p.name for p in paths] == ["accuracy_sea.png", "accuracy_bananas.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    with pytest.raises(ConfigError, match="unknown stream"):
        run_accuracy_bench(streams=("sine",))


def test_knowledge_flow_experiments_change_what_members_learn() -> None:
    config = JobConfig(
        source="synthetic://sea?noise=0.1&drift_at=none",
        rows=8_000,
        progress=False,
        checkpoints=False,
        # One step per batch, where members learn slowest and averaging shows most. With
        # 16-row steps each member converges on its own and the two figures below are
        # within noise (measured: 6.7% averaged against 6.5% alone).
        step_rows=128,
    )

    def disagreement(run) -> float:
        """Share of rows on which members 0 and 1 are not both right or both wrong."""
        return float(np.mean(run.members[0] != run.members[1]))

    alone = replay_ensemble(config, publish_rows=512)
    again = replay_ensemble(config, publish_rows=512)
    assert np.array_equal(alone.members[0], again.members[0])  # the replay is repeatable
    sharing = replay_ensemble(config, publish_rows=512, knowledge="shared-sample")
    assert not np.array_equal(alone.members[0], sharing.members[0])
    averaging = replay_ensemble(config, publish_rows=512, knowledge="peer-average")
    # Averaged members answer more alike (measured: 4.8% of rows against 6.0% alone).
    assert disagreement(averaging) < disagreement(alone)
    with pytest.raises(ConfigError, match="knowledge"):
        replay_ensemble(config, knowledge="gossip")
