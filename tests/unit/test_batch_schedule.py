"""A member's batches: small while its network is young, full-size after, small again
after it answers a drift."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from actors.batch_schedule import GROWTH, batch_rows
from actors.errors import ConfigError
from actors.member_core import MemberCore
from actors.specs import DriftSpec, MemberConfig
from pipelines.schema import StreamSchema
from tests.helpers import ArrayReader

SCHEMA = StreamSchema(("x0", "x1"))


@pytest.mark.parametrize(("start", "full"), [(8, 128), (1, 100), (3, 64), (16, 16)])
def test_a_batch_grows_from_start_to_full_and_stays_a_fraction_of_what_was_learned(start, full):
    sizes = [batch_rows(n, start, full) for n in range(20 * full * GROWTH)]
    assert sizes[0] == min(start, full) and sizes[-1] == full
    assert all(a <= b for a, b in pairwise(sizes))  # never shrinks
    # Past the first size, a batch is never more than 1/GROWTH of the rows learned.
    assert all(size * GROWTH <= n for n, size in enumerate(sizes) if size > start)


def test_without_a_start_every_batch_is_full():
    assert {batch_rows(n, None, 128) for n in (0, 5, 10**6)} == {128}
    assert batch_rows(0, 256, 128) == 128


def _learned_sizes(core: MemberCore) -> list[int]:
    sizes: list[int] = []
    learn = core.learner.learn_many

    def noting(xs, ys):
        sizes.append(len(ys))
        return learn(xs, ys)

    core.learner.learn_many = noting  # type: ignore[method-assign]
    while core.step() is not None:
        pass
    return sizes


def test_a_member_learns_small_batches_first_then_full_ones():
    x = np.random.default_rng(0).random((3000, 2), dtype=np.float32)
    y = (x.sum(axis=1) > 1).astype(np.float32)
    config = MemberConfig(batch_size=128, batch_start=8, eval_fraction=0.0, best_margin=None)
    sizes = _learned_sizes(MemberCore(0, [ArrayReader(x, y)], SCHEMA, config))
    assert sizes[:20] == [8] * 8 + [16] * 4 + [32] * 4 + [64] * 4
    assert sum(sizes[:20]) == 512  # 128-row batches from the 512th row on
    assert set(sizes[20:-1]) == {128} and sum(sizes) == 3000


def test_a_member_that_answers_a_drift_starts_small_again_and_a_restore_keeps_it():
    rows, switch = 8000, 4000
    x = np.random.default_rng(1).random((rows, 2), dtype=np.float32)
    y = (x.sum(axis=1) > 1).astype(np.float32)
    y[switch:] = 1 - y[switch:]  # the opposite concept: ADWIN sees the errors jump
    config = MemberConfig(
        batch_size=128,
        batch_start=8,
        eval_fraction=0.0,
        best_margin=None,
        drift=DriftSpec("adwin", "forget"),
    )
    core = MemberCore(0, [ArrayReader(x, y)], SCHEMA, config)
    sizes = _learned_sizes(core)
    assert core.stats()["drift"]["acted"] >= 1
    # A batch smaller than the one before, the stream's last (short) batch left out.
    restarted = [i for i in range(1, len(sizes) - 1) if sizes[i] < sizes[i - 1]]
    assert restarted, sizes
    at = sum(sizes[: restarted[0]])
    assert switch <= at <= switch + 1500  # after the switch, once ADWIN saw it
    assert sizes[restarted[0]] == 8
    assert core.started_over_at > switch and sizes[-2] == 128

    arrays, meta = core.state()
    twin = MemberCore(0, [ArrayReader(x, y)], SCHEMA, config)
    twin.restore(arrays, meta)
    assert twin.started_over_at == core.started_over_at


def test_a_bad_start_is_refused_with_its_value():
    with pytest.raises(ConfigError, match=r"batch_start must be >= 1 \(or None\), got 0"):
        MemberConfig(batch_start=0)
