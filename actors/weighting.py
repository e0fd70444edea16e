"""Mixing weights: named weighting policies, their registry, and a sliding-window tracker.

A `WeightingPolicy` sees every member scored on the coordinator's shared evaluation
sample (`observe`), keeps each member's last `window` rows, and answers mixing weights
over the eligible members (`weights`). The policies, by registry name:

=============  ==========================================================================
``uniform``    equal weights
``accuracy``   ``w ∝ accuracy - chance`` (chance: the window's majority-class rate)
``softmax``    ``w ∝ exp((accuracy - best) / temperature)``
``hedge``      ``w ∝ exp(-eta * sqrt(rows) * (loss - best loss))``, 0/1 loss (Hedge)
``awe``        ``w = max(0, MSE_random - MSE)`` (Wang et al. 2003)
=============  ==========================================================================

All but ``uniform`` give 0 to a member at or below chance; all share the same handling of
new members (`min_rows`), `floor` and `cap` (see `WeightingPolicy`). Build one by name
with `make_policy`, which validates the parameters.

Every policy serves the three tasks (``binary``, ``multiclass``, ``regression``). For
regression, accuracy becomes the skill ``1 - mse / var(y)`` with chance 0 (predicting
the window's mean), hedge's loss the normalised squared error ``mse / var(y)``, and
``MSE_random`` is ``var(y)``.


Example:
    >>> import numpy as np
    >>> policy = make_policy("softmax", 3, temperature=0.05, min_rows=1)
    >>> policy.weights(np.array([True, True, False])).tolist()
    [0.5, 0.5, 0.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from actors._weighting_policies import (
    SIGNIFICANCE_Z,
    AccuracyPolicy,
    AwePolicy,
    HedgePolicy,
    SoftmaxPolicy,
    UniformPolicy,
    WeightingPolicy,
)
from actors.errors import ConfigError

__all__ = [
    "POLICIES",
    "SIGNIFICANCE_Z",
    "AccuracyPolicy",
    "AwePolicy",
    "HedgePolicy",
    "RecentAccuracy",
    "RecentMean",
    "SoftmaxPolicy",
    "UniformPolicy",
    "WeightingPolicy",
    "make_policy",
    "mix_outputs",
    "mix_rows",
    "recent_scores",
    "row_scores",
]

POLICIES: dict[str, type[WeightingPolicy]] = {
    policy.name: policy
    for policy in (UniformPolicy, AccuracyPolicy, SoftmaxPolicy, HedgePolicy, AwePolicy)
}
"""Weighting policies by name."""

_COMMON_PARAMS = ("window", "floor", "cap", "min_rows")


def make_policy(
    name: str, n_members: int, *, task: str = "binary", **params: Any
) -> WeightingPolicy:
    """Build the weighting policy `name` for `n_members` members.

    Args:
        name: a key of `POLICIES`.
        n_members: number of members, >= 1.
        task: what the members predict: ``binary``, ``multiclass`` or ``regression``.
        **params: ``window``, ``floor``, ``cap``, ``min_rows`` (see `WeightingPolicy`)
            and the policy's own (``temperature`` for softmax, ``eta`` for hedge).

    Returns:
        A fresh policy with empty windows.

    Raises:
        ConfigError: for an unknown name or parameter, or a value out of range; the
            message lists what is known or repeats the values received.

    Example:
        >>> make_policy("hedge", 4, eta=1.0, window=1000)
        HedgePolicy(4, window=1000, floor=0.0, cap=1.0, min_rows=50, eta=1.0)
    """
    if name not in POLICIES:
        raise ConfigError(
            f"unknown weighting policy {name!r}; expected one of {', '.join(sorted(POLICIES))}"
        )
    policy = POLICIES[name]
    accepted = (*_COMMON_PARAMS, *policy.params)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"weighting policy {name!r} has no parameter(s) {', '.join(unknown)}; "
            f"it takes {', '.join(accepted)}"
        )
    return policy(n_members, task=task, **params)


class RecentMean:
    """Mean of per-row scores over the last `window` scored rows, and over all of them.

    Per-row squared errors give the recent and cumulative MSE (their square roots RMSE).

    Args:
        window: how many of the most recent rows count.
    """

    def __init__(self, window: int):
        if window < 1:
            raise ConfigError(f"accuracy window must be >= 1 row, got {window}")
        self.window = int(window)
        # A NumPy ring buffer, not a deque of Python floats: a member adds a batch per
        # training step, and converting each batch to a list cost ~60 µs per 256 rows.
        self._values = np.zeros(self.window, np.float64)
        self._next = 0
        self._held = 0
        self.total_rows = 0
        self.total = 0.0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        self.total_rows += int(values.size)
        self.total += float(values.sum())
        kept = values[-self.window :]
        n = kept.size
        end = self._next + n
        if end <= self.window:
            self._values[self._next : end] = kept
        else:
            split = self.window - self._next
            self._values[self._next :] = kept[:split]
            self._values[: n - split] = kept[split:]
        self._next = end % self.window
        self._held = min(self.window, self._held + n)

    def clear(self) -> None:
        """Forget the recent rows (the cumulative figures stay)."""
        self._next = self._held = 0

    def state(self) -> tuple[np.ndarray, dict[str, float]]:
        """The recent rows, oldest first, and the cumulative figures (for a checkpoint)."""
        order = np.roll(self._values, -self._next) if self._held == self.window else None
        recent = order if order is not None else self._values[: self._held].copy()
        return recent, {"total_rows": self.total_rows, "total": self.total}

    def load_state(self, recent: np.ndarray, totals: dict[str, float]) -> None:
        """Restore what `state` returned (a window of another length keeps the newest)."""
        self.clear()
        self.add(np.asarray(recent, np.float64))
        self.total_rows = int(totals["total_rows"])
        self.total = float(totals["total"])

    @property
    def rows(self) -> int:
        return self._held

    def value(self) -> float | None:
        """Recent mean, or None before any row was scored."""
        return float(self._values[: self._held].mean()) if self._held else None

    def cumulative(self) -> float | None:
        """Mean over every row ever scored."""
        return self.total / self.total_rows if self.total_rows else None


class RecentAccuracy(RecentMean):
    """Accuracy over the last `window` scored rows: the mean of 0/1 hits."""

    def add(self, values: np.ndarray) -> None:
        super().add(np.asarray(values, dtype=bool))

    @property
    def total_correct(self) -> int:
        return round(self.total)


def recent_scores(task: str, window: int) -> RecentMean:
    """The window that holds `row_scores` of `task`: hits (accuracy) for classification,
    squared errors (MSE) for regression."""
    return RecentMean(window) if task == "regression" else RecentAccuracy(window)


def row_scores(task: str, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: whether a prediction hit its label, or for regression its squared error.

    What `RecentMean` windows hold. `predictions` are (n,) probabilities of class 1
    (binary) or values (regression), or (n, classes) probabilities (multiclass). A
    non-finite regression prediction costs an infinite error, so it never looks good.
    """
    if task == "regression":
        with np.errstate(over="ignore"):
            squared = np.square(predictions - labels)
        return np.where(np.isnan(squared), np.inf, squared)
    if task == "multiclass":
        return predictions.argmax(axis=-1) == labels
    return (predictions > 0.5) == (labels > 0.5)


def mix_outputs(outputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean over members: (n,) from (n, M), or (n, C) from (n, M, C)."""
    if outputs.ndim == 3:
        return np.einsum("nmc,m->nc", outputs, weights)
    return outputs @ weights


def mix_rows(outputs: np.ndarray, row_weights: np.ndarray) -> np.ndarray:
    """`mix_outputs` with weights per row: (n, M) weights, or (1, M) for every row."""
    weights = np.broadcast_to(row_weights, outputs.shape[:2])
    if outputs.ndim == 3:
        return np.einsum("nmc,nm->nc", outputs, weights)
    return np.einsum("nm,nm->n", outputs, weights)
