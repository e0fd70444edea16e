"""Helpers shared by tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from pipelines.sources.base import SourceBatch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; returns whether it held.

    For conditions nothing can be waited on directly (a job's progress, a follow
    listing): the sleep is the polling interval, bounded by the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


class ArrayReader:
    """A partition over in-memory arrays (the PartitionReader protocol)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, partition: int = 0):
        self.partition = partition
        self._x, self._y, self._at = x, y, 0

    @property
    def position(self) -> int:
        return self._at

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        if self._at >= len(self._y):
            return None
        end = min(self._at + max_rows, len(self._y))
        columns = {f"x{i}": self._x[self._at : end, i] for i in range(self._x.shape[1])}
        batch = pa.RecordBatch.from_pydict({**columns, "label": self._y[self._at : end]})
        read = SourceBatch(self.partition, self._at, batch)
        self._at = end
        return read

    def high_watermark(self) -> int:
        return len(self._y)

    def commit(self, offset: int) -> None:
        pass

    def close(self) -> None:
        pass


class LiveArrayReader(ArrayReader):
    """A live partition over in-memory arrays: rows become readable as `release` frees them.

    It never waits (a test releases rows between reads), so an empty batch means "nothing
    released yet"; it never returns None. `dead_at` offsets come back as source dead
    letters (records the source could not parse), not rows.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, partition: int = 0, released: int = 0):
        super().__init__(x, y, partition)
        self.released = released
        self.dead_at: set[int] = set()
        self.waits: list[float] = []

    def release(self, rows: int) -> None:
        self.released = min(len(self._y), self.released + rows)

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        from pipelines.schema import DeadLetter

        self.waits.append(max_wait_s)
        end = min(self._at + max_rows, self.released)
        offsets = np.arange(self._at, end)
        good = np.array([o not in self.dead_at for o in offsets], dtype=bool)
        columns = {f"x{i}": self._x[offsets[good], i] for i in range(self._x.shape[1])}
        batch = pa.RecordBatch.from_pydict(
            {**columns, "label": self._y[offsets[good]]},
            schema=pa.schema(
                [pa.field(f"x{i}", pa.float32()) for i in range(self._x.shape[1])]
                + [pa.field("label", pa.float32())]
            ),
        )
        dead = tuple(
            DeadLetter(self.partition, int(o), "unparseable record") for o in offsets[~good]
        )
        read = SourceBatch(
            self.partition,
            self._at,
            batch,
            offsets=offsets[good].astype(np.int64),
            end_offset=end,
            dead_letters=dead,
        )
        self._at = end
        return read

    def high_watermark(self) -> int:
        return self.released
