"""Prequential (test-then-train) figures from per-row scores, for the accuracy harness.

Pure numpy, no Ray, no model. Every learner in `bench accuracy` yields one score per
stream row, in stream order, computed *before* it learned that row: 1.0/0.0 for a right or
wrong class, or the squared error for regression. Everything the harness reports comes
from those arrays, so every learner is measured by the same code.

For regression, "accuracy" is the coefficient of determination over the rows in question,
``1 - MSE / Var(y)`` (1 is perfect, 0 is predicting the mean), so that "higher is better"
holds for every stream in the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["StreamScores", "accuracy_curve", "prequential_summary", "rows_to_regain"]


@dataclass(frozen=True)
class StreamScores:
    """One learner's per-row prequential scores on a stream.

    Attributes:
        scores: (rows,) 1/0 hits (classification) or squared errors (regression).
        labels: (rows,) the labels, in the same order (regression needs their variance).
        regression: whether `scores` are squared errors.
    """

    scores: np.ndarray
    labels: np.ndarray
    regression: bool = False

    def accuracy(self, start: int = 0, stop: int | None = None) -> float:
        """Accuracy (or R², for regression) over rows ``[start, stop)``."""
        scores = self.scores[start:stop]
        if scores.size == 0:
            return float("nan")
        if not self.regression:
            return float(scores.mean())
        variance = float(np.var(self.labels[start:stop]))
        return 1.0 - float(scores.mean()) / variance if variance > 0 else float("nan")


def accuracy_curve(stream: StreamScores, window: int, points: int = 200) -> list[tuple[int, float]]:
    """(row, accuracy over the `window` rows ending there) at about `points` even steps."""
    n = stream.scores.size
    if n == 0:
        return []
    step = max(1, n // points)
    ends = range(min(window, n), n + 1, step)
    return [(end, round(stream.accuracy(max(0, end - window), end), 4)) for end in ends]


def rows_to_regain(
    stream: StreamScores, drift_row: int, *, window: int = 1000, share: float = 0.95
) -> int | None:
    """Rows after `drift_row` until the trailing `window`-row accuracy is back at `share`
    of its value over the `window` rows before the drift.

    0 if it never fell below that; None if it fell and never came back, or if there are
    fewer than `window` rows before the drift.
    """
    if drift_row < window:
        return None
    target = share * stream.accuracy(drift_row - window, drift_row)
    n = stream.scores.size
    fell = False
    # Trailing windows ending every tenth of a window after the drift.
    step = max(1, window // 10)
    for end in range(drift_row + step, n + 1, step):
        accuracy = stream.accuracy(max(0, end - window), end)
        if accuracy < target:
            fell = True
        elif fell and end - window >= drift_row:
            # Back, on a window made of post-drift rows only.
            return end - drift_row
    return None if fell else 0


def prequential_summary(
    stream: StreamScores,
    drift_rows: Sequence[int],
    *,
    after: int = 5000,
    window: int = 1000,
    share: float = 0.95,
) -> dict[str, float | list | None]:
    """The harness's table row for one learner on one stream.

    Returns:
        ``accuracy`` over the whole stream; ``accuracy_after_drift``, the accuracy over
        the `after` rows following each drift; ``rows_to_regain`` per drift (see
        `rows_to_regain`).
    """
    return {
        "accuracy": round(stream.accuracy(), 4),
        "accuracy_after_drift": [round(stream.accuracy(d, d + after), 4) for d in drift_rows],
        "rows_to_regain": [
            rows_to_regain(stream, d, window=window, share=share) for d in drift_rows
        ],
    }
