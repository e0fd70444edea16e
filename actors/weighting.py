"""Mixing weights from recent accuracy: pure functions and a sliding-window tracker.

The first policy, ``accuracy``: each member's weight is proportional to how far its
recent accuracy is above chance, zero at or below chance. Chance is the accuracy of
always predicting the majority class of the same window, so a member that only learned
the class balance earns nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from actors.errors import ConfigError

__all__ = ["POLICIES", "RecentAccuracy", "mixing_weights"]

POLICIES = ("accuracy", "uniform")


class RecentAccuracy:
    """Accuracy over the last `window` scored rows.

    Args:
        window: how many of the most recent rows count.
    """

    def __init__(self, window: int):
        if window < 1:
            raise ConfigError(f"accuracy window must be >= 1 row, got {window}")
        self.window = int(window)
        self._hits: deque[bool] = deque(maxlen=self.window)
        self.total_rows = 0
        self.total_correct = 0

    def add(self, correct: np.ndarray) -> None:
        correct = np.asarray(correct, dtype=bool).reshape(-1)
        self._hits.extend(correct.tolist())
        self.total_rows += int(correct.size)
        self.total_correct += int(correct.sum())

    @property
    def rows(self) -> int:
        return len(self._hits)

    def value(self) -> float | None:
        """Recent accuracy, or None before any row was scored."""
        return float(np.mean(self._hits)) if self._hits else None

    def cumulative(self) -> float | None:
        """Accuracy over every row ever scored."""
        return self.total_correct / self.total_rows if self.total_rows else None


def mixing_weights(
    accuracies: Sequence[float | None],
    *,
    chance: float,
    policy: str = "accuracy",
    floor: float = 0.0,
) -> np.ndarray:
    """Mixing weights that sum to 1.

    Args:
        accuracies: each member's recent accuracy; None for a member not yet scored,
            which gets the average share of the scored ones (neither dominating nor
            vanishing before it has a record).
        chance: the accuracy a trivial predictor gets on the same rows.
        policy: ``accuracy`` (proportional to accuracy above chance) or ``uniform``.
        floor: minimum weight of a member that is above chance, before renormalising.

    Returns:
        Array of weights, one per member. If no member is above chance, uniform.

    Raises:
        ConfigError: for an unknown policy or a floor outside [0, 1/len).
    """
    n = len(accuracies)
    if n == 0:
        return np.zeros(0)
    if policy not in POLICIES:
        raise ConfigError(f"unknown weighting policy {policy!r}; expected one of {list(POLICIES)}")
    if not 0.0 <= floor < 1.0 / n:
        raise ConfigError(
            f"weight floor must be in [0, 1/members) = [0, {1.0 / n:.3f}), got {floor}"
        )
    if policy == "uniform":
        return np.full(n, 1.0 / n)
    known = [a for a in accuracies if a is not None]
    gains = np.array(
        [max(a - chance, 0.0) if a is not None else np.nan for a in accuracies], dtype=float
    )
    if known:
        fill = float(np.nanmean(gains)) if np.any(~np.isnan(gains)) else 0.0
        gains = np.where(np.isnan(gains), fill, gains)
    else:
        gains = np.ones(n)
    if gains.sum() <= 0.0:
        return np.full(n, 1.0 / n)
    weights = gains / gains.sum()
    if floor > 0.0:
        weights = _apply_floor(gains, floor)
    return weights


def _apply_floor(gains: np.ndarray, floor: float) -> np.ndarray:
    """Above-chance members get at least `floor`; the rest share what is left by gain.

    Clamping and renormalising would push a floored weight back under the floor, so
    floored members are fixed at exactly `floor` and the others are rescaled, repeating
    until no rescaled member falls under it (at most one pass per member).
    """
    above = gains > 0.0
    floored = np.zeros_like(above)
    weights = np.zeros_like(gains)
    for _ in range(int(above.sum())):
        free = above & ~floored
        remaining = 1.0 - floor * floored.sum()
        weights = np.where(floored, floor, 0.0)
        weights[free] = remaining * gains[free] / gains[free].sum()
        newly = free & (weights < floor)
        if not newly.any():
            break
        floored |= newly
    return weights
