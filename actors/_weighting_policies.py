"""Weighting policies: the shared contract and machinery, and the five named policies.

Import these names from `actors.weighting`, which re-exports them with the registry.

Every policy keeps, for each member, the last `window` shared-sample rows that member
was scored on, in a ring buffer of three per-row figures: ``hit`` (1 where the member's
class was right; unused for regression), ``sqerr`` (``(1 - p(true class))^2`` for
classification, ``(prediction - target)^2`` for regression) and ``label`` (the class
index, or the regression target). From those a window gives the five figures of
`_WindowStats`, which is all a policy reads:

==============  =====================================  ======================================
figure          binary / multiclass                    regression
==============  =====================================  ======================================
``accuracy``    share of rows right (argmax)           skill ``1 - mse / var(y)``
``chance``      the window's majority-class share      0 (the skill of predicting the mean)
``mse``         mean ``(1 - p(true class))^2``         mean ``(prediction - y)^2``
``random_mse``  ``sum_c p(c) (1 - p(c))^2``            ``var(y)`` (the mean predictor's MSE)
==============  =====================================  ======================================

so one rule per policy serves every task. Policies differ only in how a member's window
becomes a *gain* (its unnormalised weight); everything else is common and lives in
`WeightingPolicy.weights`:

1. members with fewer than `min_rows` rows get the average share of those with enough
   (uniform over the eligible members if none has enough);
2. a member at or below chance gets 0, and so does one whose edge over chance is within
   `SIGNIFICANCE_Z` standard errors of it (the window's own sampling error: a pure-noise
   member is a little above chance in about half its windows, and without this it takes
   every weight whenever the good members dip below chance); if no member is clearly
   above, the weights are uniform;
3. the rest are proportional to their gains, bounded below by `floor` and above by
   `cap`: ``w_i = clip(lam * gain_i, floor, cap)`` with the one ``lam`` that makes the
   weights sum to 1 (`_bounded_shares`).

Gains are handled as logarithms so that the exponential policies (softmax, hedge) keep
their ratios even where ``exp`` would underflow.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from actors.errors import ConfigError
from actors.specs import TASKS

__all__ = [
    "SIGNIFICANCE_Z",
    "AccuracyPolicy",
    "AwePolicy",
    "HedgePolicy",
    "SoftmaxPolicy",
    "UniformPolicy",
    "WeightingPolicy",
]

_Policy = TypeVar("_Policy", bound="WeightingPolicy")

_ARRAYS = ("hit", "sqerr", "label", "next_slot", "rows")
_ROUNDING = 1e-12
"""A gain within this of 0 is 0 (relative to ``var(y)`` for AWE on regression)."""
SIGNIFICANCE_Z = 2.0
"""Standard errors a member's edge over chance must exceed to count (one-sided, ~2.3% of
windows of a member exactly at chance pass)."""


@dataclass(frozen=True)
class _WindowStats:
    """Per-member figures over each member's window, (M,) arrays; see the module table.

    Entries of members without rows are placeholders: nothing reads them.
    """

    rows: np.ndarray
    accuracy: np.ndarray
    chance: np.ndarray
    mse: np.ndarray
    random_mse: np.ndarray
    accuracy_se: np.ndarray
    """Standard error of ``accuracy - chance`` for a member at chance: binomial
    ``sqrt(chance (1 - chance) / n)``; for regression the skill's, ``mse_se / var(y)``."""
    mse_se: np.ndarray
    """Standard error of ``mse``: the window's standard deviation of squared errors over
    ``sqrt(n)``."""


class WeightingPolicy(abc.ABC):
    """A named, stateful rule that turns members' recent scores into mixing weights.

    Args:
        n_members: number of members (columns of what `observe` receives), >= 1.
        window: rows per member that count as recent, >= 1.
        floor: minimum weight of each member above chance, in [0, 1/n_members).
        cap: maximum weight of any member, in (1/n_members, 1] (exactly 1 for one member).
        min_rows: rows a member needs in its window before its own figures set its
            weight, in [1, window].
        task: what the members predict, ``binary``, ``multiclass`` or ``regression``
            (see `observe`); it sets how a window becomes figures (module table).

    Raises:
        ConfigError: for a value out of range; the message repeats the values received.

    When fewer members can hold weight than the bounds allow for (``k * cap < 1`` or
    ``k * floor > 1`` for ``k`` members above chance, e.g. after `resize` or when only a
    few members are eligible), the bounds yield to ``1/k``: a below-chance member still
    gets 0 and the weights still sum to 1.

    Example:
        >>> import numpy as np
        >>> from actors.weighting import make_policy
        >>> policy = make_policy("accuracy", 2)
        >>> labels = np.tile([0.0, 1.0], 50)  # 100 rows
        >>> always_right = np.where(labels == 1.0, 0.9, 0.1)
        >>> wrong_every_4th = np.where(np.arange(100) % 4 == 0, 1.0 - always_right, always_right)
        >>> probabilities = np.stack([always_right, wrong_every_4th], axis=1)
        >>> policy.observe(probabilities, labels, scored=np.array([True, True]))
        >>> policy.member_scores(), policy.weights(np.array([True, True])).round(4).tolist()
        ([1.0, 0.75], [0.6667, 0.3333])
    """

    name: ClassVar[str]
    score_name: ClassVar[str] = "accuracy"
    """What `member_scores` returns: ``accuracy`` (for regression the skill), ``loss``
    or ``mse``."""
    params: ClassVar[tuple[str, ...]] = ()
    """The policy's own constructor parameters, besides the common ones."""

    def __init__(
        self,
        n_members: int,
        *,
        window: int = 2000,
        floor: float = 0.0,
        cap: float = 1.0,
        min_rows: int = 50,
        task: str = "binary",
    ) -> None:
        self.n_members = _integer("n_members", n_members)
        self.window = _integer("window", window)
        self.min_rows = _integer("min_rows", min_rows)
        if self.min_rows > self.window:
            raise ConfigError(
                f"min_rows ({self.min_rows}) must be <= window ({self.window}): a member's "
                "window never holds more rows than that"
            )
        self.floor = _number("floor", floor)
        self.cap = _number("cap", cap)
        _check_bounds(self.floor, self.cap, self.n_members)
        if task not in TASKS:
            raise ConfigError(f"task ({task!r}) must be one of {', '.join(TASKS)}")
        self.task = str(task)
        self._hit = np.zeros((self.n_members, self.window))
        self._sqerr = np.zeros((self.n_members, self.window))
        self._label = np.zeros((self.n_members, self.window))
        # Until a window is full, slots [0, rows) hold its rows and next_slot == rows.
        self._next_slot = np.zeros(self.n_members, dtype=np.int64)
        self._rows = np.zeros(self.n_members, dtype=np.int64)
        # The windows' figures, computed once per change of the windows: the coordinator
        # asks for weights several times per publish (served, per row, shadows, per
        # partition), and recomputing them was most of a publish's bookkeeping.
        self._cached_stats: _WindowStats | None = None

    def __repr__(self) -> str:
        settings = ("window", "floor", "cap", "min_rows", *self.params)
        shown = ", ".join(f"{key}={getattr(self, key)!r}" for key in settings)
        if self.task != "binary":
            shown += f", task={self.task!r}"
        return f"{type(self).__name__}({self.n_members}, {shown})"

    def observe(self, outputs: np.ndarray, labels: np.ndarray, scored: np.ndarray) -> None:
        """Add scored shared-sample rows to each scored member's window.

        Args:
            outputs: each member's answer on n rows no member has trained on:
                ``binary`` (n, n_members) positive-class probabilities; ``multiclass``
                (n, n_members, classes) class probabilities; ``regression``
                (n, n_members) predictions. A non-finite value counts as a confident
                wrong answer (a diverged snapshot earns nothing): a wrong class with
                probability 1, or for regression an infinite squared error.
            labels: (n,) true labels: 0/1 (binary), class indices in [0, classes)
                (multiclass), or finite targets (regression).
            scored: (n_members,) bool, which columns are real predictions (members that
                have a snapshot); only those columns enter their member's window.

        Raises:
            ValueError: if the shapes do not agree, or a label is not one of the task's.
        """
        out = np.asarray(outputs, dtype=np.float64)
        multiclass = self.task == "multiclass"
        if out.ndim != (3 if multiclass else 2) or out.shape[1] != self.n_members:
            expected = f"(rows, {self.n_members}{', classes' if multiclass else ''})"
            raise ValueError(f"{self.task} outputs must have shape {expected}, got {out.shape}")
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != (out.shape[0],):
            raise ValueError(f"labels must have shape ({out.shape[0]},), got {y.shape}")
        _check_labels(self.task, y, out.shape)
        columns = np.flatnonzero(self._mask(scored, "scored"))
        if out.shape[0] == 0 or columns.size == 0:
            return
        # Only the newest `window` rows can stay in a window.
        y = y[-self.window :]
        hit, sqerr = _ROW_SCORES[self.task](np.moveaxis(out[-self.window :, columns], 0, 1), y)
        n = y.size
        slots = (self._next_slot[columns, None] + np.arange(n)) % self.window
        self._hit[columns[:, None], slots] = hit
        self._sqerr[columns[:, None], slots] = sqerr
        self._label[columns[:, None], slots] = (y > 0.5) if self.task == "binary" else y
        self._next_slot[columns] = (self._next_slot[columns] + n) % self.window
        self._rows[columns] = np.minimum(self._rows[columns] + n, self.window)
        self._cached_stats = None

    def weights(self, eligible: np.ndarray) -> np.ndarray:
        """Mixing weights: sum to 1 over `eligible` members, 0 elsewhere.

        Args:
            eligible: (n_members,) bool, the members that may get weight (e.g. those with
                a snapshot Serve can use).

        Returns:
            (n_members,) float64 weights; all 0 when no member is eligible.

        Raises:
            ValueError: if `eligible` has the wrong shape.
        """
        eligible = self._mask(eligible, "eligible")
        if not eligible.any():
            return np.zeros(self.n_members)
        stats = self._stats()
        experienced = eligible & (stats.rows >= self.min_rows)
        if not experienced.any():
            return _uniform(eligible)
        log_gains, above = self._log_gains(stats, experienced)
        above = above & experienced
        if not above.any():
            return _uniform(eligible)
        log_gains = np.array(log_gains, dtype=np.float64)
        newcomers = eligible & ~experienced
        if newcomers.any():
            top = float(log_gains[above].max())
            mean_gain = float(np.exp(log_gains[above] - top).sum()) / int(experienced.sum())
            log_gains[newcomers] = top + math.log(mean_gain)
            above = above | newcomers
        return _bounded_shares(log_gains, above, self.floor, self.cap)

    @property
    def rows_held(self) -> np.ndarray:
        """(n_members,) rows in each member's window."""
        return self._rows.copy()

    def member_scores(self) -> list[float | None]:
        """Each member's recent figure the policy weighs (see `score_name`); None if no rows."""
        stats = self._stats()
        return _per_member(self._scores(stats), stats.rows)

    def member_accuracies(self) -> list[float | None]:
        """Each member's recent accuracy over its window; for regression its skill
        ``1 - mse / var(y)`` (0: no better than predicting the window's mean). None if
        no rows."""
        stats = self._stats()
        return _per_member(stats.accuracy, stats.rows)

    def resize(self, n_members: int) -> None:
        """Grow (new members start with an empty window) or shrink (drop the last ones).

        Raises:
            ConfigError: if `n_members` < 1.
        """
        n = _integer("n_members", n_members)
        keep = min(n, self.n_members)
        grow = n - keep
        self._hit = np.vstack([self._hit[:keep], np.zeros((grow, self.window))])
        self._sqerr = np.vstack([self._sqerr[:keep], np.zeros((grow, self.window))])
        self._label = np.vstack([self._label[:keep], np.zeros((grow, self.window))])
        self._next_slot = np.concatenate([self._next_slot[:keep], np.zeros(grow, np.int64)])
        self._rows = np.concatenate([self._rows[:keep], np.zeros(grow, np.int64)])
        self.n_members = n
        self._cached_stats = None

    def drop(self, index: int) -> None:
        """Forget the member in column `index` (a retired member); the others keep theirs.

        Raises:
            ConfigError: if `index` is not a column, or it is the only member.
        """
        if not 0 <= index < self.n_members or self.n_members == 1:
            raise ConfigError(
                f"cannot drop member column {index} of {self.n_members}: an ensemble keeps "
                "at least one member"
            )
        self._hit = np.delete(self._hit, index, axis=0)
        self._sqerr = np.delete(self._sqerr, index, axis=0)
        self._label = np.delete(self._label, index, axis=0)
        self._next_slot = np.delete(self._next_slot, index)
        self._rows = np.delete(self._rows, index)
        self.n_members -= 1
        self._cached_stats = None

    def state(self) -> dict[str, np.ndarray | float | int]:
        """Settings and windows as plain numbers and arrays (for `np.savez`, no pickle).

        The task is a 0-d string array, which `np.load` reads without pickle.
        """
        settings: dict[str, np.ndarray | float | int] = {
            "n_members": self.n_members,
            "window": self.window,
            "floor": self.floor,
            "cap": self.cap,
            "min_rows": self.min_rows,
            "task": np.array(self.task),
        }
        settings.update({key: float(getattr(self, key)) for key in self.params})
        arrays = (self._hit, self._sqerr, self._label, self._next_slot, self._rows)
        settings.update({key: a.copy() for key, a in zip(_ARRAYS, arrays, strict=True)})
        return settings

    @classmethod
    def from_state(cls: type[_Policy], state: Mapping[str, Any]) -> _Policy:
        """Rebuild a policy of this class from `state()` (also after `np.savez`/`np.load`).

        Raises:
            ConfigError: if a setting is out of range.
            ValueError: if a key is missing or the arrays do not fit the settings.
        """
        keys = ("n_members", "window", "floor", "cap", "min_rows", "task", *cls.params, *_ARRAYS)
        missing = [key for key in keys if key not in state]
        if missing:
            raise ValueError(f"{cls.name} policy state lacks {missing}; got keys {sorted(state)}")
        options: dict[str, Any] = {key: float(state[key]) for key in ("floor", "cap", *cls.params)}
        policy = cls(
            int(state["n_members"]),
            window=int(state["window"]),
            min_rows=int(state["min_rows"]),
            task=str(state["task"]),
            **options,
        )
        m, w = policy.n_members, policy.window
        hit, sqerr, label = (np.array(state[key], dtype=np.float64) for key in _ARRAYS[:3])
        next_slot = np.array(state["next_slot"], dtype=np.int64)
        rows = np.array(state["rows"], dtype=np.int64)
        consistent = (
            hit.shape == sqerr.shape == label.shape == (m, w)
            and next_slot.shape == rows.shape == (m,)
            and bool(np.all((rows >= 0) & (rows <= w) & (next_slot >= 0) & (next_slot < w)))
            and bool(np.all((rows == w) | (next_slot == rows)))
        )
        if not consistent:
            raise ValueError(
                f"{cls.name} policy state does not fit {m} members and window {w}: "
                f"hit {hit.shape}, sqerr {sqerr.shape}, label {label.shape}, "
                f"next_slot {next_slot.tolist()}, rows {rows.tolist()}"
            )
        policy._hit, policy._sqerr, policy._label = hit, sqerr, label
        policy._next_slot, policy._rows = next_slot, rows
        return policy

    @abc.abstractmethod
    def _log_gains(
        self, stats: _WindowStats, experienced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log gain of each member and whether it is above chance.

        Only entries where `experienced` is True are read; the log gain of a member not
        above chance is ignored.
        """

    def _scores(self, stats: _WindowStats) -> np.ndarray:
        return stats.accuracy

    def _mask(self, values: np.ndarray, what: str) -> np.ndarray:
        mask = np.asarray(values, dtype=bool)
        if mask.shape != (self.n_members,):
            raise ValueError(f"{what} must have shape ({self.n_members},), got {mask.shape}")
        return mask

    def _stats(self) -> _WindowStats:
        if self._cached_stats is None:
            stats = self._compute_stats()
            for figure in dataclasses.fields(stats):  # shared between calls: read-only
                getattr(stats, figure.name).setflags(write=False)
            self._cached_stats = stats
        return self._cached_stats

    def _compute_stats(self) -> _WindowStats:
        rows = self._rows
        held = np.arange(self.window) < rows[:, None]
        count = np.maximum(rows, 1)
        mse = np.where(held, self._sqerr, 0.0).sum(axis=1) / count
        mse_se = _mean_se(self._sqerr, held, count, mse)
        if self.task == "regression":
            return _regression_stats(rows, held, count, self._label, mse, mse_se)
        accuracy = np.where(held, self._hit, 0.0).sum(axis=1) / count
        if self.task == "binary":
            positive = np.where(held, self._label, 0.0).sum(axis=1) / count
            chance = np.maximum(positive, 1.0 - positive)
            # sum_c p(c) (1 - p(c))^2 for two classes, in the form binary always used.
            random_mse = positive * (1.0 - positive)
        else:
            shares = _class_shares(self._label, held, count)
            chance = shares.max(axis=1)
            random_mse = (shares * np.square(1.0 - shares)).sum(axis=1)
        return _WindowStats(
            rows=rows.copy(),
            accuracy=accuracy,
            chance=chance,
            mse=mse,
            random_mse=random_mse,
            accuracy_se=np.sqrt(chance * (1.0 - chance) / count),
            mse_se=mse_se,
        )


class UniformPolicy(WeightingPolicy):
    """Equal weights over the eligible members; `member_scores` reports recent accuracy
    (for regression, skill)."""

    name = "uniform"

    def _log_gains(
        self, stats: _WindowStats, experienced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n_members), np.ones(self.n_members, dtype=bool)


class AccuracyPolicy(WeightingPolicy):
    """Weight proportional to recent accuracy above chance: ``w_i ∝ acc_i - chance_i``.

    Chance is the majority-class rate of the member's window, so a member that only
    learned the class balance earns nothing. For regression ``acc_i`` is the skill
    ``1 - mse_i / var(y)`` and chance 0, so ``w_i ∝`` the member's share of the window's
    variance it explains, and a member no better than the window's mean earns nothing.
    """

    name = "accuracy"

    def _log_gains(
        self, stats: _WindowStats, experienced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return _log_positive(stats.accuracy - stats.chance, _margin(stats.accuracy_se))


class SoftmaxPolicy(WeightingPolicy):
    """Softmax of recent accuracy: ``w_i ∝ exp((acc_i - best_acc) / temperature)``.

    Over the members above chance (0 for the others); ``best_acc`` is the best of them,
    subtracted so that the best member's term is 1. A gap of one `temperature` in
    accuracy costs a factor e, so lower is sharper: at 0.05 a member 5 points behind the
    best gets 1/e of its weight. For regression the same holds for skill
    (``1 - mse / var(y)``), with chance 0.

    Args:
        temperature: accuracy gap per factor e, finite and > 0 (default 0.05).
        **common: see `WeightingPolicy`.
    """

    name = "softmax"
    params = ("temperature",)

    def __init__(
        self,
        n_members: int,
        *,
        temperature: float = 0.05,
        **common: Any,
    ) -> None:
        super().__init__(n_members, **common)
        self.temperature = _positive("temperature", temperature, "lower is sharper")

    def _log_gains(
        self, stats: _WindowStats, experienced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        above = _above_chance(stats)
        best = float(stats.accuracy[above & experienced].max(initial=0.0))
        return (stats.accuracy - best) / self.temperature, above


class HedgePolicy(WeightingPolicy):
    """Hedge (Freund & Schapire 1997) over each member's recent 0/1 loss.

    ``w_i ∝ exp(-eta * sqrt(n_i) * (L_i - L_best))``, where ``L_i`` is the mean 0/1
    loss over member i's window of ``n_i`` rows and ``L_best`` the lowest among members
    above chance (members at or below chance get 0).

    Why this form: Hedge weighs by ``exp(-rate * cumulative loss)``; over a window of
    ``n`` rows the cumulative loss is ``n * L`` and the tuned rate is
    ``sqrt(8 ln K / n)``, so the exponent is ``sqrt(n) * L`` times a constant, which is
    `eta`. That makes it scale-free in the window length: the standard error of a mean
    0/1 loss is at most ``0.5 / sqrt(n)``, so the exponent is about ``2 * eta`` per
    standard error of loss gap. A gap within noise moves weights by a small factor; a gap
    of several standard errors is decisive, whatever the window. Because only the window
    counts, a member whose loss jumps loses its weight within one window.

    For regression the loss is the normalised squared error ``mse_i / var(y)`` (1 for
    predicting the window's mean, so a member is above chance below 1). It is scale-free
    in the target's units, but its standard error has no ``0.5 / sqrt(n)`` bound: with
    heavy-tailed errors a given `eta` is less decisive per standard error than for 0/1
    loss.

    Args:
        eta: learning rate per window-normalised loss, finite and > 0 (default 2.0).
        **common: see `WeightingPolicy`.
    """

    name = "hedge"
    score_name = "loss"
    params = ("eta",)

    def __init__(
        self,
        n_members: int,
        *,
        eta: float = 2.0,
        **common: Any,
    ) -> None:
        super().__init__(n_members, **common)
        self.eta = _positive("eta", eta, "higher is sharper")

    def _log_gains(
        self, stats: _WindowStats, experienced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        above = _above_chance(stats)
        loss = 1.0 - stats.accuracy  # regression: 1 - skill = mse / var(y)
        best = float(loss[above & experienced].min(initial=1.0))
        return -self.eta * np.sqrt(stats.rows) * (loss - best), above

    def _scores(self, stats: _WindowStats) -> np.ndarray:
        return 1.0 - stats.accuracy


class AwePolicy(WeightingPolicy):
    """Accuracy-weighted ensembles (Wang, Fan, Yu & Han, KDD 2003).

    ``w_i = max(0, MSE_r - MSE_i)``: ``MSE_i`` is the mean over member i's window of
    ``(1 - p_i(true class))^2``, ``MSE_r = sum_c p(c) (1 - p(c))^2`` (the paper's) the
    error of a predictor that guesses from the window's class distribution ``p(c)``;
    for two classes it is ``p (1 - p)``. A member with ``MSE_i >= MSE_r`` (no better
    than random, e.g. one that only learned the class prior) gets 0. Unlike accuracy it
    rewards calibrated confidence.

    For regression ``MSE_i`` is the member's mean squared error and ``MSE_r = var(y)``,
    the error of predicting the window's mean: ``w_i = max(0, var(y) - MSE_i)``. Gains
    are then in squared target units; only their ratios matter.
    """

    name = "awe"
    score_name = "mse"

    def _log_gains(
        self, stats: _WindowStats, experienced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # Classification errors are in [0, 1]; a regression gain is in squared target
        # units, so "within rounding of 0" scales with var(y).
        scale = stats.random_mse if self.task == "regression" else 1.0
        return _log_positive(
            stats.random_mse - stats.mse,
            np.maximum(_ROUNDING * scale, SIGNIFICANCE_Z * stats.mse_se),
        )

    def _scores(self, stats: _WindowStats) -> np.ndarray:
        return stats.mse


def _binary_rows(probability: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hit and squared error of (members, n) positive-class probabilities."""
    truth = y > 0.5
    wrong = np.where(truth, 0.0, 1.0)
    probability = np.where(np.isfinite(probability), np.clip(probability, 0.0, 1.0), wrong)
    true_class = np.where(truth, probability, 1.0 - probability)
    return ((probability > 0.5) == truth).astype(np.float64), np.square(1.0 - true_class)


def _multiclass_rows(probability: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hit (argmax) and squared error of (members, n, classes) class probabilities."""
    classes = y.astype(np.int64)
    finite = np.isfinite(probability).all(axis=2)
    probability = np.clip(np.where(finite[..., None], probability, 0.0), 0.0, 1.0)
    true_class = probability[:, np.arange(y.size), classes]
    hit = finite & (probability.argmax(axis=2) == classes)
    return hit.astype(np.float64), np.square(1.0 - true_class)


def _regression_rows(prediction: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """No hit (unused) and the squared error of (members, n) predictions; inf if not finite."""
    with np.errstate(over="ignore"):
        sqerr = np.square(prediction - y)
    return np.zeros_like(sqerr), np.where(np.isnan(sqerr), np.inf, sqerr)


_ROW_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "binary": _binary_rows,
    "multiclass": _multiclass_rows,
    "regression": _regression_rows,
}


def _check_labels(task: str, y: np.ndarray, shape: tuple[int, ...]) -> None:
    if task == "multiclass":
        classes = shape[2]
        bad = (y != np.round(y)) | (y < 0) | (y >= classes)
        expected = f"class indices in [0, {classes - 1}] ({classes} classes in the outputs)"
    elif task == "regression":
        bad = ~np.isfinite(y)
        expected = "finite regression targets"
    else:
        return  # binary: a label above 0.5 is the positive class, as always
    if bad.any():
        raise ValueError(f"labels must be {expected}; got {y[bad][:5].tolist()} among them")


def _class_shares(label: np.ndarray, held: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(M, K) share of each class 0 .. K-1 in each member's window (K: largest seen + 1)."""
    classes = np.where(held, label, 0.0).astype(np.int64)
    k = int(classes.max(initial=0)) + 1
    m = label.shape[0]
    index = (np.arange(m)[:, None] * k + classes)[held]
    return np.bincount(index, minlength=m * k).reshape(m, k) / count[:, None]


def _window_variance(
    values: np.ndarray, held: np.ndarray, count: np.ndarray, mean: np.ndarray
) -> np.ndarray:
    """Each member's variance of `values` over its `held` slots, about its `mean`."""
    return np.square(np.where(held, values - mean[:, None], 0.0)).sum(axis=1) / count


def _mean_se(
    values: np.ndarray, held: np.ndarray, count: np.ndarray, mean: np.ndarray
) -> np.ndarray:
    """Standard error of each member's windowed mean (`mean`, over the `held` slots)."""
    with np.errstate(over="ignore", invalid="ignore"):
        se = np.sqrt(_window_variance(values, held, count, mean) / count)
    # A non-finite error (a diverged regression member) gives an infinite margin: it
    # never counts as above chance.
    return np.where(np.isfinite(se), se, np.inf)


def _regression_stats(
    rows: np.ndarray,
    held: np.ndarray,
    count: np.ndarray,
    target: np.ndarray,
    mse: np.ndarray,
    mse_se: np.ndarray,
) -> _WindowStats:
    """Skill against the window's mean; a constant-target window gives everyone skill 0."""
    mean = np.where(held, target, 0.0).sum(axis=1) / count
    with np.errstate(over="ignore"):
        variance = _window_variance(target, held, count, mean)
        ratio = np.divide(mse, variance, out=np.ones_like(mse), where=variance > 0.0)
        skill_se = np.divide(mse_se, variance, out=np.zeros_like(mse_se), where=variance > 0.0)
    return _WindowStats(
        rows=rows.copy(),
        accuracy=1.0 - ratio,
        chance=np.zeros(rows.shape),
        mse=mse,
        random_mse=variance,
        accuracy_se=skill_se,
        mse_se=mse_se,
    )


def _per_member(values: np.ndarray, rows: np.ndarray) -> list[float | None]:
    return [float(v) if n else None for v, n in zip(values, rows, strict=True)]


def _bounded_shares(
    log_gains: np.ndarray, above: np.ndarray, floor: float, cap: float
) -> np.ndarray:
    """``w_i = clip(exp(mu + log_gains_i), lo, hi)`` for members `above`, 0 elsewhere.

    ``mu`` is the one offset that makes the weights sum to 1, so members between the
    bounds keep the ratios of their gains, and what a capped member gives up goes to the
    free ones in proportion (the fixed point of "cap, redistribute, repeat"). With ``k``
    members above, ``lo = min(floor, 1/k)`` and ``hi = max(cap, 1/k)`` keep it feasible.

    The total is increasing and piecewise in ``exp(mu)`` between the knots where a member
    reaches a bound, so ``mu`` is solved exactly on the segment where it crosses 1.
    """
    weights = np.zeros(above.shape[0])
    k = int(above.sum())
    if k == 0:
        return weights
    s = log_gains[above] - log_gains[above].max()
    lo, hi = min(floor, 1.0 / k), max(cap, 1.0 / k)
    if hi * k <= 1.0 + 1e-12 or lo * k >= 1.0 - 1e-12:
        weights[above] = 1.0 / k
        return weights
    log_lo = math.log(lo) if lo > 0.0 else -math.inf
    log_hi = math.log(hi)
    cap_knots = log_hi - s
    floor_knots = log_lo - s
    knots = np.unique(np.concatenate([cap_knots, floor_knots[np.isfinite(floor_knots)]]))
    totals = np.exp(np.clip(knots[:, None] + s[None, :], log_lo, log_hi)).sum(axis=1)
    i = min(int(np.searchsorted(totals, 1.0)), knots.size - 1)
    upper = float(knots[i])
    lower = float(knots[i - 1]) if i > 0 else -math.inf
    capped = cap_knots <= lower
    floored = floor_knots >= upper
    free = ~capped & ~floored
    rest = 1.0 - hi * int(capped.sum()) - lo * int(floored.sum())
    mu = upper
    if free.any() and rest > 0.0:
        top = float(s[free].max())
        log_free = top + math.log(float(np.exp(s[free] - top).sum()))
        mu = min(max(math.log(rest) - log_free, lower), upper)
    shares = np.exp(np.clip(mu + s, log_lo, log_hi))
    weights[above] = shares / shares.sum()
    return weights


def _uniform(mask: np.ndarray) -> np.ndarray:
    return mask / mask.sum()


def _margin(se: np.ndarray) -> np.ndarray:
    # Within rounding of chance is at chance too: `1 - p` and `(n - k) / n` can differ in
    # the last bit, and a regression member predicting the mean has skill about +-1e-16.
    return np.maximum(_ROUNDING, SIGNIFICANCE_Z * se)


def _above_chance(stats: _WindowStats) -> np.ndarray:
    return stats.accuracy - stats.chance > _margin(stats.accuracy_se)


def _log_positive(
    gains: np.ndarray, tolerance: float | np.ndarray = _ROUNDING
) -> tuple[np.ndarray, np.ndarray]:
    # A gain within rounding of 0 (an AWE member that only learned the class prior) is 0.
    above = gains > tolerance
    log_gains = np.full(gains.shape, -math.inf)
    log_gains[above] = np.log(gains[above])
    return log_gains, above


def _check_bounds(floor: float, cap: float, n: int) -> None:
    if floor > cap:
        raise ConfigError(f"floor ({floor}) must be <= cap ({cap})")
    if not 0.0 <= floor < 1.0 / n:
        raise ConfigError(
            f"floor ({floor}) must be in [0, 1/members) = [0, {1.0 / n:.4g}) for {n} "
            "members: every member at the floor would already take all the weight"
        )
    if n == 1 and cap != 1.0:
        raise ConfigError(f"cap ({cap}) must be 1 for a single member")
    if n > 1 and not 1.0 / n < cap <= 1.0:
        raise ConfigError(
            f"cap ({cap}) must be in (1/members, 1] = ({1.0 / n:.4g}, 1] for {n} members: "
            "at or below 1/members the weights cannot sum to 1"
        )


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} ({value!r}) must be an integer >= 1")
    return int(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{name} ({value!r}) must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} ({value!r}) must be a finite number")
    return number


def _positive(name: str, value: Any, hint: str) -> float:
    number = _number(name, value)
    if number <= 0.0:
        raise ConfigError(f"{name} ({value!r}) must be > 0 ({hint})")
    return number
