"""The member actor: one ensemble member training on its own partitions inside Ray.

A threaded actor (``max_concurrency=2``): `run` holds one thread for the training loop
while `stats` and `stop` answer on the other. Publishing never blocks training: at most
one publish is in flight, and while the coordinator is busy the member keeps learning
and publishes a fresher snapshot next time (backpressure without a queue).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import ray

from actors.member_core import MemberCore
from actors.snapshot import MemberSnapshot
from actors.specs import MemberConfig
from actors.tf_runtime import configure_tensorflow
from pipelines.dead_letter import DeadLetterSink
from pipelines.sources import SourceSpec, open_source

__all__ = ["MemberActor"]

logger = logging.getLogger(__name__)


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
        dead_letter_path: JSON-lines file for rejected records (None: count only).
        niceness: how much to lower this process's scheduling priority (0: leave it).
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
    ):
        # Training is throughput work; the coordinator and Serve replicas are latency work
        # sharing the same cores. A lower scheduling priority for members keeps publishes
        # and requests prompt when members saturate the CPUs (it needs no privilege).
        if niceness:
            os.nice(niceness)
        self._threads = configure_tensorflow(num_cpus)
        stream = open_source(source)
        readers = [stream.open(p) for p in partitions]
        self._core = MemberCore(member_id, readers, stream.schema, config)
        self._coordinator = coordinator
        self._sink = DeadLetterSink(dead_letter_path, member_id=member_id)
        self._stop = threading.Event()
        self._lock = threading.Lock()
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
                if dead is None:
                    break
                if dead:
                    self._sink.write(dead)
                due = (
                    time.monotonic() - last_time >= config.publish_interval_s
                    or self._core.rows_learned - last_rows >= config.publish_every_rows
                )
                if due and self._publish(wait=False):
                    last_time, last_rows = time.monotonic(), self._core.rows_learned
        finally:
            self._finished = time.monotonic()
            self._publish(wait=True)
            self._sink.close()
        return self.stats()

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
        return stats
