"""One member's loop body, without Ray: read, validate, sample, test-then-train.

The member reads its own partitions round-robin (DESIGN rule 1), validates each Arrow
batch at the edge (bad rows become dead letters with a reason), keeps a thin Bernoulli
sample of good rows for the coordinator's shared evaluation *before* learning them, and
then runs one compiled test-then-train step.
"""

from __future__ import annotations

import numpy as np

from actors.learner import OnlineLearner
from actors.specs import MemberConfig
from actors.weighting import RecentAccuracy
from pipelines.schema import DeadLetter, StreamSchema
from pipelines.sources.base import PartitionReader

__all__ = ["MemberCore"]


class MemberCore:
    """Trains one learner on a set of partition readers, test-then-train.

    Args:
        member_id: this member's id.
        readers: open readers of the partitions this member owns.
        schema: the stream's declared schema.
        config: member settings.
    """

    def __init__(
        self,
        member_id: int,
        readers: list[PartitionReader],
        schema: StreamSchema,
        config: MemberConfig,
    ):
        self.member_id = member_id
        self.readers = list(readers)
        self.schema = schema
        self.config = config
        self.learner = OnlineLearner(schema.n_features, config.model, seed=config.seed + member_id)
        self.recent = RecentAccuracy(config.window)
        self.rows_seen = 0  # everything read, good or bad
        self.rows_learned = 0
        self.dead_letter = 0
        self.batches = 0
        self._rng = np.random.default_rng([config.seed, member_id])
        self._exhausted: set[int] = set()
        self._next = 0
        self._sample_x: list[np.ndarray] = []
        self._sample_y: list[np.ndarray] = []

    @property
    def done(self) -> bool:
        return len(self._exhausted) == len(self.readers)

    def step(self) -> list[DeadLetter] | None:
        """Read and learn one batch from the next partition with data.

        Returns:
            The dead letters of that batch (often empty), or None when every partition
            is exhausted.
        """
        while not self.done:
            reader = self.readers[self._next % len(self.readers)]
            self._next += 1
            if reader.partition in self._exhausted:
                continue
            read = reader.read_batch(self.config.batch_size)
            if read is None:
                self._exhausted.add(reader.partition)
                continue
            return self._learn(read.batch, reader.partition, read.first_offset)
        return None

    def _learn(self, batch, partition: int, first_offset: int) -> list[DeadLetter]:
        validated = self.schema.validate(batch, partition=partition, first_offset=first_offset)
        self.rows_seen += batch.num_rows
        self.dead_letter += len(validated.dead_letters)
        if validated.rows:
            if self.config.eval_fraction > 0:
                picked = self._rng.random(validated.rows) < self.config.eval_fraction
                if picked.any():
                    self._sample_x.append(validated.x[picked])
                    self._sample_y.append(validated.y[picked])
            outcome = self.learner.learn_many(validated.x, validated.y)
            correct = np.zeros(outcome.rows, dtype=bool)
            correct[: outcome.correct] = True
            self.recent.add(correct)
            self.rows_learned += outcome.rows
            self.batches += 1
        return validated.dead_letters

    def take_sample(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows sampled for shared evaluation since the last call (none learned before sampling)."""
        if not self._sample_y:
            return None
        x = np.concatenate(self._sample_x)
        y = np.concatenate(self._sample_y)
        self._sample_x.clear()
        self._sample_y.clear()
        return x, y

    def offsets(self) -> dict[int, int]:
        """Next offset to read, per partition."""
        return {reader.partition: reader.position for reader in self.readers}

    def lag(self) -> int | None:
        """Rows available but not yet read, summed over partitions (None if unknown)."""
        marks = [(reader.high_watermark(), reader.position) for reader in self.readers]
        known = [mark - position for mark, position in marks if mark is not None]
        return int(sum(known)) if known else None

    def stats(self) -> dict:
        return {
            "id": self.member_id,
            "partitions": [reader.partition for reader in self.readers],
            "rows": self.rows_learned,
            "rows_seen": self.rows_seen,
            "dead_letter": self.dead_letter,
            "batches": self.batches,
            "recent_accuracy": self.recent.value(),
            "prequential_accuracy": self.recent.cumulative(),
            "offsets": self.offsets(),
            "lag": self.lag(),
            "done": self.done,
        }
