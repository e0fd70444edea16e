"""The coordinator actor: takes member publishes, scores the shared sample, versions snapshots.

Snapshots arrive by value and the coordinator puts them into the object store itself
(DESIGN rule 5 has members do the `ray.put`; see docs/design-notes.md for why this
changed): a member's snapshot is a few KB, so it travels inline in the call with no
ownership lookup, and the object Serve fetches is owned by the coordinator, so a
member that dies does not take the served snapshot with it.

Ordering is what keeps the shared-sample scores honest. A member sends, in one call, the
rows it sampled since its last publish (not yet learned when sampled) and its new
snapshot (which has learned them). The coordinator scores those rows with the snapshots
it already holds, *then* installs the new one. Ray runs one caller's calls on a default
(single-threaded) actor in order, so no snapshot scores rows it has trained on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np
import ray

from actors.coordination import CoordinatorCore
from actors.ensemble_model import EnsembleModel
from actors.names import COORDINATOR_NAME
from actors.process_info import memory_mb
from actors.snapshot import EnsembleSnapshot, MemberSnapshot, SharedSample
from actors.specs import ModelSpec
from actors.tf_runtime import configure_tensorflow
from pipelines.checkpoint import CheckpointStore

__all__ = ["COORDINATOR_CHECKPOINT", "COORDINATOR_NAME", "RESTART_VERSION_GAP", "CoordinatorActor"]

logger = logging.getLogger(__name__)

COORDINATOR_CHECKPOINT = "coordinator"
RESTART_VERSION_GAP = 1_000_000
"""How far above its checkpointed version a restarted coordinator numbers snapshots: more
than any coordinator publishes between two checkpoints (a few hundred a second)."""


# Replicas poll for fresh snapshots; in the default (single-threaded, in-order) group those
# polls would wait behind every queued publish. The "serving" group answers them on its own
# thread from `self._latest`, an immutable snapshot that publish replaces in one assignment.
@ray.remote(num_cpus=0, concurrency_groups={"serving": 1})  # type: ignore[call-overload]
class CoordinatorActor:
    """Tracks members' recent accuracy, sets mixing weights, versions the ensemble snapshot.

    Args:
        partitions_by_member: member id -> partitions it reads.
        n_features: input width of the members' networks.
        model_spec: the members' architecture and task (to score the shared sample).
        window: shared-sample rows that count as recent.
        policy: weighting policy name.
        floor: minimum weight of an above-chance member.
        cap: maximum weight of any member.
        policy_params: the policy's own parameters (``temperature``, ``eta``).
        history_interval_s: how often a history point is recorded.
        checkpoint_uri: this run's checkpoint folder (None: no coordinator checkpoints).
        checkpoint_interval_s: how often the version and history are checkpointed.

    Restarts (Ray ``max_restarts``): a restarted coordinator reads its checkpoint and
    numbers versions `RESTART_VERSION_GAP` above the version it holds, so every replica,
    which never goes back to an older version, takes the new snapshots. Its history,
    recent-accuracy windows and policy state continue from the checkpoint, so the first
    snapshot it serves is weighted as the last one checkpointed was (if the checkpoint
    does not fit, e.g. another policy, the windows start empty and weights are uniform
    until the shared sample refills them). It holds no member snapshot until each member
    publishes again (within `publish_interval_s`); Serve answers from its last good
    snapshot meanwhile.
    """

    def __init__(
        self,
        partitions_by_member: dict[int, list[int]],
        n_features: int,
        model_spec: ModelSpec,
        *,
        window: int = 2000,
        policy: str = "accuracy",
        floor: float = 0.0,
        cap: float = 1.0,
        policy_params: dict[str, Any] | None = None,
        weights_by_partition: bool = True,
        history_interval_s: float = 0.2,
        checkpoint_uri: str | None = None,
        checkpoint_interval_s: float = 2.0,
    ):
        configure_tensorflow(1)
        self._core_options: dict[str, Any] = {
            "task": model_spec.task,
            "window": window,
            "policy": policy,
            "floor": floor,
            "cap": cap,
            "policy_params": policy_params,
            "by_partition": weights_by_partition,
        }
        self._core = CoordinatorCore(partitions_by_member, **self._core_options)
        self._model_spec, self._n_features = model_spec, n_features
        self._refs: dict[int, Any] = {}
        self._rebuild_scorer()
        # Partitions handed over by scaling: member -> {partition: offset it starts at}.
        self._handoff: dict[int, dict[int, int]] = {}
        # After the first complete snapshot, members added by scaling join the served
        # snapshot when they first publish (Serve builds a graph per member count then).
        self._served_complete = False
        # Recent shared-sample inputs (a new member's `distill` start learns the
        # ensemble's answers on them). Bounded like the windows.
        self._recent_x: deque[np.ndarray] = deque()
        self._recent_rows = 0
        self._scale_requests: deque[dict] = deque()
        self._scale_results: dict[int, dict] = {}
        self._scale_ids = 0
        self._version = 0
        self._latest: EnsembleSnapshot | None = None
        self._started = time.monotonic()
        self._history_interval_s = history_interval_s
        self._last_history = -float("inf")
        self._publishes = 0
        # (version, member's wall-clock send time, time this coordinator installed it) of
        # recent publishes: measures publish-to-serving delay and where it goes. Bounded.
        self._publish_times: deque[tuple[int, float, float]] = deque(maxlen=10_000)
        self._busy_s = 0.0  # time spent handling publishes: is the coordinator keeping up?
        self._store = CheckpointStore(checkpoint_uri, keep=2) if checkpoint_uri else None
        self._checkpoint_interval_s = checkpoint_interval_s
        self._checkpointed_at = -float("inf")  # the first publish checkpoints at once
        self.restarts = 0
        self.windows_restored = False
        self._restore()

    def _rebuild_scorer(self) -> None:
        """A scoring graph for the current member count, holding every snapshot held."""
        ids = self._core.member_ids
        self._scorer = EnsembleModel(self._model_spec, self._n_features, len(ids))
        self._scorer.warm_up()
        self._index = {mid: i for i, mid in enumerate(ids)}
        for mid, ref in self._refs.items():
            self._scorer.set_member_weights(self._index[mid], ray.get(ref).weights)

    def _restore(self) -> None:
        """Continue a previous incarnation's numbering and history (after a restart)."""
        checkpoint = self._store.latest(COORDINATOR_CHECKPOINT) if self._store else None
        if checkpoint is None:
            return
        meta = checkpoint.meta
        saved = meta.get("core", {}).get("membership")
        if saved is not None and {int(k): v for k, v in saved.items()} != {
            mid: r.partitions for mid, r in self._core.members.items()
        }:
            # The ensemble was scaled before the crash: its members now are the saved ones.
            self._core = CoordinatorCore(
                {int(k): list(v) for k, v in saved.items()}, **self._core_options
            )
            self._rebuild_scorer()
        self._handoff = {
            int(m): {int(p): int(o) for p, o in moves.items()}
            for m, moves in meta.get("handoff", {}).items()
        }
        # Not restored: the member refs are gone with the old process, and a snapshot of
        # whoever republishes first would renormalise the mix over a few members (the
        # noise member alone got weight 1.0). Replicas keep answering from their last
        # snapshot until every member has published to this process once.
        self._version = int(meta["version"]) + RESTART_VERSION_GAP
        self._core.history = list(meta["history"])
        self._core.history_thinned = int(meta.get("history_thinned", 0))
        self.restarts = int(meta.get("restarts", 0)) + 1
        self._started -= float(meta.get("elapsed_s", 0.0))
        try:
            self._core.restore(checkpoint.arrays, meta.get("core", {}))
            self.windows_restored = True
        except (ValueError, KeyError) as error:
            # Weights then start uniform and refill from the shared sample: worse than
            # the checkpointed ones for a while, never wrong.
            logger.warning("coordinator checkpoint windows not restored: %s", error)
        logger.warning(
            "coordinator restarted (restart %d): versions continue at %d, windows %s",
            self.restarts,
            self._version,
            "restored" if self.windows_restored else "empty",
        )
        self._checkpoint()  # a second crash must not reuse the same numbers

    def _checkpoint(self) -> None:
        if self._store is None:
            return
        arrays, core = self._core.state()
        meta = {
            "version": self._version,
            "history": self._core.history,
            "history_thinned": self._core.history_thinned,
            "restarts": self.restarts,
            "elapsed_s": time.monotonic() - self._started,
            "core": core,
            "handoff": {
                str(m): {str(p): o for p, o in moves.items()} for m, moves in self._handoff.items()
            },
        }
        self._store.save(COORDINATOR_CHECKPOINT, arrays, meta)
        self._checkpointed_at = time.monotonic()

    def publish(
        self,
        member_id: int,
        stats: dict,
        snapshot: MemberSnapshot | None = None,
        sample: SharedSample | None = None,
    ) -> int:
        """Take a member's stats, its shared-sample rows and optionally a new snapshot.

        Args:
            member_id: who publishes.
            stats: the member's counters (see `MemberCore.stats`).
            snapshot: the member's new weights. Passed by value: Ray inlines small
                arguments and moves large ones through the object store by itself. The
                coordinator then `ray.put`s it, so the object Serve reads is owned here
                and outlives the member that produced it.
            sample: rows sampled before the member trained on them, with their source
                partitions (see `SharedSample`).

        Returns:
            The ensemble version after this publish.
        """
        if member_id not in self._core.members:
            return self._version  # retired by a scaling step; its last word is too late
        began = time.perf_counter()
        if sample is not None and len(sample.y):
            self._score(sample)
        self._core.record_stats(member_id, stats)
        if snapshot is not None:
            self._scorer.set_member_weights(self._index[member_id], snapshot.weights)
            self._refs[member_id] = ray.put(snapshot)
            self._core.mark_snapshot(member_id)
        self._version += 1
        if snapshot is not None and "sent_at" in stats:
            self._publish_times.append((self._version, float(stats["sent_at"]), time.time()))
        now = time.monotonic()
        # The interval doubles with each halving of the history, so points stay even.
        interval = self._history_interval_s * 2**self._core.history_thinned
        if now - self._last_history >= interval:
            self._core.record_history(now - self._started)
            self._last_history = now
        self._latest = self._assemble_snapshot()
        self._publishes += 1
        if now - self._checkpointed_at >= self._checkpoint_interval_s:
            self._checkpoint()
        self._busy_s += time.perf_counter() - began
        return self._version

    def _score(self, sample: SharedSample) -> None:
        """Score every member's held snapshot on shared-sample inputs (rows or windows).

        The task's per-member outputs go to the core as they come: (n, M) probabilities
        (binary) or values (regression), (n, M, C) class probabilities (multiclass).
        """
        share = self._core.sample_share  # the core keeps no more; score no more
        x, y, partitions = (part[-share:] for part in sample)
        self._recent_x.append(x)
        self._recent_rows += len(x)
        while self._recent_rows - len(self._recent_x[0]) >= self._core.window:
            self._recent_rows -= len(self._recent_x.popleft())
        _, per_member = self._scorer.predict(x, np.zeros(len(self._index), np.float32))
        self._core.record_scores(per_member, y, partitions)

    def publish_times(self) -> list[tuple[int, float, float]]:
        """(version, wall time the member sent the snapshot, wall time it was installed)."""
        return list(self._publish_times)

    @ray.method(concurrency_group="serving")
    def latest_version(self) -> int:
        latest = self._latest
        return latest.version if latest is not None else 0

    @ray.method(concurrency_group="serving")
    def snapshot_if_newer(self, version: int) -> EnsembleSnapshot | None:
        """The newest snapshot if its version is above `version` (one call per poll)."""
        latest = self._latest
        return latest if latest is not None and latest.version > version else None

    def _assemble_snapshot(self) -> EnsembleSnapshot | None:
        """The snapshot Serve may use: None until every member has published once.

        Serving only complete ensembles keeps the replicas' graph shape fixed; a partial
        one (members publish their first snapshot at slightly different times) would make
        every replica build and trace a new graph per member count at start-up.
        """
        ids = self._core.member_ids
        if not self._served_complete and any(mid not in self._refs for mid in ids):
            return None
        self._served_complete = True
        ids = [mid for mid in ids if mid in self._refs]  # a new member joins on its first
        columns = [self._index[mid] for mid in ids]

        def served(weights: np.ndarray) -> np.ndarray | None:
            """The weights of the served members, summing to 1 (None: all 0)."""
            mixing = np.asarray(weights, np.float32)[columns]
            return mixing / mixing.sum() if mixing.sum() > 0 else None

        overall = served(self._core.mixing_weights())
        by_partition = {
            p: mixing
            for p, weights in self._core.partition_mixing().items()
            if (mixing := served(weights)) is not None
        }
        return EnsembleSnapshot(
            version=self._version,
            member_ids=tuple(ids),
            member_refs=tuple(self._refs[mid] for mid in ids),
            mixing=overall if overall is not None else np.full(len(ids), 1 / len(ids), np.float32),
            partitions=tuple(self._core.partitions),
            partition_mixing=by_partition,
        )

    # -- membership (scaling) -------------------------------------------------------------

    def assignment_of(self, member_id: int) -> dict | None:
        """What `member_id` reads now and the offsets partitions were handed to it at
        (None: not a member). A (re)starting member asks this first."""
        record = self._core.members.get(member_id)
        if record is None:
            return None
        handoff = self._handoff.get(member_id, {})
        return {
            "partitions": list(record.partitions),
            "handoff": {p: o for p, o in handoff.items() if p in record.partitions},
        }

    def assignment(self) -> dict[int, list[int]]:
        return {mid: list(r.partitions) for mid, r in self._core.members.items()}

    def add_members(self, member_ids: list[int]) -> None:
        """Take new members in (no partitions yet; `set_partitions` gives them some)."""
        for mid in member_ids:
            self._core.add_member(mid, [])
        self._rebuild_scorer()
        self._checkpoint()

    def set_partitions(self, member_id: int, partitions: list[int], handoff: dict[int, int]):
        """Record a move: `member_id` reads `partitions`, those in `handoff` from there."""
        self._core.set_partitions(member_id, partitions)
        self._handoff.setdefault(member_id, {}).update(handoff)
        self._checkpoint()

    def remove_member(self, member_id: int) -> None:
        """Retire a member: out of the weights and, from the next version, of Serve."""
        self._core.remove_member(member_id)
        self._refs.pop(member_id, None)
        self._handoff.pop(member_id, None)
        self._rebuild_scorer()
        self._version += 1
        self._latest = self._assemble_snapshot()
        self._checkpoint()

    def member_snapshot(self, member_id: int) -> MemberSnapshot | None:
        """The member's newest published snapshot (a `clone-best` start copies it)."""
        ref = self._refs.get(member_id)
        return None if ref is None else ray.get(ref)

    def distill_sample(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Recent shared-sample inputs and the ensemble's answers on them, as class
        indices (classification) or values (regression); None before any sample."""
        if not self._recent_x or self._latest is None:
            return None
        x = np.concatenate(list(self._recent_x))[-self._core.window :]
        mixing = np.zeros(len(self._index), np.float32)
        for mid, w in zip(self._latest.member_ids, self._latest.mixing, strict=True):
            mixing[self._index[mid]] = w
        mixed, _ = self._scorer.predict(x, mixing)
        mixed = np.asarray(mixed)
        task = self._model_spec.task
        if task == "multiclass":
            return x, mixed.argmax(axis=-1).astype(np.float32)
        if task == "binary":
            return x, (mixed.reshape(-1) > 0.5).astype(np.float32)
        return x, mixed.reshape(-1).astype(np.float32)

    # Scale requests from outside the driver (the `scale` command, the admin route) wait
    # here until the job's driver, which owns the member actors, carries them out.
    @ray.method(concurrency_group="serving")
    def request_scale(self, request: dict) -> int:
        self._scale_ids += 1
        self._scale_requests.append({**request, "id": self._scale_ids})
        return self._scale_ids

    @ray.method(concurrency_group="serving")
    def take_scale_request(self) -> dict | None:
        return self._scale_requests.popleft() if self._scale_requests else None

    @ray.method(concurrency_group="serving")
    def finish_scale_request(self, request_id: int, result: dict) -> None:
        self._scale_results[request_id] = result

    @ray.method(concurrency_group="serving")
    def scale_result(self, request_id: int) -> dict | None:
        """The step's result; None while it waits or runs."""
        if not 1 <= request_id <= self._scale_ids:
            return {"ok": False, "error": f"no scale request {request_id} was made"}
        return self._scale_results.get(request_id)

    def status(self) -> dict:
        summary = self._core.summary()
        summary["weights_version"] = self._version
        summary["coordinator"] = {
            "restarts": self.restarts,
            "windows_restored": self.windows_restored,
            "publishes": self._publishes,
            "busy_s": round(self._busy_s, 3),
            "mean_publish_ms": round(1000 * self._busy_s / max(self._publishes, 1), 3),
            **memory_mb(),
        }
        return summary

    def history(self) -> list[dict]:
        """Accuracy and weight history, with a final point recorded now."""
        self._core.record_history(time.monotonic() - self._started)
        return list(self._core.history)

    def weights(self) -> dict:
        """The overall weights, and each partition's own (member id -> weight)."""
        ids = self._core.member_ids

        def by_member(weights: np.ndarray) -> dict[str, float]:
            return {str(mid): float(w) for mid, w in zip(ids, weights, strict=True)}

        return {
            "version": self._version,
            "policy": self._core.policy_name,
            "weights": by_member(self._core.mixing_weights()),
            "partition_weights": {
                str(p): by_member(w) for p, w in self._core.partition_mixing().items()
            },
        }
