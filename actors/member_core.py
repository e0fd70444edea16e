"""One member's loop body, without Ray: read, validate, sample, test-then-train.

The member reads its own partitions round-robin through `PartitionIntake` (DESIGN rule
1; it also gathers rows on slow streams and samples to keep pace when far behind),
validates each Arrow batch at the edge (bad rows become dead letters with a reason), keeps
a thin Bernoulli sample of good rows for the coordinator's shared evaluation *before*
learning them, and then runs one compiled test-then-train step. `state` and `restore`
turn everything a restart needs into plain arrays for a checkpoint.

Sequence models read windows of consecutive rows: each partition has its own
`SlidingWindows`, so windows never mix partitions and none is lost at a batch seam.
Labels are checked against the task here (a binary label must be 0 or 1, a multiclass
label a class index); a bad one is a dead letter like any malformed record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from actors.batch_schedule import batch_rows
from actors.best_snapshot import BestSnapshotGuard
from actors.compiled import FixedSignatureFunction
from actors.drift_response import DriftResponder
from actors.errors import CheckpointError
from actors.intake import Intake, PartitionIntake
from actors.learner import OnlineLearner
from actors.models import build_model, compiled_copy
from actors.snapshot import SharedSample
from actors.specs import MemberConfig, ModelSpec
from actors.weighting import RecentMean, recent_scores, row_scores
from actors.windows import SlidingWindows
from pipelines.schema import DeadLetter, StreamSchema
from pipelines.sources.base import PartitionReader

__all__ = ["BEST_CHECK_ROWS", "MemberCore"]

BEST_CHECK_ROWS = 512
"""Most rows of a batch the best snapshot is scored on at a check (the newest ones).

Why a cap: the check is an extra forward pass, so without one its cost grows with the
read size (a 4,096-row read took ~1.7 ms, 3% of a member's time at one check per 8
reads), while the guard compares windows of `window` (2,000) rows and needs only a few
hundred new rows a check to follow the current network. Batches of up to 512 rows, the
job's default among them, are scored whole as before."""


@dataclass(frozen=True)
class _Prepared:
    """One batch made ready to learn: inputs (rows or windows), labels, what was rejected."""

    x: np.ndarray
    y: np.ndarray
    dead: list[DeadLetter]
    rows_read: int
    rows_sampled: int
    partition: int | None
    offsets: np.ndarray  # source offsets of the rows that reach the learner


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
        spec = config.model
        self.learner = OnlineLearner(
            schema.n_features, spec, seed=config.seed + member_id, strategy=config.strategy
        )
        self.regression = spec.task == "regression"
        # Recent accuracy (classification) or recent squared error (regression).
        self.recent: RecentMean = recent_scores(spec.task, config.window)
        # Every record read is learned, context of a window, sampled away or dead-lettered.
        self.rows_seen = 0
        self.rows_learned = 0
        self.rows_sampled = 0
        self.dead_letter = 0
        self.batches = 0
        # rows_learned when learning last started over (at 0, or on answering a drift):
        # batches grow from `batch_start` with the rows learned since (batch_schedule).
        self.started_over_at = 0
        self.idle_steps = 0  # steps where every live partition stayed quiet for max_wait
        self.last_learned: tuple[int | None, np.ndarray] | None = None
        self.intake = PartitionIntake(
            self.readers, config.batch_size, config.ingest, seed=config.seed + member_id
        )
        self._windows = {
            reader.partition: SlidingWindows(spec.window, schema.n_features)
            for reader in self.readers
            if spec.is_sequence
        }
        self.released_context = 0  # context rows of windows of partitions handed over
        self._rng = np.random.default_rng([config.seed, member_id])
        self._sample_x: list[np.ndarray] = []
        self._sample_y: list[np.ndarray] = []
        self._sample_partition: list[np.ndarray] = []  # each sampled row's source partition
        self._sample_rows = 0
        self.drift = (
            DriftResponder(config.drift, self.regression)
            if config.drift.detector is not None
            else None
        )
        self.guard: BestSnapshotGuard | None = None
        self._best_forward = None
        if config.best_margin is not None:
            self.guard = BestSnapshotGuard(config.best_margin, config.window, self.regression)
            self._best_model = build_model(spec, schema.n_features, name="best")
            self._copy_to_best = compiled_copy(self.learner.model.weights, self._best_model.weights)
            self._best_forward = FixedSignatureFunction(
                lambda x: self._best_model(x, training=False),
                [tf.TensorSpec([None, *spec.input_shape(schema.n_features)], tf.float32)],
            )
            # Trace both graphs now: a first call costs ~0.3 s, which would stall
            # training at the first snapshot instead of at start-up.
            self._copy_to_best.trace()
            self._best_forward(np.zeros((1, *spec.input_shape(schema.n_features)), np.float32))

    @property
    def done(self) -> bool:
        return self.intake.done

    def step(self) -> list[DeadLetter] | None:
        """Read and learn one batch from the next partition with data.

        Returns:
            The dead letters of that batch (often empty; an idle step on a quiet live
            stream returns an empty list), or None when every partition is exhausted.
        """
        prepared = self.read_batch()
        return None if prepared is None else self.learn_batch(prepared)

    def read_batch(self, rows: int | None = None) -> _Prepared | None:
        """Take the next partition's rows (`PartitionIntake`) and make them ready to learn.

        `step` is `read_batch` then `learn_batch`; the accuracy harness calls them apart
        to have the ensemble answer the batch before this member learns it.

        Args:
            rows: most rows to take; by default the member's own batch schedule
                (`next_batch_rows`). The harness's single model follows the ensemble's
                batches with it, so that both read the stream in the same order.
        """
        self.intake.batch_size = self.next_batch_rows() if rows is None else rows
        intake = self.intake.next()
        if intake is not None and intake.partition is None:
            self.idle_steps += 1
        return None if intake is None else self._prepare(intake)

    def next_batch_rows(self) -> int:
        """Rows the next batch takes: small while the network is young (`batch_schedule`)."""
        return batch_rows(
            self.rows_learned - self.started_over_at,
            self.config.batch_start,
            self.config.batch_size,
        )

    def _prepare(self, intake: Intake) -> _Prepared:
        """Validate the rows, dead-letter bad rows and labels, and window them if needed."""
        dead = list(intake.source_dead)
        partition = intake.partition
        xs, ys, offsets = [], [], []
        for piece in intake.pieces:
            validated = self.schema.validate(
                piece.batch,
                partition=piece.partition,
                first_offset=piece.first_offset,
                offsets=piece.offsets,
            )
            dead.extend(validated.dead_letters)
            xs.append(validated.x)
            ys.append(validated.y)
            offsets.append(validated.offsets)
        if len(xs) == 1:
            x, y, good_offsets = xs[0], ys[0], offsets[0]
        elif xs:
            x, y, good_offsets = np.concatenate(xs), np.concatenate(ys), np.concatenate(offsets)
        else:
            x = np.empty((0, self.schema.n_features), np.float32)
            y = np.empty((0,), np.float32)
            good_offsets = np.empty((0,), np.int64)
        bad, reason = _bad_labels(y, self.config.model)
        if bad is not None and partition is not None:
            dead.extend(
                DeadLetter(partition, int(offset), reason, f"label={value!r}")
                for offset, value in zip(good_offsets[bad].tolist(), y[bad].tolist(), strict=True)
            )
            x, y, good_offsets = x[~bad], y[~bad], good_offsets[~bad]
        if partition in self._windows:
            x, y = self._windows[partition].push(x, y)
        return _Prepared(x, y, dead, intake.rows_read, intake.rows_sampled, partition, good_offsets)

    def learn_batch(self, prepared: _Prepared) -> list[DeadLetter]:
        """Sample for the shared evaluation, then test-then-train; returns the dead letters."""
        x, y, dead = prepared.x, prepared.y, prepared.dead
        self.rows_seen += prepared.rows_read
        self.rows_sampled += prepared.rows_sampled
        self.dead_letter += len(dead)
        self.last_learned = (
            (prepared.partition, prepared.offsets) if len(prepared.offsets) else None
        )
        if len(y):
            if self.config.eval_fraction > 0:
                picked = self._rng.random(len(y)) < self.config.eval_fraction
                if picked.any():
                    self._sample_x.append(x[picked])
                    self._sample_y.append(y[picked])
                    source = -1 if prepared.partition is None else prepared.partition
                    self._sample_partition.append(np.full(int(picked.sum()), source, np.int64))
                    self._sample_rows += int(picked.sum())
                    self._trim_sample()
            outcome = self.learner.learn_many(x, y)
            self.recent.add(outcome.scores)
            self.rows_learned += outcome.rows
            self.batches += 1
            if self.drift is not None:
                self._answer_drift(x, y, outcome.scores)
            if (
                self.guard is not None
                and self.guard.best_weights is not None
                and self.batches % self.config.best_check_every == 0
            ):
                newest = slice(-BEST_CHECK_ROWS, None)
                self.guard.observe(outcome.scores[newest], self._best_scores(x[newest], y[newest]))
        return dead

    def _answer_drift(self, x: np.ndarray, y: np.ndarray, scores: np.ndarray) -> None:
        """Feed the step's scores to the drift detector; carry out the action it calls for."""
        assert self.drift is not None
        action = self.drift.observe(scores, self.rows_learned, self.recent.value())
        if action in ("reset", "forget", "boost-lr"):
            # A new concept: the steep part of the learning curve again, where fresh
            # answers are worth small batches.
            self.started_over_at = self.rows_learned
        if action == "reset":
            # Fitted on the very batch that showed the drift: post-drift rows already.
            self.learner.reset_network(x, y)
        elif action == "forget":
            # The rows since the change the detector located (at least this batch, which
            # showed the drift and is already in the memory) stay; older ones held the
            # concept that has gone.
            since = self.drift.detector.rows_since_change() or 0
            forgot = self.learner.forget_replay(max(len(y), since))
            self.drift.record_outcome(forgot_rows=forgot)
        elif action == "boost-lr":
            self.learner.set_rate_multiplier(self.config.drift.boost_factor)
        elif action == "end-boost":
            self.learner.set_rate_multiplier(1.0)

    def _best_scores(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-row scores of the best snapshot on rows the current network was tested on."""
        assert self._best_forward is not None
        outputs = np.asarray(self._best_forward(x))
        task = self.config.model.task
        return row_scores(task, outputs if task == "multiclass" else outputs[:, 0], y)

    def served_outputs(self, x: np.ndarray) -> np.ndarray:
        """What this member's snapshot would answer on `x` now: the best snapshot's outputs
        while the guard serves it, else the current network's (`predict_proba_many` shape)."""
        if self.guard is not None and self.guard.serving_best and self._best_forward is not None:
            outputs = np.asarray(self._best_forward(np.asarray(x, np.float32)))
            return outputs if self.config.model.task == "multiclass" else outputs[:, 0]
        return self.learner.predict_proba_many(x)

    def snapshot_weights(self) -> tuple[list[np.ndarray], str]:
        """The weights to publish and which they are: ``current`` or ``best``.

        Offers the current network to the best-snapshot guard first, so a snapshot is
        where a new best is taken.
        """
        current = self.learner.get_weights()
        if self.guard is None:
            return current, "current"
        if self.guard.offer(current, self.recent.value()):
            # The best is the current network at this moment: copy it variable to
            # variable in one graph call, not back through NumPy (a rising network sets a
            # new best at most snapshots, so this runs several times a second).
            self._copy_to_best()
        if self.guard.serving_best and self.guard.best_weights is not None:
            return self.guard.best_weights, "best"
        return current, "current"

    def take_sample(self) -> SharedSample | None:
        """Rows sampled for shared evaluation since the last call (none learned before
        sampling), with each row's source partition."""
        if not self._sample_y:
            return None
        sample = SharedSample(
            np.concatenate(self._sample_x),
            np.concatenate(self._sample_y),
            np.concatenate(self._sample_partition),
        )
        self._sample_x.clear()
        self._sample_y.clear()
        self._sample_partition.clear()
        self._sample_rows = 0
        return sample

    def _trim_sample(self) -> None:
        """Keep the newest `eval_max_rows` sampled rows (the shared evaluation is about
        recent accuracy). Without a bound the sample grows for as long as the coordinator
        is away, and its first publish after a restart would flood the shared window
        with one partition's rows."""
        excess = self._sample_rows - self.config.eval_max_rows
        while excess > 0:
            oldest = len(self._sample_y[0])
            if oldest <= excess:
                self._sample_x.pop(0)
                self._sample_y.pop(0)
                self._sample_partition.pop(0)
                dropped = oldest
            else:
                self._sample_x[0] = self._sample_x[0][excess:]
                self._sample_y[0] = self._sample_y[0][excess:]
                self._sample_partition[0] = self._sample_partition[0][excess:]
                dropped = excess
            self._sample_rows -= dropped
            excess -= dropped

    # -- partitions handed over (scaling) -----------------------------------------------

    def release(self, partitions: list[int]) -> dict[int, int]:
        """Stop reading `partitions`; returns each one's next offset, for its new owner.

        Called between steps, so every row before those offsets is learned (or sampled or
        dead-lettered) here and none after: the new owner opens the partition there and
        nothing is lost or learned twice. A sequence model's window tail stays behind:
        the new owner's first ``window - 1`` rows there are context (`rows_context`).

        Raises:
            KeyError: if a partition is not read by this member.
        """
        offsets = {}
        for partition in partitions:
            reader = self.intake.remove(partition)
            self.readers.remove(reader)
            offsets[partition] = reader.position
            reader.close()
            windowed = self._windows.pop(partition, None)
            if windowed is not None:
                self.released_context += windowed.warmup_rows
        return offsets

    def adopt(self, readers: list[PartitionReader]) -> None:
        """Read these partitions too from the next step on (opened at their handover offsets)."""
        spec = self.config.model
        for reader in readers:
            self.intake.add(reader)
            self.readers.append(reader)
            if spec.is_sequence:
                self._windows[reader.partition] = SlidingWindows(
                    spec.window, self.schema.n_features
                )

    def offsets(self) -> dict[int, int]:
        """Next offset to read, per partition."""
        return {reader.partition: reader.position for reader in self.readers}

    def lag(self) -> int | None:
        """Rows available but not yet read, summed over partitions (None if unknown)."""
        return self.intake.lag()

    # -- checkpoints -----------------------------------------------------------------------

    _COUNTERS = (
        "rows_seen",
        "rows_learned",
        "rows_sampled",
        "dead_letter",
        "batches",
        "released_context",
        "started_over_at",
    )

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """This member's state as plain arrays and JSON metadata (a checkpoint's content).

        Taken between steps, so the offsets are exactly the rows the weights have seen.
        """
        arrays = self.learner.state_arrays()
        recent, totals = self.recent.state()
        arrays["recent/values"] = recent
        windows = {}
        for partition, windowed in self._windows.items():
            arrays[f"window/{partition}"] = windowed.tail
            windows[str(partition)] = windowed.warmup_rows
        meta = {
            "member_id": self.member_id,
            "offsets": {str(p): o for p, o in self.offsets().items()},
            "counters": {name: getattr(self, name) for name in self._COUNTERS},
            "recent": totals,
            "window_warmup": windows,
            "next_reader": self.intake.next_reader,
            "task": self.config.model.task,
            "model": self.config.model.kind,
            "strategy": self.config.strategy.name,
        }
        if self.drift is not None:
            drift_arrays, meta["drift"] = self.drift.state()
            arrays.update(drift_arrays)
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Continue from a checkpoint written by `state` (readers already at its offsets).

        Raises:
            CheckpointError: if it was written for another model, task or strategy.
        """
        for key, ours in (
            ("task", self.config.model.task),
            ("model", self.config.model.kind),
            ("strategy", self.config.strategy.name),
        ):
            if meta.get(key) != ours:
                raise CheckpointError(
                    f"member {self.member_id}'s checkpoint was written with {key} "
                    f"{meta.get(key)!r}, this job uses {ours!r}"
                )
        if self.drift is not None:
            try:
                self.drift.restore(arrays, meta.get("drift", {}))
            except (ValueError, KeyError) as error:
                raise CheckpointError(f"member {self.member_id}'s checkpoint: {error}") from None
            if self.drift.boosting:  # a boost in progress goes on after the restart
                self.learner.set_rate_multiplier(self.config.drift.boost_factor)
        self.learner.load_state_arrays(arrays)
        self.recent.load_state(arrays["recent/values"], meta["recent"])
        for name, value in meta["counters"].items():
            setattr(self, name, int(value))
        self.intake.next_reader = int(meta.get("next_reader", 0))
        for partition, windowed in self._windows.items():
            if f"window/{partition}" in arrays:
                windowed.restore(
                    arrays[f"window/{partition}"], meta["window_warmup"].get(str(partition), 0)
                )

    def stats(self) -> dict:
        recent, cumulative = self.recent.value(), self.recent.cumulative()
        stats = {
            "id": self.member_id,
            "partitions": [reader.partition for reader in self.readers],
            "rows": self.rows_learned,
            "rows_seen": self.rows_seen,
            "rows_sampled": self.rows_sampled,
            "idle_steps": self.idle_steps,
            "rows_context": self.released_context
            + sum(w.warmup_rows for w in self._windows.values()),
            "dead_letter": self.dead_letter,
            "batches": self.batches,
            "task": self.config.model.task,
            "strategy": self.config.strategy.name,
            "resets": self.learner.resets,
            "offsets": self.offsets(),
            "lag": self.lag(),
            "done": self.done,
        }
        if self.regression:
            stats["recent_error"] = None if recent is None else float(np.sqrt(recent))
            stats["prequential_error"] = None if cumulative is None else float(np.sqrt(cumulative))
            stats["recent_accuracy"] = stats["prequential_accuracy"] = None
        else:
            stats["recent_accuracy"] = recent
            stats["prequential_accuracy"] = cumulative
        if self.guard is not None:
            stats["best_snapshot"] = self.guard.state()
        if self.drift is not None:
            stats["drift"] = self.drift.summary()
        return stats


def _bad_labels(y: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray | None, str]:
    """Rows whose label the task cannot learn from, and why (None: all fine)."""
    if spec.task == "regression":
        return None, ""  # finite numbers: the schema already checked
    if spec.task == "binary":
        bad = (y != 0.0) & (y != 1.0)  # two comparisons: this runs on every batch
    else:
        bad = (y != np.round(y)) | (y < 0) | (y >= spec.n_classes)
    if not bad.any():
        return None, ""
    expected = "0 or 1" if spec.task == "binary" else f"an integer in [0, {spec.n_classes - 1}]"
    return bad, f"label is not a class of this {spec.task} task (expected {expected})"
