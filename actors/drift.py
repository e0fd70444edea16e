"""Drift detectors on a member's error stream: Page-Hinkley, DDM and ADWIN.

Each takes the per-row errors of a test-then-train step (1 - hit for classification, the
squared error for regression), in batches, and says whether the error rose: a concept
drift the member should answer (see `actors.specs.DriftSpec` for the actions).

Written here rather than taken from River (whose ``drift`` module has all three): River
is a benchmark-only extra of this project, never a runtime dependency, and a detector's
state must go into a member's checkpoint as plain numbers and arrays (no pickle). Each
detector updates a whole batch with numpy instead of one row at a time.

References: Page (1954) and Mouss et al. (2004) for Page-Hinkley; Gama et al. (2004),
"Learning with drift detection", for DDM; Bifet and Gavaldà (2007), "Learning from
time-changing data with adaptive windowing", for ADWIN.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from actors.errors import ConfigError

__all__ = ["ADWIN", "DDM", "DETECTORS", "DriftDetector", "PageHinkley", "make_detector"]


class DriftDetector(abc.ABC):
    """A detector of a rise in a stream's mean error.

    `update` takes a batch of errors and returns True when the error rose (the detector
    then starts over on the rows after the change). `state` and `from_state` carry it
    through a checkpoint.
    """

    name: ClassVar[str]
    binary_only: ClassVar[bool] = False
    """Whether it needs 0/1 errors (DDM's binomial model), so classification only."""

    @abc.abstractmethod
    def update(self, errors: np.ndarray) -> bool:
        """Take a batch of per-row errors; True if the error rose within it."""

    def rows_since_change(self) -> int | None:
        """Rows since the change it last located, if it locates changes (ADWIN's window
        after a cut); None for detectors that only say *that* the error rose."""
        return None

    @abc.abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Settings and state as plain arrays (for `np.savez`, no pickle)."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, state: Mapping[str, Any]) -> DriftDetector:
        """Rebuild from `state()` (also after `np.savez`/`np.load`)."""


def _errors(errors: np.ndarray) -> np.ndarray:
    values = np.asarray(errors, dtype=np.float64).reshape(-1)
    # A non-finite error (a diverged regression member) counts as a very large one.
    return np.nan_to_num(values, nan=1e12, posinf=1e12, neginf=0.0)


class PageHinkley(DriftDetector):
    """Page-Hinkley test for a rise in the mean.

    Keeps ``m_t = sum_k alpha^(t-k) (x_k - mean_k - delta)`` and its minimum; fires when
    ``m_t - min m > threshold``.

    Args:
        delta: tolerated rise of the mean (per row) before it counts.
        threshold: how much accumulated rise fires (in error units times rows).
        alpha: forgetting factor of the accumulated sum, in (0, 1].
        min_rows: rows seen (since the start or the last drift) before it may fire.
    """

    name = "page-hinkley"

    def __init__(
        self,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 1e-4,
        min_rows: int = 30,
    ):
        if not delta >= 0 or not threshold > 0 or not 0 < alpha <= 1 or min_rows < 1:
            raise ConfigError(
                "page-hinkley needs delta >= 0, threshold > 0, 0 < alpha <= 1, min_rows >= 1; "
                f"got delta={delta}, threshold={threshold}, alpha={alpha}, min_rows={min_rows}"
            )
        self.delta, self.threshold, self.alpha = float(delta), float(threshold), float(alpha)
        self.min_rows = int(min_rows)
        self._reset()

    def _reset(self) -> None:
        self.rows, self.mean, self.sum, self.min_sum = 0, 0.0, 0.0, 0.0

    def update(self, errors: np.ndarray) -> bool:
        x = _errors(errors)
        if x.size == 0:
            return False
        k = np.arange(1, x.size + 1)
        means = (self.mean * self.rows + np.cumsum(x)) / (self.rows + k)
        deviations = x - means - self.delta
        # m_t = alpha^t m_0 + sum_k alpha^(t-k) d_k, as one cumulative sum (alpha^-k stays
        # near 1 over a batch: alpha^-10000 ~ 2.7 at the default alpha).
        powers = self.alpha**k
        sums = powers * (self.sum + np.cumsum(deviations / powers))
        minima = np.minimum(self.min_sum, np.minimum.accumulate(sums))
        fired = (sums - minima > self.threshold) & (self.rows + k >= self.min_rows)
        if fired.any():
            self._reset()
            return True
        self.rows += x.size
        self.mean, self.sum, self.min_sum = float(means[-1]), float(sums[-1]), float(minima[-1])
        return False

    def state(self) -> dict[str, np.ndarray]:
        return {
            "kind": np.array(self.name),
            "settings": np.array([self.delta, self.threshold, self.alpha, self.min_rows]),
            "values": np.array([self.rows, self.mean, self.sum, self.min_sum]),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> PageHinkley:
        delta, threshold, alpha, min_rows = np.asarray(state["settings"], np.float64)
        detector = cls(delta, threshold, alpha, int(min_rows))
        rows, detector.mean, detector.sum, detector.min_sum = (
            float(v) for v in np.asarray(state["values"], np.float64)
        )
        detector.rows = int(rows)
        return detector


class DDM(DriftDetector):
    """Drift Detection Method: the error rate ``p`` and ``s = sqrt(p (1 - p) / n)`` since
    the last drift; fires when ``p + s`` exceeds the lowest ``p_min + s_min`` seen by
    `drift_level` standard deviations.

    Args:
        drift_level: standard deviations above the best that fire (3 in the paper).
        min_rows: rows before the minimum is tracked and it may fire (30 in the paper;
            100 here, so an early run of luck, say no error in the first 30 rows, does not
            set a best no stationary stream can keep to).
    """

    name = "ddm"
    binary_only = True

    def __init__(self, drift_level: float = 3.0, min_rows: int = 100):
        if not drift_level > 0 or min_rows < 1:
            raise ConfigError(
                f"ddm needs drift_level > 0 and min_rows >= 1; got {drift_level}, {min_rows}"
            )
        self.drift_level, self.min_rows = float(drift_level), int(min_rows)
        self._reset()

    def _reset(self) -> None:
        self.rows, self.errors = 0, 0.0
        self.best_p, self.best_s = math.inf, math.inf

    def update(self, errors: np.ndarray) -> bool:
        x = _errors(errors)
        if x.size == 0:
            return False
        if not np.isin(x, (0.0, 1.0)).all():
            raise ValueError("ddm takes 0/1 errors (classification); use page-hinkley or adwin")
        n = self.rows + np.arange(1, x.size + 1)
        p = (self.errors + np.cumsum(x)) / n
        s = np.sqrt(p * (1 - p) / n)
        tracked = n >= self.min_rows
        level = np.where(tracked, p + s, np.inf)
        # Where the lowest p + s so far was reached (the previous best first), and its
        # (p, s): the running argmin, newest on ties.
        levels = np.concatenate([[self.best_p + self.best_s], level])
        ps = np.concatenate([[self.best_p], p])
        ss = np.concatenate([[self.best_s], s])
        is_best = levels <= np.minimum.accumulate(levels)
        at = np.maximum.accumulate(np.where(is_best, np.arange(levels.size), 0))[1:]
        best_p, best_s = ps[at], ss[at]
        fired = tracked & (level > best_p + self.drift_level * best_s)
        if fired.any():
            self._reset()
            return True
        self.rows, self.errors = int(n[-1]), float(self.errors + x.sum())
        self.best_p, self.best_s = float(best_p[-1]), float(best_s[-1])
        return False

    def state(self) -> dict[str, np.ndarray]:
        return {
            "kind": np.array(self.name),
            "settings": np.array([self.drift_level, self.min_rows]),
            "values": np.array([self.rows, self.errors, self.best_p, self.best_s]),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DDM:
        drift_level, min_rows = np.asarray(state["settings"], np.float64)
        detector = cls(drift_level, int(min_rows))
        rows, detector.errors, detector.best_p, detector.best_s = (
            float(v) for v in np.asarray(state["values"], np.float64)
        )
        detector.rows = int(rows)
        return detector


class ADWIN(DriftDetector):
    """ADWIN's cut test on an exact window of the last `max_window` errors.

    Every `clock` rows, every split of the window into an older and a newer part is
    tested; where their means differ by more than the bound ``eps`` (Bifet and Gavaldà's
    variance form, with ``delta / n`` per split), the older part is dropped. It fires when
    a cut finds the newer part's mean error higher. The paper's exponential histogram
    compresses an unbounded window into buckets; a bounded exact window (a few thousand
    floats) is simpler and tests every split exactly.

    Args:
        delta: confidence; smaller fires less often (on real changes only).
        max_window: most rows kept.
        clock: rows between two cut tests.
        min_part: fewest rows in either part of a split.
    """

    name = "adwin"

    def __init__(
        self, delta: float = 0.002, max_window: int = 4096, clock: int = 32, min_part: int = 32
    ):
        if not 0 < delta < 1 or max_window < 2 * min_part or clock < 1 or min_part < 1:
            raise ConfigError(
                "adwin needs 0 < delta < 1, clock >= 1, min_part >= 1 and max_window >= "
                f"2 * min_part; got delta={delta}, max_window={max_window}, clock={clock}, "
                f"min_part={min_part}"
            )
        self.delta, self.max_window = float(delta), int(max_window)
        self.clock, self.min_part = int(clock), int(min_part)
        self.window = np.zeros(0)
        self._since_check = 0

    def update(self, errors: np.ndarray) -> bool:
        x = _errors(errors)
        if x.size == 0:
            return False
        self.window = np.concatenate([self.window, x])[-self.max_window :]
        self._since_check += x.size
        if self._since_check < self.clock:
            return False
        self._since_check = 0
        return self._cut()

    def rows_since_change(self) -> int:
        """The window's length: after a cut, the rows on the newer side of the change."""
        return int(self.window.size)

    def _cut(self) -> bool:
        w = self.window
        n = w.size
        if n < 2 * self.min_part:
            return False
        splits = np.arange(self.min_part, n - self.min_part + 1)
        sums = np.cumsum(w)
        older = sums[splits - 1] / splits
        newer = (sums[-1] - sums[splits - 1]) / (n - splits)
        m = 1.0 / (1.0 / splits + 1.0 / (n - splits))  # harmonic-mean part size
        log_term = math.log(2.0 * math.log(max(n, 3)) / (self.delta / n))
        variance = float(w.var())
        eps = np.sqrt(2.0 * variance * log_term / m) + 2.0 * log_term / (3.0 * m)
        cuts = np.flatnonzero(np.abs(newer - older) > eps)
        if cuts.size == 0:
            return False
        last = cuts[-1]  # drop everything up to the newest split that still cuts
        rose = bool(newer[last] > older[last])
        self.window = w[splits[last] :].copy()
        return rose

    def state(self) -> dict[str, np.ndarray]:
        return {
            "kind": np.array(self.name),
            "settings": np.array([self.delta, self.max_window, self.clock, self.min_part]),
            "window": self.window.copy(),
            "values": np.array([self._since_check]),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ADWIN:
        delta, max_window, clock, min_part = np.asarray(state["settings"], np.float64)
        detector = cls(delta, int(max_window), int(clock), int(min_part))
        detector.window = np.asarray(state["window"], np.float64)[-detector.max_window :]
        detector._since_check = int(np.asarray(state["values"])[0])
        return detector


DETECTORS: dict[str, type[DriftDetector]] = {cls.name: cls for cls in (ADWIN, DDM, PageHinkley)}


def make_detector(name: str, **params: float) -> DriftDetector:
    """The detector called `name` with its own settings.

    Raises:
        ConfigError: for an unknown name, an unknown setting or a value out of range.
    """
    if name not in DETECTORS:
        raise ConfigError(
            f"unknown drift detector {name!r}; expected one of {', '.join(DETECTORS)}"
        )
    cls = DETECTORS[name]
    try:
        return cls(**params)
    except TypeError as error:
        raise ConfigError(f"{name} drift detector: {error}") from None


def detector_from_state(state: Mapping[str, Any]) -> DriftDetector:
    """Rebuild whichever detector wrote `state`."""
    kind = str(np.asarray(state["kind"]))
    if kind not in DETECTORS:
        raise ValueError(f"drift detector state of unknown kind {kind!r}")
    return DETECTORS[kind].from_state(state)
