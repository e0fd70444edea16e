"""Best-snapshot serving: a floor under a member's oscillating incremental accuracy.

The member keeps its best snapshot so far. Every `check_every`-th batch, that snapshot is
scored on the same new rows the current network is tested on, so both recent figures are
measured on the same data (a best snapshot's old score would say nothing about today's
concept). The member serves the best snapshot while the current network is more than
`margin` below it, and the current one again once it recovers.

The best snapshot is replaced by the current network when the current one's recent
quality reaches the best's quality when it was taken (a new high), or when the current
one beats the best by the margin on recent rows (the concept moved on, the old best is
obsolete).

Quality is accuracy for classification; for regression it is the mean squared error,
where lower is better and the margin is relative (0.03: 3% more error).
"""

from __future__ import annotations

import numpy as np

from actors.weighting import RecentMean

__all__ = ["BestSnapshotGuard"]


class BestSnapshotGuard:
    """Which weights a member serves: its current network's or its best snapshot's.

    Pure bookkeeping: the member computes the scores; this class keeps the windows and
    the decision.

    Args:
        margin: how far the current network may fall below the best before the best is
            served (accuracy points; relative error for regression).
        window: rows of recent scores compared.
        regression: whether scores are squared errors (lower is better).
        min_rows: rows both windows need before any decision.
    """

    def __init__(self, margin: float, window: int, regression: bool, min_rows: int = 256):
        self.margin = float(margin)
        self.regression = regression
        self.min_rows = int(min_rows)
        self._current = RecentMean(window)
        self._best = RecentMean(window)
        self.best_weights: list[np.ndarray] | None = None
        self.best_quality: float | None = None  # recent quality when the best was taken
        self.serving_best = False
        self.switches = 0  # times serving moved from current to best

    def observe(self, current_scores: np.ndarray, best_scores: np.ndarray) -> None:
        """Per-row scores of the current network and of the best snapshot on the same rows."""
        self._current.add(current_scores)
        self._best.add(best_scores)
        self._decide()

    def _mean(self, values: RecentMean) -> float | None:
        return values.value() if values.rows >= self.min_rows else None

    def _better(self, a: float, b: float, by: float) -> bool:
        """Whether quality `a` beats `b` by more than `by`."""
        if self.regression:
            return a * (1.0 + by) < b
        return a > b + by

    def _decide(self) -> None:
        current, best = self._mean(self._current), self._mean(self._best)
        if current is None or best is None:
            return
        serve_best = self._better(best, current, self.margin)
        if serve_best and not self.serving_best:
            self.switches += 1
        self.serving_best = serve_best

    def offer(self, weights: list[np.ndarray], recent_quality: float | None) -> bool:
        """At a snapshot: make the current weights the best if they earned it.

        Args:
            weights: the current network's weights (copied if kept).
            recent_quality: its recent accuracy (or mean squared error), None if unknown.

        Returns:
            Whether the best snapshot was replaced (the caller reloads its scorer).
        """
        if recent_quality is None:
            return False
        if self.best_quality is not None:  # a best exists
            if self.serving_best:
                return False  # the current network has not recovered
            new_high = not self._better(self.best_quality, recent_quality, 0.0)
            current, best = self._mean(self._current), self._mean(self._best)
            obsolete = (
                current is not None
                and best is not None
                and self._better(current, best, self.margin)
            )
            if not (new_high or obsolete):
                return False
        self.best_weights = [np.array(w, copy=True) for w in weights]
        self.best_quality = recent_quality
        self._current.clear()
        self._best.clear()
        self.serving_best = False
        return True

    def state(self) -> dict:
        current, best = self._mean(self._current), self._mean(self._best)
        return {
            "serving": "best" if self.serving_best else "current",
            "best_quality": self.best_quality,
            "current_recent": current,
            "best_recent": best,
            "switches": self.switches,
        }
