"""MemberCore without Ray: labels checked against the task, counts that reconcile."""

import re

import numpy as np
import pytest

from actors.errors import CheckpointError
from actors.member_core import MemberCore
from actors.specs import MemberConfig, ModelSpec, StrategySpec
from pipelines.schema import StreamSchema
from tests.helpers import ArrayReader


@pytest.mark.parametrize(
    ("spec", "labels", "bad", "expected"),
    [
        (ModelSpec(), [0, 1, 0.5, 2, 1, -1], [2, 3, 5], "expected 0 or 1"),
        (
            ModelSpec(task="multiclass", n_classes=3),
            [0, 2, 3, 1.5, 1, 2],
            [2, 3],
            r"expected an integer in \[0, 2\]",
        ),
        (ModelSpec(task="regression"), [0.3, -7.5, 1e6, 2, 0, 1], [], ""),
    ],
)
def test_labels_the_task_cannot_learn_are_dead_letters(spec, labels, bad, expected):
    x = np.random.default_rng(0).random((6, 2), dtype=np.float32)
    y = np.array(labels, dtype=np.float32)
    config = MemberConfig(model=spec, batch_size=4, eval_fraction=0.0, best_margin=None)
    core = MemberCore(0, [ArrayReader(x, y, partition=3)], StreamSchema(("x0", "x1")), config)
    dead = []
    while (letters := core.step()) is not None:
        dead.extend(letters)
    assert [d.offset for d in dead] == bad
    assert all(d.partition == 3 and d.reason.endswith(")") for d in dead)
    if bad:
        assert dead[0].reason.startswith(f"label is not a class of this {spec.task} task")
        assert re.search(expected, dead[0].reason), dead[0].reason
    stats = core.stats()
    assert stats["rows"] + stats["dead_letter"] + stats["rows_context"] == stats["rows_seen"] == 6
    assert stats["dead_letter"] == len(bad)


def test_sequence_windows_never_span_two_partitions():
    rows = np.arange(20, dtype=np.float32)[:, None]
    readers = [ArrayReader(rows, rows[:, 0], partition=p) for p in (0, 1)]
    config = MemberConfig(
        model=ModelSpec(kind="conv1d", window=4, kernel_size=2, task="regression"),
        batch_size=3,
        eval_fraction=0.0,
        best_margin=None,
    )
    core = MemberCore(0, readers, StreamSchema(("x0",)), config)
    seen = []
    learn = core.learner.learn_many
    core.learner.learn_many = lambda x, y: seen.append((x.copy(), y.copy())) or learn(x, y)
    while core.step() is not None:
        pass
    windows = np.concatenate([x for x, _ in seen])[:, :, 0]
    labels = np.concatenate([y for _, y in seen])
    # Every window is 4 consecutive rows of one partition, labelled with its last row.
    assert (np.diff(windows, axis=1) == 1).all()
    np.testing.assert_array_equal(windows[:, -1], labels)
    assert len(labels) == 2 * (20 - 3)  # each partition: 3 context rows
    assert core.stats()["rows_context"] == 6


class _Reopenable(ArrayReader):
    """An ArrayReader that can be opened at an offset, as a source reopens a partition."""

    def __init__(self, x, y, partition: int, offset: int = 0):
        super().__init__(x, y, partition)
        self._at = offset


@pytest.mark.parametrize(
    ("spec", "strategy"),
    [
        (ModelSpec(), StrategySpec()),
        (ModelSpec(), StrategySpec(name="replay", replay_size=512)),
        (ModelSpec(kind="conv1d", window=8, task="regression"), StrategySpec()),
    ],
    ids=["mlp", "mlp-replay", "conv1d-regression"],
)
def test_state_then_restore_continues_exactly_where_the_checkpoint_was(spec, strategy):
    """A restored member has the same weights, optimizer, counters, windows and recent
    accuracy, and its next steps learn exactly what the original's would have."""
    rng = np.random.default_rng(1)
    x = rng.random((3000, 2), dtype=np.float32)
    y = (x.sum(axis=1) > 1).astype(np.float32) if spec.task == "binary" else x.sum(axis=1)
    schema = StreamSchema(("x0", "x1"))
    config = MemberConfig(
        model=spec, strategy=strategy, batch_size=100, eval_fraction=0.0, best_margin=None
    )

    def core_at(offsets: dict[int, int]) -> MemberCore:
        readers = [_Reopenable(x[p::2], y[p::2], p, offsets.get(p, 0)) for p in (0, 1)]
        return MemberCore(0, readers, schema, config)

    original = core_at({})
    for _ in range(9):
        original.step()
    arrays, meta = original.state()
    assert meta["offsets"] == {"0": 500, "1": 400}
    restored = core_at({int(p): o for p, o in meta["offsets"].items()})
    restored.restore(arrays, meta)
    for ours, theirs in zip(
        original.learner.get_weights(), restored.learner.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
    assert restored.stats()["rows"] == original.stats()["rows"]
    assert restored.recent.value() == original.recent.value()
    for _ in range(4):
        original.step()
        restored.step()
    assert original.offsets() == restored.offsets()
    if strategy.name == "replay":
        return  # its reservoir draws from a freshly seeded generator after a restore
    for ours, theirs in zip(
        original.learner.get_weights(), restored.learner.get_weights(), strict=True
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert original.stats()["rows_context"] == restored.stats()["rows_context"]
    assert original.rows_seen == restored.rows_seen


def test_a_checkpoint_of_another_model_is_refused_with_the_reason():
    schema = StreamSchema(("x0", "x1"))
    x = np.zeros((10, 2), np.float32)
    y = np.zeros(10, np.float32)
    mlp = MemberCore(0, [ArrayReader(x, y)], schema, MemberConfig(best_margin=None))
    arrays, meta = mlp.state()
    other = MemberCore(
        0,
        [ArrayReader(x, y)],
        schema,
        MemberConfig(model=ModelSpec(task="regression"), best_margin=None),
    )
    with pytest.raises(CheckpointError, match="task 'binary', this job uses 'regression'"):
        other.restore(arrays, meta)


@pytest.mark.parametrize(
    ("uri", "spec"),
    [
        ("synthetic://hyperplane", ModelSpec()),
        ("synthetic://sea", ModelSpec()),
        ("synthetic://agrawal", ModelSpec()),
        ("synthetic://delivery", ModelSpec()),
        ("synthetic://periodic", ModelSpec(kind="conv1d", window=8, task="regression")),
    ],
)
@pytest.mark.parametrize("policy", ["uniform", "newest"])
def test_every_generator_reconciles_learned_sampled_dead_and_context(uri, spec, policy):
    """rows learned + window context + sampled away + dead letters == rows produced."""
    from actors.specs import IngestSpec
    from pipelines.sources import SourceSpec, open_source

    produced = 20_000
    source = open_source(SourceSpec(f"{uri}?rows={produced}", partitions=2, seed=5))
    config = MemberConfig(
        model=spec,
        batch_size=256,
        eval_fraction=0.0,
        best_margin=None,
        ingest=IngestSpec(max_lag_rows=3_000, lag_policy=policy),
    )
    core = MemberCore(0, [source.open(p) for p in (0, 1)], source.schema, config)
    while core.step() is not None:
        pass
    stats = core.stats()
    assert stats["rows_seen"] == produced
    assert stats["rows_sampled"] > 0
    accounted = stats["rows"] + stats["rows_context"] + stats["rows_sampled"]
    assert accounted + stats["dead_letter"] == produced, stats


def test_the_pending_evaluation_sample_keeps_only_the_newest_rows():
    """While the coordinator is away nothing takes the sample: it must stay bounded."""
    rows = 2_000
    x = np.arange(rows, dtype=np.float32)[:, None]
    y = (np.arange(rows) % 2).astype(np.float32)
    config = MemberConfig(batch_size=64, eval_fraction=0.5, eval_max_rows=100, best_margin=None)
    core = MemberCore(0, [ArrayReader(x, y, partition=0)], StreamSchema(("x0",)), config)
    while core.step() is not None:
        pass
    sample = core.take_sample()
    assert sample is not None
    sampled_x, sampled_y, partitions = sample
    assert len(sampled_x) == len(sampled_y) == 100
    assert partitions.tolist() == [0] * 100  # every row knows its source partition
    # The newest: roughly the last 200 rows at a 50% sampling rate, still in stream order.
    assert sampled_x[0, 0] > rows - 400 and np.all(np.diff(sampled_x[:, 0]) > 0)
    np.testing.assert_array_equal(sampled_y, sampled_x[:, 0] % 2)
    assert core.take_sample() is None
    assert core.stats()["rows"] == rows  # sampled rows are learned all the same
