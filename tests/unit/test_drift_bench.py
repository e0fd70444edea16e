"""The drift bench's recovery figure, from a coordinator history."""

from __future__ import annotations

import pytest

from pipelines.bench.drift_bench import rows_to_regain


def _history(curve):
    return [{"rows": rows, "ensemble_accuracy": acc} for rows, acc in curve]


def test_rows_to_regain_counts_from_the_switch_to_the_recovery_after_the_dip():
    curve = [(r, 0.9) for r in range(0, 100_000, 5_000)]
    curve += [(100_000, 0.88), (105_000, 0.7), (110_000, 0.8), (115_000, 0.86), (120_000, 0.9)]
    figures = rows_to_regain(_history(curve), 100_000)
    assert figures["pre_switch_accuracy"] == 0.9
    assert figures["lowest_accuracy"] == 0.7
    assert figures["rows_to_regain"] == 15_000  # 0.86 >= 0.95 * 0.9 = 0.855
    assert figures["post_switch_accuracy"] == pytest.approx((0.88 + 0.7 + 0.8 + 0.86 + 0.9) / 5)


def test_no_dip_is_zero_rows_and_no_recovery_is_none():
    flat = [(r, 0.9) for r in range(0, 200_000, 5_000)]
    assert rows_to_regain(_history(flat), 100_000)["rows_to_regain"] == 0
    broken = [(r, 0.9 if r < 100_000 else 0.5) for r in range(0, 200_000, 5_000)]
    assert rows_to_regain(_history(broken), 100_000)["rows_to_regain"] is None
    with pytest.raises(ValueError, match="no history point"):
        rows_to_regain(_history([(150_000, 0.9)]), 100_000)
