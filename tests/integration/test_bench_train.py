"""`bench train` end to end on the module's shared local Ray, with a small stream.

Checks the figures' shape and that every contender trained; how fast is for the
benchmark itself (docs/benchmarks.md), not for a timed test.
"""

from __future__ import annotations

import json
import math

import pytest

from pipelines.bench.train_bench import CONTENDERS, TARGETS, run_train_bench

pytestmark = pytest.mark.integration


def test_bench_train_reports_every_contender(ray_local):
    result = run_train_bench(batch=256, read_rows=512, rows=24_000, seconds=0.5, niceness=0)

    assert json.loads(json.dumps(result)) == result  # what --json prints
    assert (result["batch"], result["read_rows"]) == (256, 512)
    assert set(result["rows_per_s"]) == set(CONTENDERS)
    for name in CONTENDERS:
        rate = result["rows_per_s"][name]
        assert math.isfinite(rate) and rate > 0, (name, rate)
        assert result["rows_timed"][name] > 0
    assert set(TARGETS) <= set(result["ratios"])
    for name, ratio in result["ratios"].items():
        assert math.isfinite(ratio) and ratio > 0, (name, ratio)
    for bare in ("bare_step", "bare_step_read"):
        assert result["ratios"][f"member_actor/{bare}"] == pytest.approx(
            result["rows_per_s"]["member_actor"] / result["rows_per_s"][bare]
        )
    # The member trained on the whole stream in reads of 512 rows, and the bench timed it
    # after its warm-up.
    assert result["member"]["reads"] == math.ceil(24_000 / 512)
    assert 0 < result["rows_timed"]["member_actor"] < 24_000
    assert result["member"]["publishes"] >= 1
    assert ray_local.is_initialized()  # the fixture's Ray is left running
