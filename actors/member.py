"""The member actor: one ensemble member training on its own partitions inside Ray.

A threaded actor (``max_concurrency=2``): `run` holds one thread for the training loop
while `stats` and `stop` answer on the other. Publishing never blocks training: at most
one publish is in flight, and while the coordinator is busy the member keeps learning
and publishes a fresher snapshot next time (backpressure without a queue).

Durability (DESIGN rule 6): every `CheckpointSpec.every_rows` rows or `interval_s`
seconds, and when it stops, the member writes a checkpoint (weights, optimizer,
normaliser, counters, offsets) and only then commits those offsets to the source. A
restarted actor (Ray ``max_restarts``) finds its newest checkpoint, restores it and opens
its partitions at the checkpoint's offsets; a partition it has no checkpoint for starts
at the source's committed offset. So no record is lost, and at most the records read
since the last checkpoint are learned twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import ray

from actors.errors import SourceError
from actors.member_core import MemberCore
from actors.membership import MemberStart
from actors.process_info import memory_mb
from actors.snapshot import MemberSnapshot
from actors.specs import MemberConfig
from actors.tf_runtime import configure_tensorflow
from pipelines.checkpoint import CheckpointStore
from pipelines.dead_letter import open_dead_letter_sink
from pipelines.learn_log import LearnLog
from pipelines.sources import SourceSpec, open_source

__all__ = ["MemberActor"]

logger = logging.getLogger(__name__)


def checkpoint_name(member_id: int) -> str:
    return f"member-{member_id}"


def open_member(
    member_id: int,
    source: SourceSpec,
    partitions: list[int],
    config: MemberConfig,
    store: CheckpointStore | None,
    handoff: dict[int, int] | None = None,
) -> tuple[MemberCore, int | None]:
    """A member's core at its newest checkpoint (weights and offsets of one checkpoint).

    Args:
        handoff: offsets at which partitions were handed to this member by a scaling
            step, for those its checkpoint does not hold yet.

    Returns:
        (core, the sequence of the checkpoint restored, or None when it starts afresh).
    """
    checkpoint = store.latest(checkpoint_name(member_id)) if store is not None else None
    resume = {} if checkpoint is None else checkpoint.meta["offsets"]
    handoff = handoff or {}
    stream = open_source(source)
    # A partition the checkpoint holds resumes at its offset; one handed over since at
    # its handover offset; another one (new to this member) at the source's committed
    # offset (None): the checkpoint, not the group's commit, says where to go on, so a
    # crash between the two loses nothing.
    readers = [
        stream.open(p, resume[str(p)] if str(p) in resume else handoff.get(p)) for p in partitions
    ]
    core = MemberCore(member_id, readers, stream.schema, config)
    if checkpoint is None:
        return core, None
    core.restore(checkpoint.arrays, checkpoint.meta)
    logger.info(
        "member %d restored checkpoint %d at offsets %s",
        member_id,
        checkpoint.sequence,
        checkpoint.meta["offsets"],
    )
    return core, checkpoint.sequence


@ray.remote(max_concurrency=2)  # type: ignore[call-overload]
class MemberActor:
    """Holds one ensemble member; trains it test-then-train on its own partitions.

    Args:
        member_id: this member's id.
        source: spec of the stream; the member opens its partitions itself.
        partitions: the partitions it owns.
        config: member settings.
        coordinator: handle of the `CoordinatorActor`.
        num_cpus: CPUs Ray reserved for this actor (sizes TensorFlow's thread pools).
        dead_letter_path: where rejected records go: a JSON-lines file or a
            ``kafka://host:port/topic`` (None: count only).
        niceness: how much to lower this process's scheduling priority (0: leave it).
        start: how a member added by scaling begins when it has no checkpoint (fresh
            weights, a copy of the best member's, or distilled from the ensemble).

    Partitions move between members while they run (`release`, `adopt`). The coordinator
    records every move, so a restarted member reads the partitions it owns *now*, not
    the ones it was constructed with (see `open_member` for the offsets).
    """

    def __init__(
        self,
        member_id: int,
        source: SourceSpec,
        partitions: list[int],
        config: MemberConfig,
        coordinator: Any,
        num_cpus: float = 1.0,
        dead_letter_path: str | None = None,
        niceness: int = 5,
        start: MemberStart | None = None,
    ):
        # Training is throughput work; the coordinator and Serve replicas are latency work
        # sharing the same cores. A lower scheduling priority for members keeps publishes
        # and requests prompt when members saturate the CPUs (it needs no privilege).
        if niceness:
            os.nice(niceness)
        self._threads = configure_tensorflow(num_cpus)
        self._store = (
            CheckpointStore(config.checkpoint.uri, keep=config.checkpoint.keep)
            if config.checkpoint.uri is not None
            else None
        )
        self._name = checkpoint_name(member_id)
        self._source = source
        owned = ray.get(coordinator.assignment_of.remote(member_id))
        handoff: dict[int, int] = {}
        if owned is not None:  # the coordinator's record wins: partitions may have moved
            partitions = owned["partitions"]
            handoff = {int(p): int(o) for p, o in owned["handoff"].items()}
        self._core, self.restored_from = open_member(
            member_id, source, partitions, config, self._store, handoff
        )
        if self.restored_from is None and start is not None:
            start.apply(self._core.learner)
        self._coordinator = coordinator
        self._sink = open_dead_letter_sink(dead_letter_path, member_id=member_id)
        self._learn_log = LearnLog(config.learn_log, member_id) if config.learn_log else None
        self._checkpoints = 0
        self._commit_failures = 0
        self._checkpointed_rows = self._core.rows_seen
        self._checkpointed_at = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.RLock()  # `release` and `adopt` checkpoint while holding it
        self._inflight: Any = None
        self._publishes = 0
        self._started: float | None = None
        self._finished: float | None = None

    def run(self) -> dict:
        """Train until every partition is exhausted or `stop` is called; returns final stats."""
        self._started = time.monotonic()
        config = self._core.config
        last_time, last_rows = time.monotonic(), 0
        try:
            while not self._stop.is_set():
                with self._lock:
                    dead = self._core.step()
                    learned = self._core.last_learned
                if dead is None:
                    break
                if dead:
                    self._sink.write(dead)
                if self._learn_log is not None and learned is not None:
                    self._learn_log.write(*learned)
                self._checkpoint_if_due()
                due = (
                    time.monotonic() - last_time >= config.publish_interval_s
                    or self._core.rows_learned - last_rows >= config.publish_every_rows
                )
                if due and self._publish(wait=False):
                    last_time, last_rows = time.monotonic(), self._core.rows_learned
        finally:
            self._finished = time.monotonic()
            self._checkpoint()
            self._publish(wait=True)
            self._sink.close()
        return self.stats()

    def _checkpoint_if_due(self) -> None:
        spec = self._core.config.checkpoint
        read = self._core.rows_seen - self._checkpointed_rows
        if self._store is None or not read:
            return  # nothing new since the last one (a quiet live stream)
        if read >= spec.every_rows or time.monotonic() - self._checkpointed_at >= spec.interval_s:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Write the state, then commit its offsets: a commit never runs ahead of state.

        Dead letters and the learn log of the rows it covers were written before, so
        after a crash they may repeat (at least once), never go missing.
        """
        if self._store is None:
            return
        with self._lock:
            self._sink.flush()  # a Kafka dead-letter topic has every letter before offsets move
            arrays, meta = self._core.state()
            self._store.save(self._name, arrays, meta)
            for reader in self._core.readers:
                try:
                    reader.commit(reader.position)
                except SourceError as exc:
                    # The checkpoint is the state; a commit that fails (brokers away) only
                    # leaves the group's offset behind until the next one succeeds.
                    self._commit_failures += 1
                    logger.warning("member %d: %s", self._core.member_id, exc)
            self._checkpoints += 1
            self._checkpointed_rows = self._core.rows_seen
            self._checkpointed_at = time.monotonic()

    def _publish(self, *, wait: bool) -> bool:
        """Send stats, the evaluation sample and a snapshot; skip if one is still in flight."""
        if self._inflight is not None:
            ready, _ = ray.wait([self._inflight], timeout=None if wait else 0)
            if not ready:
                return False
            ray.get(self._inflight)  # surface a coordinator error here, not silently
        with self._lock:
            self._publishes += 1
            weights, which = self._core.snapshot_weights()
            snapshot = MemberSnapshot(
                member_id=self._core.member_id,
                version=self._publishes,
                rows=self._core.rows_learned,
                weights=weights,
                source=which,
            )
            sample = self._core.take_sample()
            stats = self.stats()
            stats["sent_at"] = time.time()  # wall clock: comparable across processes
        self._inflight = self._coordinator.publish.remote(
            self._core.member_id, stats, snapshot, sample
        )
        if wait:
            ray.get(self._inflight)
        return True

    def release(self, partitions: list[int]) -> dict[int, int]:
        """Hand `partitions` over: stop reading them after the current batch.

        Checkpoints first (so the offsets it returns are committed and the state has
        learned every row before them), then checkpoints again without them, so a
        restart of this member never reads them again.

        Returns:
            partition -> the offset its new owner starts at.
        """
        with self._lock:
            mine = [p for p in partitions if p in self._core.offsets()]
            self._checkpoint()
            offsets = self._core.release(mine)
            self._checkpoint()
        return offsets

    def adopt(self, handoff: dict[int, int]) -> list[int]:
        """Read these partitions too, each from its handover offset; returns all it reads.

        Idempotent: a partition already read here is left as it is (a retried call after
        a restart that already opened it from the coordinator's record).
        """
        stream = open_source(self._source)
        with self._lock:
            held = self._core.offsets()
            readers = [stream.open(p, o) for p, o in handoff.items() if p not in held]
            self._core.adopt(readers)
            self._checkpoint()
            return sorted(self._core.offsets())

    def ready(self) -> bool:
        """Answers once the constructor finished (TensorFlow imported, partitions open)."""
        return True

    def stop(self) -> None:
        """Finish the current batch, publish, and return from `run`."""
        self._stop.set()

    def stats(self) -> dict:
        stats = self._core.stats()
        elapsed = ((self._finished or time.monotonic()) - self._started) if self._started else 0.0
        stats["elapsed_s"] = elapsed
        stats["rows_per_s"] = stats["rows"] / elapsed if elapsed > 0 else 0.0
        stats["publishes"] = self._publishes
        stats["tf_threads"] = self._threads
        stats["checkpoints"] = self._checkpoints
        stats["commit_failures"] = self._commit_failures
        stats["restored_from"] = self.restored_from
        stats.update(memory_mb())
        stats["pid"] = os.getpid()
        stats["node"] = ray.get_runtime_context().get_node_id()
        return stats
