"""PrefetchingReader: exactly the inner reader's rows and offsets, read ahead on a thread."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from actors.errors import ConfigError, SourceError
from pipelines.sources import PartitionReader, SourceBatch, SourceSpec, open_source
from pipelines.sources.prefetch import PrefetchingReader
from tests.helpers import wait_until

SPEC = SourceSpec("synthetic://hyperplane?rows=20000&features=4", partitions=2, seed=3)


def plain_reader(partition: int = 0, offset: int = 0) -> PartitionReader:
    return open_source(SPEC).open(partition, offset)


def read_everything(reader: PartitionReader, sizes: list[int]) -> list[SourceBatch]:
    """Read to exhaustion cycling through `sizes`, checking offsets against `position`."""
    reads: list[SourceBatch] = []
    i = 0
    while True:
        before = reader.position
        size = sizes[i % len(sizes)]
        read = reader.read_batch(size)
        i += 1
        if read is None:
            assert reader.position == before
            return reads
        assert read.first_offset == before
        assert 0 < read.batch.num_rows <= size
        assert reader.position == read.next_offset
        reads.append(read)


def as_table(reads: list[SourceBatch]) -> pa.Table:
    return pa.Table.from_batches([r.batch for r in reads]).combine_chunks()


class ScriptedReader:
    """An inner reader that serves numbered rows and can fail or block on request."""

    def __init__(self, rows: int, fail_at: int | None = None, partition: int = 7):
        self.partition = partition
        self.rows = rows
        self.fail_at = fail_at
        self.entered = 0  # calls that reached read_batch (some may wait at the gate)
        self.reads = 0
        self.closed = False
        self.committed: int | None = None
        self.gate = threading.Event()
        self.gate.set()
        self._position = 0

    @property
    def position(self) -> int:
        return self._position

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        self.entered += 1
        self.gate.wait()
        self.reads += 1
        if self.fail_at is not None and self._position >= self.fail_at:
            raise OSError(f"disk gone at offset {self._position}")
        start, end = self._position, min(self._position + max_rows, self.rows)
        if start >= end:
            return None
        self._position = end
        batch = pa.record_batch({"n": pa.array(range(start, end), pa.int64())})
        return SourceBatch(self.partition, start, batch)

    def high_watermark(self) -> int:
        return self.rows

    def commit(self, offset: int) -> None:
        self.committed = offset

    def close(self) -> None:
        self.closed = True


def test_is_a_partition_reader():
    reader = PrefetchingReader(plain_reader())
    assert isinstance(reader, PartitionReader)
    assert reader.partition == 0
    reader.close()


@pytest.mark.parametrize("depth", [1, 2, 5])
@pytest.mark.parametrize("partition, offset", [(0, 0), (1, 1234)])
def test_same_rows_and_offsets_as_the_plain_reader(depth, partition, offset):
    expected = read_everything(plain_reader(partition, offset), [256])
    reader = PrefetchingReader(plain_reader(partition, offset), depth=depth)
    assert reader.position == offset
    got = read_everything(reader, [256])
    reader.close()
    assert [(r.partition, r.first_offset, r.batch.num_rows) for r in got] == [
        (r.partition, r.first_offset, r.batch.num_rows) for r in expected
    ]
    assert as_table(got).equals(as_table(expected))


@pytest.mark.parametrize("sizes", [[100, 7, 1000, 1, 256], [4096, 3], [1, 5000]])
def test_changing_max_rows_never_loses_or_repeats_a_row(sizes):
    expected = as_table(read_everything(plain_reader(), [1000]))
    reader = PrefetchingReader(plain_reader(), depth=3)
    got = read_everything(reader, sizes)
    reader.close()
    assert got[-1].next_offset == expected.num_rows
    assert as_table(got).equals(expected)


def test_a_smaller_request_splits_a_prefetched_batch():
    reader = PrefetchingReader(ScriptedReader(rows=1000))
    first = reader.read_batch(100)
    assert first is not None and first.first_offset == 0
    assert wait_until(
        lambda: len(reader._buffer) == reader.depth, 5.0, 0.005
    )  # read ahead at 100 rows
    second = reader.read_batch(30)
    third = reader.read_batch(500)
    assert second is not None and (second.first_offset, second.batch.num_rows) == (100, 30)
    assert third is not None and (third.first_offset, third.batch.num_rows) == (130, 70)
    assert reader.position == 200
    assert third.batch.column("n").to_pylist() == list(range(130, 200))
    reader.close()


def test_exhaustion_returns_none_and_stays_exhausted():
    inner = ScriptedReader(rows=10)
    reader = PrefetchingReader(inner)
    assert [r.first_offset for r in read_everything(reader, [4])] == [0, 4, 8]
    assert reader.read_batch(4) is None
    assert reader.position == 10
    reads = inner.reads
    assert reader.read_batch(4) is None
    assert inner.reads == reads  # no read after the end
    reader.close()


def test_empty_partition():
    reader = PrefetchingReader(ScriptedReader(rows=0))
    assert reader.read_batch(10) is None
    assert reader.position == 0
    reader.close()


def test_inner_error_reaches_the_caller_after_the_batches_before_it():
    reader = PrefetchingReader(ScriptedReader(rows=100, fail_at=20), depth=4)
    assert [reader.read_batch(10) for _ in range(2)] == [
        SourceBatch(7, 0, pa.record_batch({"n": pa.array(range(10), pa.int64())})),
        SourceBatch(7, 10, pa.record_batch({"n": pa.array(range(10, 20), pa.int64())})),
    ]
    with pytest.raises(OSError, match="disk gone at offset 20"):
        reader.read_batch(10)
    with pytest.raises(OSError, match="disk gone"):  # the reader stays failed
        reader.read_batch(10)
    assert reader.position == 20
    reader.close()


def test_close_wakes_a_thread_blocked_on_a_full_buffer():
    inner = ScriptedReader(rows=10**6)
    reader = PrefetchingReader(inner, depth=2)
    reader.read_batch(10)
    assert wait_until(lambda: len(reader._buffer) == 2, 5.0, 0.005)
    thread = reader._thread
    assert thread is not None and thread.is_alive()
    began = time.monotonic()
    reader.close()
    assert time.monotonic() - began < 1.0
    assert not thread.is_alive()
    assert inner.closed
    with pytest.raises(SourceError, match="read after close"):
        reader.read_batch(10)
    reader.close()  # idempotent


def test_close_does_not_hang_on_a_thread_stuck_in_the_inner_reader(caplog):
    inner = ScriptedReader(rows=1000)
    reader = PrefetchingReader(inner, depth=2, close_timeout_s=0.2)
    reader.read_batch(10)
    assert wait_until(lambda: len(reader._buffer) == 2, 5.0, 0.005)
    inner.gate.clear()  # the next read blocks inside the inner reader
    reader.read_batch(10)  # makes room: the thread enters the blocked read
    assert wait_until(lambda: inner.entered == 4, 5.0, 0.005)
    began = time.monotonic()
    reader.close()
    assert time.monotonic() - began < 1.0
    assert inner.closed
    assert "still inside the inner reader" in caplog.text
    inner.gate.set()  # let the daemon thread finish; it must not publish anything
    thread = reader._thread
    assert thread is not None
    thread.join(2)
    assert not thread.is_alive()
    assert not reader._buffer


def test_a_caller_blocked_in_read_batch_is_released_by_close():
    inner = ScriptedReader(rows=1000)
    inner.gate.clear()
    reader = PrefetchingReader(inner)
    raised: list[BaseException] = []

    def read() -> None:
        try:
            reader.read_batch(10)
        except BaseException as error:
            raised.append(error)

    caller = threading.Thread(target=read)
    caller.start()
    # The caller starts the read-ahead thread holding the reader's lock and keeps it until
    # its wait for a batch releases it; the gate keeps the buffer empty. So once the
    # thread exists and the lock can be taken, the caller is blocked inside read_batch.
    assert wait_until(lambda: reader._thread is not None, 5.0, 0.005)
    with reader._changed:
        assert not reader._buffer and caller.is_alive()
    reader.close_timeout_s = 0.1
    reader.close()
    caller.join(2)
    assert not caller.is_alive()
    assert isinstance(raised[0], SourceError)
    inner.gate.set()


def test_commit_and_high_watermark_delegate_to_the_inner_reader():
    inner = ScriptedReader(rows=1000)
    reader = PrefetchingReader(inner, depth=3)
    reader.read_batch(100)
    assert reader.high_watermark() == 1000
    reader.commit(100)
    assert inner.committed == 100
    with pytest.raises(SourceError, match="expected at most 100"):
        reader.commit(101)  # read ahead, but not handed to the caller
    reader.close()


def test_bad_arguments():
    with pytest.raises(ConfigError, match="depth"):
        PrefetchingReader(ScriptedReader(rows=1), depth=0)
    reader = PrefetchingReader(ScriptedReader(rows=1))
    with pytest.raises(ConfigError, match="max_rows"):
        reader.read_batch(0)
    reader.close()
