"""Read a partition ahead on a background thread, so source work overlaps training.

`PrefetchingReader` wraps any `PartitionReader`. A daemon thread calls the inner
reader's `read_batch` ahead of the caller and keeps up to `depth` batches buffered; the
caller's `read_batch` then usually finds its batch ready instead of generating,
decoding or fetching it while the training step waits.

Why a thread and not a Ray actor: the work to overlap is small and frequent (one batch
of a few hundred rows, tens of microseconds to a few milliseconds), and a batch would
have to cross a process boundary through the object store for every step, which costs
more than producing it. Inside the member's process the overlap comes for free where it
matters: TensorFlow releases the GIL while it executes the compiled step, and Arrow and
NumPy release it in their bulk kernels, so the reader thread runs while the training
thread computes. Rows stay in the member's process, as the design requires (members own
their partitions; nothing passes through a driver).

Semantics are those of the inner reader, exactly: the caller receives the same rows at
the same offsets in the same order, `position` is the offset of the next row the
*caller* receives (not how far the thread has read ahead), an error in the inner reader
reaches the caller on its next `read_batch` (after the batches read before it), and
`None` means exhausted. Calls into the inner reader are serialised by a lock, so an
inner reader need not be thread-safe.

Example:
    >>> from pipelines.sources import SourceSpec, open_source
    >>> source = open_source(SourceSpec("synthetic://hyperplane?rows=10", partitions=1))
    >>> reader = PrefetchingReader(source.open(0), depth=2)
    >>> [reader.read_batch(4).first_offset for _ in range(3)], reader.read_batch(4)
    ([0, 4, 8], None)
    >>> reader.close()
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from actors.errors import ConfigError, SourceError
from pipelines.sources.base import PartitionReader, SourceBatch

__all__ = ["PrefetchingReader"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Failure:
    """What the inner reader raised; delivered in stream order, after earlier batches."""

    error: BaseException


_Item = SourceBatch | _Failure | None  # None: the inner reader is exhausted


class PrefetchingReader:
    """A `PartitionReader` that reads its inner reader ahead on a daemon thread.

    The thread starts on the first `read_batch` and reads at the size the caller last
    asked for. A buffered batch larger than a later request is split (the rest is served
    next); one smaller is served as is (``read_batch`` returns *up to* `max_rows`).

    Args:
        inner: the reader to read ahead; this wrapper owns it and closes it.
        depth: most batches held ahead of the caller (memory bound).
        close_timeout_s: how long `close` waits for a thread stuck inside the inner
            reader's `read_batch` before closing the inner reader anyway.

    Raises:
        ConfigError: if `depth` < 1.
    """

    def __init__(
        self, inner: PartitionReader, depth: int = 2, close_timeout_s: float = 5.0
    ) -> None:
        if depth < 1:
            raise ConfigError(f"prefetch depth ({depth}) must be an integer >= 1")
        self.partition = inner.partition
        self.inner = inner
        self.depth = int(depth)
        self.close_timeout_s = float(close_timeout_s)
        self._position = inner.position
        self._buffer: deque[_Item] = deque()
        self._changed = threading.Condition()  # guards _buffer, _read_size, _closed
        self._inner_lock = threading.Lock()  # one call into the inner reader at a time
        self._read_size = 0
        self._wait_s = 0.0
        self._closed = False
        self._leftover: SourceBatch | None = None  # the tail of a split batch
        self._ended: _Failure | None = None  # sticky once the caller has met the end
        self._exhausted = False
        self._thread: threading.Thread | None = None

    @property
    def position(self) -> int:
        """Offset of the next row the caller's `read_batch` returns."""
        return self._position

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        """Up to `max_rows` rows from `position`, or None when the partition is exhausted.

        On a live partition the thread's reads wait up to the `max_wait_s` of the latest
        request (an empty batch is buffered like any other).

        Raises:
            ConfigError: if `max_rows` < 1.
            SourceError: if the reader is closed.
            Exception: whatever the inner reader raised, on this and every later call.
        """
        if max_rows < 1:
            raise ConfigError(f"max_rows ({max_rows}) must be an integer >= 1")
        if self._closed:
            raise SourceError("read after close", partition=self.partition)
        if self._ended is not None:
            raise self._ended.error
        if self._exhausted:
            return None
        if self._leftover is not None:
            read, self._leftover = self._leftover, None
        else:
            self._wait_s = float(max_wait_s)
            item = self._next_item(max_rows)
            if item is None:
                self._exhausted = True
                return None
            if isinstance(item, _Failure):
                self._ended = item
                raise item.error
            read = item
        if read.batch.num_rows > max_rows:
            offsets = read.row_offsets()
            self._leftover = SourceBatch(
                read.partition,
                int(offsets[max_rows]),
                read.batch.slice(max_rows),
                offsets=None if read.offsets is None else offsets[max_rows:],
                end_offset=read.end_offset,
            )
            read = SourceBatch(
                read.partition,
                read.first_offset,
                read.batch.slice(0, max_rows),
                offsets=None if read.offsets is None else offsets[:max_rows],
                end_offset=int(offsets[max_rows]),
                dead_letters=read.dead_letters,
            )
        self._position = read.next_offset
        return read

    def high_watermark(self) -> int | None:
        """The inner reader's high watermark (waits for a read in progress to finish)."""
        with self._inner_lock:
            return self.inner.high_watermark()

    def commit(self, offset: int) -> None:
        """Commit `offset` on the inner reader.

        Raises:
            SourceError: if `offset` is past `position`: rows read ahead but not yet handed
                to the caller cannot have been learned.
        """
        if offset > self._position:
            raise SourceError(
                f"cannot commit offset {offset}: expected at most {self._position} "
                "(the rows returned so far)",
                partition=self.partition,
            )
        with self._inner_lock:
            self.inner.commit(offset)

    def close(self) -> None:
        """Stop the thread (waking it if it waits for room) and close the inner reader."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._buffer.clear()
            self._changed.notify_all()
        self._leftover = None
        if self._thread is not None:
            self._thread.join(self.close_timeout_s)
            if self._thread.is_alive():
                logger.warning(
                    "partition %d: the prefetch thread is still inside the inner reader's "
                    "read_batch after %.1fs; closing the inner reader anyway",
                    self.partition,
                    self.close_timeout_s,
                )
        self.inner.close()

    def _next_item(self, max_rows: int) -> _Item:
        """The next item in stream order; starts the thread or changes its read size."""
        with self._changed:
            if self._read_size != max_rows:
                self._read_size = max_rows
                self._changed.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._read_ahead,
                    name=f"prefetch-partition-{self.partition}",
                    daemon=True,
                )
                self._thread.start()
            while not self._buffer and not self._closed:
                self._changed.wait()
            if self._closed:
                raise SourceError("reader closed while reading", partition=self.partition)
            item = self._buffer.popleft()
            self._changed.notify_all()  # room for the thread to read the next batch
            return item

    def _read_ahead(self) -> None:
        """Thread body: read until exhausted, failed or closed, at most `depth` ahead."""
        while True:
            with self._changed:
                while len(self._buffer) >= self.depth and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                size = self._read_size
            item: _Item
            try:
                with self._inner_lock:
                    item = self.inner.read_batch(size, self._wait_s)
            except BaseException as error:  # delivered to the caller, in order
                item = _Failure(error)
            with self._changed:
                if self._closed:
                    return
                self._buffer.append(item)
                self._changed.notify_all()
            if not isinstance(item, SourceBatch):
                return
