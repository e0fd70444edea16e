"""Best-snapshot serving: the guard's rules, then a real member whose accuracy dips."""

import numpy as np

from actors.best_snapshot import BestSnapshotGuard
from actors.member_core import MemberCore
from actors.specs import MemberConfig, ModelSpec
from pipelines.schema import StreamSchema
from tests.helpers import ArrayReader


def _hits(rate: float, n: int = 100) -> np.ndarray:
    return (np.arange(n) % 100 < rate * 100).astype(float)


def test_serves_the_best_while_the_current_is_below_it_by_the_margin():
    guard = BestSnapshotGuard(margin=0.05, window=500, regression=False, min_rows=200)
    weights = [np.ones(2)]
    assert guard.offer(weights, 0.9)  # the first snapshot is the best so far
    for _ in range(5):
        guard.observe(_hits(0.9), _hits(0.9))
    assert not guard.serving_best
    for _ in range(5):
        guard.observe(_hits(0.8), _hits(0.9))  # current dips 0.1 below on the same rows
    assert guard.serving_best and guard.switches == 1
    assert not guard.offer([np.zeros(2)], 0.8)  # a dipped network never becomes the best
    for _ in range(5):
        guard.observe(_hits(0.88), _hits(0.9))  # recovered to within the margin
    assert not guard.serving_best


def test_a_new_high_or_an_obsolete_best_is_replaced():
    guard = BestSnapshotGuard(margin=0.05, window=500, regression=False, min_rows=200)
    guard.offer([np.ones(1)], 0.8)
    assert not guard.offer([np.full(1, 2.0)], 0.79)  # below the best's own level: kept
    assert guard.offer([np.full(1, 3.0)], 0.81)  # a new high replaces it
    assert guard.best_weights[0][0] == 3.0
    for _ in range(5):  # after drift the old best is far worse on today's rows
        guard.observe(_hits(0.7), _hits(0.5))
    assert guard.offer([np.full(1, 4.0)], 0.7)
    assert guard.best_weights[0][0] == 4.0 and guard.best_quality == 0.7


def test_regression_compares_relative_error():
    guard = BestSnapshotGuard(margin=0.1, window=500, regression=True, min_rows=100)
    guard.offer([np.ones(1)], 0.010)
    guard.observe(np.full(200, 0.0105), np.full(200, 0.010))  # 5% worse: within margin
    assert not guard.serving_best
    guard.observe(np.full(500, 0.013), np.full(500, 0.010))  # 30% worse
    assert guard.serving_best


def test_a_member_whose_accuracy_dips_is_served_from_its_best_snapshot():
    """Clean rows, then a burst of random labels that damages the network, then clean rows.

    During the burst both networks score about 50% on the same rows, so the damaged
    current one never replaces the best; after it, the current one is clearly worse than
    the best on clean rows: the member serves the best until the current one recovers.
    """
    rng = np.random.default_rng(0)
    clean, burst, after = 20_000, 8_000, 30_000
    x = rng.random((clean + burst + after, 5), dtype=np.float32)
    y = (x @ np.arange(1, 6) > 7.5).astype(np.float32)
    y[clean : clean + burst] = rng.integers(0, 2, burst)
    config = MemberConfig(
        model=ModelSpec(),
        batch_size=128,
        window=1000,
        eval_fraction=0.0,
        best_margin=0.03,
        best_check_every=1,
    )
    schema = StreamSchema(tuple(f"x{i}" for i in range(5)))
    core = MemberCore(0, [ArrayReader(x, y)], schema, config)
    served: list[tuple[int, str, bool]] = []
    best_ids: dict[int, int] = {}  # rows -> identity of the best snapshot held then
    while core.step() is not None:
        if core.batches % 16 == 0:  # a snapshot every 2,048 rows, as a member publishes
            weights, which = core.snapshot_weights()
            is_best = all(
                np.array_equal(a, b) for a, b in zip(weights, core.guard.best_weights, strict=True)
            )
            served.append((core.rows_learned, which, is_best))
            best_ids[core.rows_learned] = id(core.guard.best_weights)
    best_rows = [rows for rows, which, _ in served if which == "best"]
    assert best_rows, f"never served the best snapshot; guard: {core.guard.state()}"
    # Only after the burst began, and the best served is the pre-burst network.
    assert min(best_rows) > clean
    assert all(is_best for _, which, is_best in served if which == "best")
    last_clean = max(rows for rows in best_ids if rows <= clean)
    assert best_ids[min(best_rows)] == best_ids[last_clean]  # taken before the burst
    # The current network recovered, and the member went back to serving it.
    assert served[-1][1] == "current"
    assert core.stats()["best_snapshot"]["switches"] >= 1
