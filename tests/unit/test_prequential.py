"""The accuracy harness's figures, on score arrays whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.bench.prequential import (
    StreamScores,
    accuracy_curve,
    prequential_summary,
    rows_to_regain,
)


def _hits(pattern: list[tuple[int, float]]) -> np.ndarray:
    """(rows, rate) pieces with hits spread evenly, so that any stretch of a piece has its
    rate to within one row (row i hits if floor((i + 1) * rate) > floor(i * rate))."""
    pieces = []
    for rows, rate in pattern:
        i = np.arange(rows)
        pieces.append((np.floor((i + 1) * rate) > np.floor(i * rate)).astype(np.float64))
    return np.concatenate(pieces)


def test_accuracy_is_the_hit_rate_and_r2_for_regression() -> None:
    scores = _hits([(1000, 0.8)])
    assert StreamScores(scores, np.zeros(1000)).accuracy() == pytest.approx(0.8)
    labels = np.random.default_rng(1).normal(0.0, 2.0, 5000)
    mean_predictor = StreamScores(np.square(labels - labels.mean()), labels, regression=True)
    assert mean_predictor.accuracy() == pytest.approx(0.0, abs=1e-9)
    perfect = StreamScores(np.zeros(5000), labels, regression=True)
    assert perfect.accuracy() == 1.0


def test_rows_to_regain_counts_from_the_switch_to_a_recovered_post_switch_window() -> None:
    # 0.9 before the switch at row 5000, 0.5 for 3000 rows, then 0.9 again.
    stream = StreamScores(_hits([(5000, 0.9), (3000, 0.5), (4000, 0.9)]), np.zeros(12000))
    regained = rows_to_regain(stream, 5000, window=1000)
    # A trailing window clears 95% of 0.9 (0.855) once 88.75% of it is recovered rows, at
    # row 8000 + 888; windows end every 100 rows after the switch, so at 8900.
    assert regained == 3900


def test_rows_to_regain_is_zero_without_a_fall_and_none_without_a_recovery() -> None:
    steady = StreamScores(_hits([(5000, 0.9), (5000, 0.9)]), np.zeros(10000))
    assert rows_to_regain(steady, 5000, window=1000) == 0
    broken = StreamScores(_hits([(5000, 0.9), (5000, 0.5)]), np.zeros(10000))
    assert rows_to_regain(broken, 5000, window=1000) is None
    assert rows_to_regain(steady, 500, window=1000) is None  # too few rows before it


def test_summary_and_curve() -> None:
    stream = StreamScores(_hits([(5000, 0.9), (5000, 0.6)]), np.zeros(10000))
    summary = prequential_summary(stream, [5000], after=2000)
    assert summary["accuracy"] == pytest.approx(0.75)
    assert summary["accuracy_after_drift"] == [pytest.approx(0.6, abs=0.001)]
    assert summary["rows_to_regain"] == [None]
    curve = accuracy_curve(stream, window=1000, points=10)
    assert curve[0][0] == 1000 and curve[-1][0] == 10000
    assert curve[0][1] == pytest.approx(0.9, abs=0.001)
    assert curve[-1][1] == pytest.approx(0.6, abs=0.001)
