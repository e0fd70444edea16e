"""MemberCore without Ray: labels checked against the task, counts that reconcile."""

import re

import numpy as np
import pytest

from actors.member_core import MemberCore
from actors.specs import MemberConfig, ModelSpec
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
