"""Update strategies: the pieces on their own, then each strategy doing what it claims.

The behaviour test runs every strategy on the same stream with one abrupt concept switch
(hyperplane, the new concept orthogonal to the old one, no label noise) and measures:

* old-concept accuracy, on held-out rows of the old concept, averaged over 1k, 2k, 5k and
  10k rows after the switch (how much a strategy forgets);
* rows after the switch until the 500-row rolling prequential accuracy is back at 95%
  of its pre-switch level (how fast it adapts).

The figures are recorded in docs/benchmarks.md ("Update strategies").
"""

import keras
import numpy as np
import pytest

from actors.errors import ConfigError
from actors.learner import OnlineLearner
from actors.specs import ModelSpec, StrategySpec
from actors.strategies import (
    RecentRows,
    ReplayReservoir,
    ResetMonitor,
    learning_rate_schedule,
    replay_memory,
)
from pipelines.sources.base import SourceSpec
from pipelines.sources.synthetic import open_synthetic_source

ROWS = 50_000
SWITCH = 30_000
BATCH = 128
MARKS = (1000, 2000, 5000, 10_000)


def test_reservoir_keeps_a_uniform_sample_of_the_past():
    reservoir = ReplayReservoir(1000, (1,), seed=0)
    for start in range(0, 100_000, 250):
        rows = np.arange(start, start + 250, dtype=np.float32)
        reservoir.add(rows[:, None], rows)
    assert len(reservoir) == 1000 and reservoir.seen == 100_000
    held = reservoir._y
    assert len(np.unique(held)) == 1000  # no row twice
    # Uniform over the stream: each tenth of it holds about a tenth of the sample.
    counts = np.histogram(held, bins=10, range=(0, 100_000))[0]
    assert counts.min() > 60 and counts.max() < 140
    x, y = reservoir.sample(64)
    assert x.shape == (64, 1) and np.array_equal(x[:, 0], y)


def test_reservoir_fills_before_replacing_and_samples_nothing_when_empty():
    reservoir = ReplayReservoir(10, (2,), seed=0)
    assert reservoir.sample(5)[1].shape == (0,)
    reservoir.add(np.ones((4, 2), np.float32), np.arange(4, dtype=np.float32))
    assert len(reservoir) == 4
    assert set(reservoir.sample(50)[1].tolist()) == {0.0, 1.0, 2.0, 3.0}


def test_recent_rows_hold_the_newest_rows_across_the_wrap():
    memory = RecentRows(100, (1,), seed=0)
    assert memory.sample(5)[1].shape == (0,)
    for start in range(0, 1030, 30):  # 30-row batches: the writes wrap around unaligned
        rows = np.arange(start, start + 30, dtype=np.float32)
        memory.add(rows[:, None], rows)
    assert len(memory) == 100 and memory.seen == 1050
    assert sorted(memory._y.tolist()) == list(range(950, 1050))
    x, y = memory.sample(500)
    assert np.array_equal(x[:, 0], y) and set(y.tolist()) <= set(range(950, 1050))
    assert len(set(y.tolist())) > 90  # uniform over what it holds, not the newest few


def test_recent_rows_keep_the_newest_of_a_batch_larger_than_they_hold():
    memory = RecentRows(10, (1,), seed=0)
    memory.add(np.zeros((3, 1), np.float32), np.zeros(3, np.float32))
    assert set(memory.sample(50)[1].tolist()) == {0.0}  # only filled slots are sampled
    rows = np.arange(100, 125, dtype=np.float32)
    memory.add(rows[:, None], rows)
    assert sorted(memory._y.tolist()) == list(range(115, 125)) and memory.seen == 28


def test_recent_rows_checkpoint_oldest_first_and_restore_in_order():
    memory = RecentRows(8, (1,), seed=0)
    rows = np.arange(13, dtype=np.float32)
    memory.add(rows[:, None], rows)
    state = memory.state()
    assert (
        state["reservoir/y"].tolist() == list(range(5, 13)) and int(state["reservoir/seen"]) == 13
    )
    restored = RecentRows(4, (1,), seed=1)  # a smaller memory keeps the newest
    restored.load_state(state)
    assert restored.state()["reservoir/y"].tolist() == [9, 10, 11, 12] and restored.seen == 13
    more = np.array([13, 14], np.float32)
    restored.add(more[:, None], more)  # the oldest two go first
    assert restored.state()["reservoir/y"].tolist() == [11, 12, 13, 14]


def test_recent_rows_forget_all_but_the_newest_and_go_on_from_there():
    memory = RecentRows(8, (1,), seed=0)
    rows = np.arange(13, dtype=np.float32)  # wrapped: slots hold 5..12, not in slot order
    memory.add(rows[:, None], rows)
    assert memory.forget(3) == 5 and len(memory) == 3 and memory.seen == 13
    assert memory.state()["reservoir/y"].tolist() == [10, 11, 12]
    assert set(memory.sample(200)[1].tolist()) == {10.0, 11.0, 12.0}  # only what it kept
    more = np.arange(13, 20, dtype=np.float32)  # fills up again, then the oldest go first
    memory.add(more[:, None], more)
    assert memory.state()["reservoir/y"].tolist() == list(range(12, 20))
    assert memory.forget(100) == 0 and len(memory) == 8  # keeping more than it holds
    assert memory.forget(0) == 8 and memory.sample(5)[1].shape == (0,)


def test_a_reservoir_forgets_every_row_and_refills_at_once():
    reservoir = ReplayReservoir(10, (1,), seed=0)
    rows = np.arange(1000, dtype=np.float32)
    reservoir.add(rows[:, None], rows)
    assert reservoir.forget(5) == 10 and len(reservoir) == 0  # no time order to keep by
    new = np.arange(2000, 2010, dtype=np.float32)
    reservoir.add(new[:, None], new)
    # Filled by the next rows at once, not at capacity / 1000 per row.
    assert sorted(reservoir._y.tolist()) == new.tolist()


def test_a_learner_without_replay_has_nothing_to_forget():
    spec = ModelSpec(hidden=(4,))
    assert OnlineLearner(2, spec, strategy=StrategySpec(name="finetune")).forget_replay(0) == 0
    replay = OnlineLearner(2, spec, strategy=StrategySpec(name="replay", replay_size=16))
    replay.learn_many(np.zeros((12, 2), np.float32), np.zeros(12, np.float32))
    assert replay.forget_replay(4) == 8


def test_the_replay_buffer_setting_picks_the_memory():
    recent = replay_memory(StrategySpec(name="replay"), (3,), seed=0)
    reservoir = replay_memory(StrategySpec(name="replay", replay_buffer="reservoir"), (3,), 0)
    assert isinstance(recent, RecentRows) and recent.capacity == StrategySpec().replay_size
    assert isinstance(reservoir, ReplayReservoir)
    with pytest.raises(ConfigError, match="unknown replay buffer 'ring'"):
        StrategySpec(replay_buffer="ring")  # type: ignore[arg-type]


def test_reset_monitor_triggers_on_a_fall_and_hands_over_the_block():
    monitor = ResetMonitor(block=100, drop=0.15, regression=False, input_shape=(1,))
    x = np.arange(100, dtype=np.float32)[:, None]
    for _ in range(10):  # warm-up and a steady 0.9: no reset
        assert monitor.observe(x, x[:, 0], (np.arange(100) % 10 != 0).astype(float)) is None
    refit = monitor.observe(x, x[:, 0] + 1, (np.arange(100) % 2 == 0).astype(float))  # 0.5
    assert refit is not None and np.array_equal(refit[1], x[:, 0] + 1)
    assert monitor.resets == 1
    # Cool-down: the next blocks are warm-up again, even if just as bad.
    assert monitor.observe(x, x[:, 0], np.zeros(100)) is None


def test_reset_monitor_for_regression_watches_relative_error():
    monitor = ResetMonitor(block=50, drop=1.0, regression=True, input_shape=(1,))
    x = np.zeros((50, 1), np.float32)
    for _ in range(5):
        assert monitor.observe(x, x[:, 0], np.full(50, 0.01)) is None
    assert monitor.observe(x, x[:, 0], np.full(50, 0.015)) is None  # 50% more: under 2x
    assert monitor.observe(x, x[:, 0], np.full(50, 0.03)) is not None  # 3x the best


def test_schedules_follow_their_definition():
    constant = learning_rate_schedule(0.1, StrategySpec())
    assert constant == 0.1
    decay = learning_rate_schedule(0.1, StrategySpec(schedule="decay", decay_steps=10))
    assert float(decay(0)) == pytest.approx(0.1)
    assert float(decay(10)) == pytest.approx(0.05)  # 0.1 / (1 + 1 * 10 / 10)
    warmup = learning_rate_schedule(
        0.1, StrategySpec(schedule="warmup", warmup_steps=5, after_warmup_factor=0.2)
    )
    assert float(warmup(5)) == pytest.approx(0.1)
    assert float(warmup(6)) == pytest.approx(0.02)


def test_a_learner_steps_its_schedule():
    warmup = StrategySpec(schedule="warmup", warmup_steps=2, after_warmup_factor=0.1, step_rows=32)
    learner = OnlineLearner(3, seed=0, strategy=warmup)
    x = np.random.default_rng(0).random((32, 3), dtype=np.float32)
    for _ in range(4):
        learner.learn_many(x, (x[:, 0] > 0.5).astype(np.float32))
    optimizer = learner._optimizer
    assert int(optimizer.iterations) == 4
    assert float(optimizer.learning_rate) == pytest.approx(0.002)


def test_head_strategy_moves_only_the_last_layers():
    learner = OnlineLearner(4, ModelSpec(hidden=(8, 8)), seed=0, strategy=StrategySpec(name="head"))
    before = {v.path: v.numpy() for v in learner.model.trainable_variables}
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    for _ in range(5):
        learner.learn_many(x, (x.sum(axis=1) > 2).astype(np.float32))
    moved = {
        v.path
        for v in learner.model.trainable_variables
        if not np.array_equal(v.numpy(), before[v.path])
    }
    assert moved == {"member_out/kernel", "member_out/bias"}


@pytest.mark.parametrize("name", ["finetune", "replay", "head", "distill", "reset"])
def test_every_strategy_keeps_one_fixed_signature_graph(name):
    learner = OnlineLearner(4, seed=0, strategy=StrategySpec(name=name, reset_window=16))
    rng = np.random.default_rng(0)
    for n in (64, 7, 256, 1, 64, 64):
        x = rng.random((n, 4), dtype=np.float32)
        outcome = learner.learn_many(x, (x[:, 0] > 0.5).astype(np.float32))
        assert outcome.rows == n and outcome.scores.shape == (n,)
    assert learner._step.tracing_count() == 1


def test_bad_strategy_settings_are_config_errors():
    with pytest.raises(ConfigError, match="unknown update strategy 'rehearse'"):
        StrategySpec(name="rehearse")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="replay_ratio=0"):
        StrategySpec(replay_ratio=0)
    with pytest.raises(ConfigError, match="unknown learning-rate schedule"):
        StrategySpec(schedule="cosine")  # type: ignore[arg-type]


def _switch_stream(seed: int):
    """Partition 0 switches concept at SWITCH; partition 1 keeps the old one (held out)."""
    source = open_synthetic_source(
        SourceSpec(
            f"synthetic://hyperplane?drift_at={SWITCH / ROWS},none&noise=0&rows={2 * ROWS}",
            partitions=2,
            seed=seed,
        )
    )

    def rows(partition: int, n: int, offset: int = 0):
        batch = source.open(partition, offset).read_batch(n).batch
        x = np.stack([batch.column(f"x{i}").to_numpy() for i in range(10)], axis=1)
        return x.astype(np.float32), batch.column("label").to_numpy().astype(np.float32)

    return rows(0, ROWS), rows(1, 5000, offset=ROWS - 5000)


# The replay this test is about: a reservoir sample of the whole past, which keeps the
# old concept in every step (the job's default `recent` memory forgets it by design).
RESERVOIR_REPLAY = {"replay_buffer": "reservoir", "replay_size": 4096, "replay_ratio": 1.0}


def _run(strategy: str, seed: int, options: dict | None = None) -> dict:
    (x, y), (x_old, y_old) = _switch_stream(seed)
    keras.utils.set_random_seed(seed)
    # One optimizer step per 128-row batch of a (32, 32) network, the setting of the table
    # in docs/benchmarks.md. With the job's default 8-row steps finetune re-learns the
    # switch about as fast as a reset (that table's note has the figures), so the reset
    # claim is shown where it holds.
    learner = OnlineLearner(
        10,
        ModelSpec(hidden=(32, 32)),
        seed=seed,
        strategy=StrategySpec(name=strategy, step_rows=BATCH, **(options or {})),
    )
    hits, old = [], []
    for start in range(0, ROWS, BATCH):
        outcome = learner.learn_many(x[start : start + BATCH], y[start : start + BATCH])
        hits.extend(outcome.scores.tolist())
        after = start + BATCH - SWITCH
        if any(after - BATCH < mark <= after for mark in MARKS):
            old.append(float((learner.predict_many(x_old) == y_old).mean()))
    scores = np.array(hits)
    before = scores[SWITCH - 5000 : SWITCH].mean()
    rolling = np.convolve(scores[SWITCH:], np.ones(500) / 500, mode="valid")
    back = rolling >= 0.95 * before
    return {
        "before": float(before),
        "old_concept": float(np.mean(old)),
        "regain_rows": int(np.argmax(back)) + 500 if back.any() else ROWS,
        "accuracy": float(scores.mean()),
        "resets": learner.resets,
    }


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replay_and_distill_forget_less_and_reset_adapts_fastest(seed):
    results = {
        name: _run(name, seed, RESERVOIR_REPLAY if name == "replay" else None)
        for name in ("finetune", "replay", "distill", "reset")
    }
    for name, result in results.items():  # shown with `pytest -s`; docs/benchmarks.md
        print(f"seed {seed} {name:9} " + " ".join(f"{k}={v:.3f}" for k, v in result.items()))
    for name, result in results.items():
        assert result["before"] > 0.95, (name, result)  # all learned the first concept
    old = {name: r["old_concept"] for name, r in results.items()}
    assert old["replay"] > old["finetune"] + 0.1, results
    assert old["distill"] > old["finetune"] + 0.1, results
    regain = {name: r["regain_rows"] for name, r in results.items()}
    assert regain["reset"] < min(regain["finetune"], regain["replay"], regain["distill"]), results
    assert results["reset"]["resets"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recent_replay_follows_the_switch_like_finetune_not_like_the_reservoir(seed):
    """The job's default replay memory (the newest rows) is a drift follower: it re-learns
    a switch at least as fast as fine-tuning and is at least as accurate over the stream,
    where a reservoir of the past holds the old concept back."""
    results = {
        "finetune": _run("finetune", seed),
        "recent": _run("replay", seed),  # StrategySpec's replay defaults: recent rows
        "reservoir": _run("replay", seed, RESERVOIR_REPLAY),
    }
    for name, result in results.items():  # shown with `pytest -s`; docs/benchmarks.md
        print(f"seed {seed} {name:9} " + " ".join(f"{k}={v:.3f}" for k, v in result.items()))
    regain = {name: r["regain_rows"] for name, r in results.items()}
    accuracy = {name: r["accuracy"] for name, r in results.items()}
    assert regain["recent"] <= regain["finetune"] < regain["reservoir"], results
    assert accuracy["recent"] >= accuracy["finetune"] > accuracy["reservoir"], results
