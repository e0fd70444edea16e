"""Sliding windows over a partition's rows, carried across batch boundaries.

A sequence model (LSTM, Conv1D) reads windows of `window` consecutive rows; the window
ending at row t is labelled with row t's label. Batches cut the stream at arbitrary
places, so each partition keeps its last ``window - 1`` rows and prepends them to the
next batch: no window is lost at a seam, and each row ends exactly one window. The first
``window - 1`` rows of a partition only serve as context (`warmup_rows`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["SlidingWindows", "windows_of"]


def windows_of(rows: np.ndarray, window: int) -> np.ndarray:
    """All windows of `window` consecutive rows: (n, f) -> (n - window + 1, window, f)."""
    if rows.shape[0] < window:
        return np.empty((0, window, rows.shape[1]), np.float32)
    view = sliding_window_view(rows, window, axis=0)  # (k, f, window)
    return np.ascontiguousarray(view.transpose(0, 2, 1), dtype=np.float32)


class SlidingWindows:
    """Turns one partition's batches of rows into windows, keeping the seam rows.

    Args:
        window: rows per window.
        n_features: features per row.

    Example:
        >>> windows = SlidingWindows(3, 1)
        >>> x, y = windows.push(np.arange(4, dtype=np.float32)[:, None], np.arange(4.0))
        >>> x[:, :, 0].tolist(), y.tolist()
        ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [2.0, 3.0])
        >>> x, y = windows.push(np.array([[4.0]], np.float32), np.array([4.0]))
        >>> x[:, :, 0].tolist()
        [[2.0, 3.0, 4.0]]
    """

    def __init__(self, window: int, n_features: int):
        self.window = int(window)
        self._tail = np.empty((0, n_features), np.float32)
        self.warmup_rows = 0

    def push(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows ending at each row of this batch that has enough history, and labels."""
        rows = np.concatenate([self._tail, np.asarray(x, np.float32)])
        windows = windows_of(rows, self.window)
        labelled = windows.shape[0]
        self.warmup_rows += len(y) - labelled
        self._tail = rows[-(self.window - 1) :] if self.window > 1 else rows[:0]
        return windows, np.asarray(y, np.float32)[len(y) - labelled :]

    @property
    def tail(self) -> np.ndarray:
        """The seam rows carried into the next batch (for a checkpoint)."""
        return self._tail

    def restore(self, tail: np.ndarray, warmup_rows: int) -> None:
        """Continue from a checkpoint's seam rows and warm-up count."""
        self._tail = np.asarray(tail, np.float32).reshape(-1, self._tail.shape[1])
        self.warmup_rows = int(warmup_rows)
