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
from typing import Any

import numpy as np
import ray

from actors.coordination import CoordinatorCore
from actors.ensemble_model import EnsembleModel
from actors.snapshot import EnsembleSnapshot, MemberSnapshot
from actors.specs import ModelSpec
from actors.tf_runtime import configure_tensorflow

__all__ = ["COORDINATOR_NAME", "CoordinatorActor"]

logger = logging.getLogger(__name__)

COORDINATOR_NAME = "online-ensemble-coordinator"


@ray.remote(num_cpus=0)
class CoordinatorActor:
    """Tracks members' recent accuracy, sets mixing weights, versions the ensemble snapshot.

    Args:
        partitions_by_member: member id -> partitions it reads.
        n_features: input width of the members' networks.
        model_spec: the members' architecture (to score the shared sample).
        window: shared-sample rows that count as recent.
        policy: weighting policy name.
        floor: minimum weight of an above-chance member.
        history_interval_s: how often a history point is recorded.
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
        history_interval_s: float = 0.2,
    ):
        configure_tensorflow(1)
        self._core = CoordinatorCore(
            partitions_by_member, window=window, policy=policy, floor=floor
        )
        ids = self._core.member_ids
        self._scorer = EnsembleModel(model_spec, n_features, len(ids))
        self._scorer.warm_up()
        self._index = {mid: i for i, mid in enumerate(ids)}
        self._refs: dict[int, Any] = {}
        self._version = 0
        self._started = time.monotonic()
        self._history_interval_s = history_interval_s
        self._last_history = -float("inf")
        self._publishes = 0
        self._busy_s = 0.0  # time spent handling publishes: is the coordinator keeping up?

    def publish(
        self,
        member_id: int,
        stats: dict,
        snapshot: MemberSnapshot | None = None,
        sample: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> int:
        """Take a member's stats, its shared-sample rows and optionally a new snapshot.

        Args:
            member_id: who publishes.
            stats: the member's counters (see `MemberCore.stats`).
            snapshot: the member's new weights. Passed by value: Ray inlines small
                arguments and moves large ones through the object store by itself. The
                coordinator then `ray.put`s it, so the object Serve reads is owned here
                and outlives the member that produced it.
            sample: (x, y) rows sampled before the member trained on them.

        Returns:
            The ensemble version after this publish.
        """
        began = time.perf_counter()
        if sample is not None and len(sample[1]):
            self._score(*sample)
        self._core.record_stats(member_id, stats)
        if snapshot is not None:
            self._scorer.set_member_weights(self._index[member_id], snapshot.weights)
            self._refs[member_id] = ray.put(snapshot)
            self._core.mark_snapshot(member_id)
        self._version += 1
        now = time.monotonic()
        if now - self._last_history >= self._history_interval_s:
            self._core.record_history(now - self._started)
            self._last_history = now
        self._publishes += 1
        self._busy_s += time.perf_counter() - began
        return self._version

    def _score(self, x: np.ndarray, y: np.ndarray) -> None:
        _, per_member = self._scorer.predict(x, np.zeros(len(self._index), np.float32))
        self._core.record_scores(per_member, y)

    def latest_version(self) -> int:
        return self._version

    def snapshot(self) -> EnsembleSnapshot | None:
        """The newest ensemble snapshot (only members that published one), or None."""
        ids = [mid for mid in self._core.member_ids if mid in self._refs]
        if not ids:
            return None
        weights = self._core.mixing_weights()
        mixing = np.array([weights[self._index[mid]] for mid in ids], dtype=np.float32)
        if mixing.sum() <= 0:
            mixing = np.full(len(ids), 1.0 / len(ids), np.float32)
        return EnsembleSnapshot(
            version=self._version,
            member_ids=tuple(ids),
            member_refs=tuple(self._refs[mid] for mid in ids),
            mixing=mixing / mixing.sum(),
        )

    def status(self) -> dict:
        summary = self._core.summary()
        summary["weights_version"] = self._version
        summary["coordinator"] = {
            "publishes": self._publishes,
            "busy_s": round(self._busy_s, 3),
            "mean_publish_ms": round(1000 * self._busy_s / max(self._publishes, 1), 3),
        }
        return summary

    def history(self) -> list[dict]:
        """Accuracy and weight history, with a final point recorded now."""
        self._core.record_history(time.monotonic() - self._started)
        return list(self._core.history)

    def weights(self) -> dict:
        return {
            "version": self._version,
            "policy": self._core.policy,
            "weights": {
                str(mid): float(w)
                for mid, w in zip(self._core.member_ids, self._core.mixing_weights(), strict=True)
            },
        }
