"""Helpers shared by tests."""

from __future__ import annotations

import socket

import numpy as np
import pyarrow as pa

from pipelines.sources.base import SourceBatch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ArrayReader:
    """A partition over in-memory arrays (the PartitionReader protocol)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, partition: int = 0):
        self.partition = partition
        self._x, self._y, self._at = x, y, 0

    @property
    def position(self) -> int:
        return self._at

    def read_batch(self, max_rows: int) -> SourceBatch | None:
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
