"""Update strategies' plain parts: the learning-rate schedule, the replay memories (a
window of the newest rows, or a reservoir sample of the whole past), and the reset
trigger. The compiled steps that use them live in `actors.learner`.

Pure NumPy and Keras schedules; each piece is small enough to test on its own.
"""

from __future__ import annotations

import keras
import numpy as np

from actors.specs import StrategySpec

__all__ = [
    "RecentRows",
    "ReplayMemory",
    "ReplayReservoir",
    "ResetMonitor",
    "learning_rate_schedule",
    "replay_memory",
]


def learning_rate_schedule(
    rate: float, strategy: StrategySpec
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's learning rate: a constant or a Keras schedule over training steps.

    Keras evaluates the schedule at the optimizer's step counter inside the compiled
    step, so a schedule costs nothing per batch and never retraces.
    """
    if strategy.schedule == "decay":
        return keras.optimizers.schedules.InverseTimeDecay(
            rate, decay_steps=strategy.decay_steps, decay_rate=strategy.decay_rate
        )
    if strategy.schedule == "warmup":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [strategy.warmup_steps], [rate, rate * strategy.after_warmup_factor]
        )
    return rate


class ReplayReservoir:
    """A uniform sample of every row offered so far (Vitter's algorithm R, vectorised).

    Replay mixes these old rows into each step so the network keeps fitting the past
    while it learns the present.

    Args:
        capacity: rows held.
        seed: seeds the sampling.
    """

    def __init__(self, capacity: int, input_shape: tuple[int, ...], seed: int = 0):
        self.capacity = int(capacity)
        self._x = np.zeros((self.capacity, *input_shape), np.float32)
        self._y = np.zeros((self.capacity,), np.float32)
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def state(self) -> dict[str, np.ndarray]:
        """The held rows and the count seen (checkpoint arrays)."""
        held = len(self)
        return {
            "reservoir/x": self._x[:held].copy(),
            "reservoir/y": self._y[:held].copy(),
            "reservoir/seen": np.array(self.seen, np.int64),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore `state` output (rows beyond this reservoir's capacity are dropped)."""
        x, y = arrays["reservoir/x"][: self.capacity], arrays["reservoir/y"][: self.capacity]
        self._x[: len(y)] = x
        self._y[: len(y)] = y
        self.seen = max(int(arrays["reservoir/seen"]), len(y))

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        n = int(y.shape[0])
        free = max(0, min(self.capacity - self.seen, n))
        if free:
            self._x[self.seen : self.seen + free] = x[:free]
            self._y[self.seen : self.seen + free] = y[:free]
        if n > free:
            # Row number i (0-based over the whole stream) replaces a random slot with
            # probability capacity / (i + 1): each past row stays with equal probability.
            index = self.seen + np.arange(free, n)
            slot = (self._rng.random(n - free) * (index + 1)).astype(np.int64)
            keep = slot < self.capacity
            # Later rows win a slot drawn twice, as if applied one by one.
            self._x[slot[keep]] = x[free:][keep]
            self._y[slot[keep]] = y[free:][keep]
        self.seen += n

    def sample(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        held = len(self)
        if held == 0 or rows <= 0:
            return self._x[:0], self._y[:0]
        pick = self._rng.integers(0, held, size=rows)
        return self._x[pick], self._y[pick]

    def forget(self, keep_newest: int) -> int:
        """Drop the rows from before a concept change; returns how many went.

        A reservoir's slots keep no time order, so it cannot tell the newest rows apart:
        it forgets every row and starts sampling afresh (`seen` back to 0, so the next
        rows fill it at once instead of winning slots with probability capacity / seen).
        """
        held = len(self)
        self.seen = 0
        return held


class RecentRows:
    """The newest `capacity` rows offered (a ring buffer), sampled uniformly.

    Replaying from it is a few more passes over a sliding window: each row is learned
    once when it arrives and about ``replay_ratio`` more times while it is among the
    newest `capacity`. On a drifting stream that is what a small member needs, more
    steps per row, without the reservoir's cost: a reservoir keeps rows of a concept
    that has gone, and replays their old labels for as long as they hold their slots.

    Same interface and checkpoint arrays as `ReplayReservoir` (rows oldest first).

    Args:
        capacity: rows held.
        seed: seeds the sampling.
    """

    def __init__(self, capacity: int, input_shape: tuple[int, ...], seed: int = 0):
        self.capacity = int(capacity)
        self._x = np.zeros((self.capacity, *input_shape), np.float32)
        self._y = np.zeros((self.capacity,), np.float32)
        self.seen = 0
        self._held = 0  # slots 0.._held-1 are filled
        self._next = 0  # the slot the next row goes to (the oldest once full)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self._held

    def state(self) -> dict[str, np.ndarray]:
        """The held rows, oldest first, and the count seen (checkpoint arrays)."""
        order = (self._next - self._held + np.arange(self._held)) % self.capacity
        return {
            "reservoir/x": self._x[order],
            "reservoir/y": self._y[order],
            "reservoir/seen": np.array(self.seen, np.int64),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore `state` output (the newest `capacity` rows of it are kept)."""
        self._held = self._next = 0
        self.add(arrays["reservoir/x"], arrays["reservoir/y"])
        self.seen = max(int(arrays["reservoir/seen"]), self._held)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        n = int(y.shape[0])
        kept = min(n, self.capacity)  # of more rows than it holds, the newest stay
        slots = (self._next + np.arange(kept)) % self.capacity
        self._x[slots] = x[n - kept :]
        self._y[slots] = y[n - kept :]
        self._next = (self._next + kept) % self.capacity
        self._held = min(self.capacity, self._held + kept)
        self.seen += n

    def sample(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        if self._held == 0 or rows <= 0:
            return self._x[:0], self._y[:0]
        pick = self._rng.integers(0, self._held, size=rows)
        return self._x[pick], self._y[pick]

    def forget(self, keep_newest: int) -> int:
        """Drop all but the newest `keep_newest` rows (those after a concept change), so
        replay stops teaching the labels of a concept that has gone; returns how many went.
        """
        dropped = self._held - max(0, min(int(keep_newest), self._held))
        if dropped:
            # The newest rows back into slots 0..keep-1 through the checkpoint path, which
            # already puts rows in the order `add` and `sample` expect.
            state = self.state()  # oldest first
            self.load_state(
                {
                    "reservoir/x": state["reservoir/x"][dropped:],
                    "reservoir/y": state["reservoir/y"][dropped:],
                    "reservoir/seen": state["reservoir/seen"],
                }
            )
        return dropped


ReplayMemory = RecentRows | ReplayReservoir


def replay_memory(strategy: StrategySpec, input_shape: tuple[int, ...], seed: int) -> ReplayMemory:
    """The memory a ``replay`` step samples its old rows from (`StrategySpec.replay_buffer`)."""
    kind = RecentRows if strategy.replay_buffer == "recent" else ReplayReservoir
    return kind(strategy.replay_size, input_shape, seed)


class ResetMonitor:
    """Decides when the ``reset`` strategy discards the network, and keeps the rows to refit.

    The stream is cut into consecutive blocks of `block` rows. Each block's quality is
    its accuracy (classification) or minus its mean squared error (regression). After
    two blocks of warm-up since the last reset, a block whose accuracy falls more than
    `drop` below the best block since that reset (or whose error rises more than `drop`
    times above the best) triggers a reset; that block's rows, mostly from after the
    change, are what the fresh network is fitted on.

    Args:
        block: rows per block.
        drop: the fall that triggers (accuracy points, or relative error rise).
        regression: whether scores are squared errors (else 0/1 hits).
        input_shape: shape of one input row or window.
    """

    def __init__(self, block: int, drop: float, regression: bool, input_shape: tuple[int, ...]):
        self.block = int(block)
        self.drop = float(drop)
        self.regression = regression
        self._x = np.zeros((self.block, *input_shape), np.float32)
        self._y = np.zeros((self.block,), np.float32)
        self._score = np.zeros((self.block,), np.float64)
        self._filled = 0
        self._blocks_since_reset = 0
        self._best: float | None = None
        self.resets = 0

    def observe(
        self, x: np.ndarray, y: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Take a batch's rows and per-row scores; returns the rows to refit on when a
        reset is due, else None."""
        due: tuple[np.ndarray, np.ndarray] | None = None
        start = 0
        n = int(y.shape[0])
        while start < n:
            take = min(self.block - self._filled, n - start)
            end = self._filled + take
            self._x[self._filled : end] = x[start : start + take]
            self._y[self._filled : end] = y[start : start + take]
            self._score[self._filled : end] = scores[start : start + take]
            self._filled, start = end, start + take
            if self._filled == self.block:
                self._filled = 0
                if self._close_block():
                    due = (self._x.copy(), self._y.copy())
        return due

    def _close_block(self) -> bool:
        mean = float(self._score.mean())
        quality = -mean if self.regression else mean
        self._blocks_since_reset += 1
        if self._blocks_since_reset <= 2:
            return False
        if self._best is not None and self._fell(quality, self._best):
            self._best = None
            self._blocks_since_reset = 0
            self.resets += 1
            return True
        self._best = quality if self._best is None else max(self._best, quality)
        return False

    def _fell(self, quality: float, best: float) -> bool:
        if self.regression:  # qualities are minus errors
            return -quality > -best * (1.0 + self.drop)
        return quality < best - self.drop
