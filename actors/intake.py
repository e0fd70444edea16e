"""How a member takes rows from its partitions: round-robin, gathering, keeping pace.

Pure logic over `PartitionReader`s, no TensorFlow and no Ray, so every rule here is
tested on in-memory readers:

- **Round-robin.** Each step takes rows from the next partition that has some, so one
  busy partition cannot starve the others, and a batch never mixes partitions (sequence
  windows and dead letters stay per partition).
- **Slow streams.** A live partition that returns fewer than `IngestSpec.min_batch` rows
  is read again until it has them or `max_wait_ms` has passed; a member whose every
  partition is quiet waits that long once and reports an idle step (so it can still
  publish, checkpoint and stop).
- **Keeping pace.** Past `IngestSpec.max_lag_rows` of lag, rows are sampled away by the
  stated policy (`uniform` thinning or `newest`) and counted as `rows_sampled`.
- **Accounting.** Every record read is exactly one of: a kept row, a sampled-away row, or
  a source dead letter (a record the source could not turn into a row). Intake reports
  all three, so a member's counts reconcile with what was produced.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from actors.specs import IngestSpec
from pipelines.schema import DeadLetter
from pipelines.sources.base import PartitionReader, SourceBatch

__all__ = ["Intake", "PartitionIntake"]

_SKIP_CHUNK_ROWS = 65_536  # rows read per call while skipping: bounds one read's memory


@dataclass
class Intake:
    """What one step took from one partition.

    Attributes:
        partition: where the rows come from (None for an idle step).
        pieces: kept rows, in offset order, each with its offsets (`SourceBatch`).
        source_dead: records the source could not turn into rows.
        rows_read: every record consumed: kept + sampled + source dead letters.
        rows_sampled: rows skipped to keep pace.
    """

    partition: int | None
    pieces: list[SourceBatch] = field(default_factory=list)
    source_dead: list[DeadLetter] = field(default_factory=list)
    rows_read: int = 0
    rows_sampled: int = 0

    @property
    def rows_kept(self) -> int:
        return sum(piece.batch.num_rows for piece in self.pieces)

    def take(self, read: SourceBatch) -> None:
        """Count `read` in and keep its rows."""
        self.source_dead.extend(read.dead_letters)
        self.rows_read += read.batch.num_rows + len(read.dead_letters)
        if read.batch.num_rows:
            self.pieces.append(read)


class PartitionIntake:
    """Reads a member's partitions by the rules in the module docstring.

    Args:
        readers: the open readers of the member's partitions.
        batch_size: rows a training step wants (at most this many are kept per step).
        spec: gathering and lag-sampling settings.
        seed: seeds `uniform` sampling.
    """

    def __init__(
        self,
        readers: list[PartitionReader],
        batch_size: int,
        spec: IngestSpec | None = None,
        seed: int = 0,
    ) -> None:
        self.readers = list(readers)
        self.batch_size = int(batch_size)
        self.spec = spec if spec is not None else IngestSpec()
        self.exhausted: set[int] = set()
        self._next = 0
        self._rng = np.random.default_rng([seed, 0x1A6])

    @property
    def next_reader(self) -> int:
        """Index of the reader the next step tries first (round-robin; checkpointed)."""
        return self._next

    @next_reader.setter
    def next_reader(self, index: int) -> None:
        self._next = index % len(self.readers) if self.readers else 0

    def add(self, reader: PartitionReader) -> None:
        """Read one more partition from the next step on (a partition handed over)."""
        self.readers.append(reader)
        self.exhausted.discard(reader.partition)

    def remove(self, partition: int) -> PartitionReader:
        """Stop reading `partition` and give its reader back (still open, at its position).

        Raises:
            KeyError: if this intake does not read `partition`.
        """
        index = next((i for i, r in enumerate(self.readers) if r.partition == partition), None)
        if index is None:
            raise KeyError(f"partition {partition} is not read here")
        reader = self.readers.pop(index)
        self.exhausted.discard(partition)
        self._next = self._next % len(self.readers) if self.readers else 0
        return reader

    @property
    def done(self) -> bool:
        """Whether every partition is bounded and fully read."""
        return len(self.exhausted) == len(self.readers)

    def next(self) -> Intake | None:
        """Rows of the next partition with data; an idle `Intake` if none had any within
        the wait; None once every partition is exhausted."""
        live = self._live_readers()
        if not live:
            return None
        for reader in live:
            intake = self._read(reader, wait_s=0.0)
            if intake is not None and (intake.pieces or intake.rows_read):
                return intake
        if self.done:
            return None
        # Every partition was quiet: wait on one (in turn), so an idle member sleeps in
        # the source's own wait instead of spinning.
        quiet = [r for r in live if r.partition not in self.exhausted]
        reader = quiet[self._next % len(quiet)]
        self._next += 1
        intake = self._read(reader, wait_s=self.spec.max_wait_ms / 1000.0)
        if intake is None or not intake.rows_read:
            return None if self.done else Intake(partition=None)
        return intake

    def _live_readers(self) -> list[PartitionReader]:
        """Readers not yet exhausted, starting after the one read last (round-robin)."""
        n = len(self.readers)
        if n == 0:
            return []
        order = [self.readers[(self._next + i) % n] for i in range(n)]
        self._next = (self._next + 1) % n
        return [r for r in order if r.partition not in self.exhausted]

    def _read(self, reader: PartitionReader, wait_s: float) -> Intake | None:
        """One step's rows from `reader`: keep pace, read, gather; None if exhausted."""
        intake = Intake(partition=reader.partition)
        keep = 1.0
        bound = self.spec.max_lag_rows
        lag = self._lag(reader) if bound is not None else None
        if bound is not None and lag is not None and lag > bound:
            if self.spec.lag_policy == "newest":
                self._skip_oldest(reader, reader.position + (lag - bound), intake)
            else:
                keep = bound / lag
        want = self.batch_size
        if keep < 1.0:
            want = min(
                math.ceil(self.batch_size / keep), self.batch_size * self.spec.max_read_factor
            )
        read = reader.read_batch(want, wait_s)
        if read is None:
            self.exhausted.add(reader.partition)
            return intake if intake.rows_read else None
        self._take(read, keep, intake)
        if not (read.batch.num_rows or read.dead_letters):
            return intake  # a quiet live partition: nothing to gather onto
        deadline = time.monotonic() + self.spec.max_wait_ms / 1000.0
        # Gather on a slow live partition; bounded ones return full batches until the end.
        while intake.rows_kept < min(self.spec.min_batch, self.batch_size):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            read = reader.read_batch(self.batch_size - intake.rows_kept, remaining)
            if read is None:
                self.exhausted.add(reader.partition)
                break
            if not (read.batch.num_rows or read.dead_letters):
                break  # the source waited `remaining` and nothing came
            self._take(read, 1.0, intake)
        return intake

    def _take(self, read: SourceBatch, keep: float, intake: Intake) -> None:
        if keep >= 1.0 or not read.batch.num_rows:
            intake.take(read)
            return
        n = read.batch.num_rows
        mask = self._rng.random(n) < keep
        kept = int(mask.sum())
        intake.rows_sampled += n - kept
        intake.take(
            SourceBatch(
                partition=read.partition,
                first_offset=read.first_offset,
                batch=read.batch.filter(mask),
                offsets=read.row_offsets()[mask],
                end_offset=read.next_offset,
                dead_letters=read.dead_letters,
            )
        )
        # The sampled rows were read too; `take` counted only the kept ones.
        intake.rows_read += n - kept

    def _skip_oldest(self, reader: PartitionReader, target: int, intake: Intake) -> None:
        """Read and drop rows until `reader` is at `target` (the `newest` policy).

        Offsets may count messages rather than rows (Kafka Arrow messages hold many
        rows); asking for `target - position` rows never reads past `target` because
        every message has at least one row.
        """
        while reader.position < target:
            read = reader.read_batch(min(target - reader.position, _SKIP_CHUNK_ROWS), 0.0)
            if read is None or not (read.batch.num_rows or read.dead_letters):
                return
            intake.source_dead.extend(read.dead_letters)
            intake.rows_read += read.batch.num_rows + len(read.dead_letters)
            intake.rows_sampled += read.batch.num_rows

    @staticmethod
    def _lag(reader: PartitionReader) -> int | None:
        mark = reader.high_watermark()
        return None if mark is None else max(0, int(mark) - reader.position)

    def lag(self) -> int | None:
        """Rows available but not yet read, summed over partitions (None if unknown)."""
        known = [lag for r in self.readers if (lag := self._lag(r)) is not None]
        return int(sum(known)) if known else None
