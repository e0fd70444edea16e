"""The coordinator's bookkeeping, without Ray: scores, recent accuracy, weights, history.

Two views of each member's accuracy (DESIGN rule 4):

* its own prequential accuracy on its own partition, reported by the member;
* its accuracy on the *shared evaluation sample*: a thin, recent, cross-partition
  sample of rows that members forward before training on them. Every member is scored
  on the same rows, with the snapshot Serve would use, so weights compare like with
  like even when partitions differ (one may be all noise).

Weights come from a named `WeightingPolicy` (``actors.weighting``) fed with every
member's predictions on the shared sample; a member with fewer than `min_eval_rows`
scored rows gets the average share of the others until it has a record.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.weighting import POLICIES, RecentAccuracy, make_policy

__all__ = ["CoordinatorCore", "MemberRecord"]


@dataclass
class MemberRecord:
    """What the coordinator knows about one member."""

    member_id: int
    partitions: list[int]
    rows: int = 0
    dead_letter: int = 0
    own_accuracy: float | None = None
    lag: int | None = None
    has_snapshot: bool = False
    done: bool = False
    shared: RecentAccuracy = field(default_factory=lambda: RecentAccuracy(2000))


class CoordinatorCore:
    """Recent accuracy per member and for the ensemble; the mixing weights they imply.

    Args:
        partitions_by_member: member id -> the source partitions it reads.
        window: rows of the shared evaluation sample that count as "recent".
        policy: weighting policy name (see `actors.weighting`).
        floor: minimum weight of an above-chance member.
        cap: maximum weight of any member.
        min_eval_rows: shared-sample rows a member needs before they set its weight.
        policy_params: the policy's own parameters (``temperature``, ``eta``).
    """

    def __init__(
        self,
        partitions_by_member: dict[int, list[int]],
        *,
        window: int = 2000,
        policy: str = "accuracy",
        floor: float = 0.0,
        cap: float = 1.0,
        min_eval_rows: int = 50,
        policy_params: dict[str, Any] | None = None,
    ):
        self.window = int(window)
        self.policy_name = policy
        self.members = {
            mid: MemberRecord(mid, list(parts), shared=RecentAccuracy(self.window))
            for mid, parts in partitions_by_member.items()
        }
        self.ensemble = RecentAccuracy(self.window)
        self.equal_weight = RecentAccuracy(self.window)
        self._labels: deque[float] = deque(maxlen=self.window)
        self.history: list[dict] = []
        common = {
            "window": self.window,
            "floor": floor,
            "cap": cap,
            "min_rows": min(int(min_eval_rows), self.window),
        }
        self.policy = make_policy(policy, len(self.members), **common, **(policy_params or {}))
        # Shadow policies: every other policy weighs the same members on the same shared
        # rows, so the report can say how each would have served on this very stream (the
        # fairest comparison there is: same stream, seed, members and snapshots). Uniform
        # needs no shadow: `equal_weight` already is it.
        self.shadows = {
            name: (make_policy(name, len(self.members), **common), RecentAccuracy(self.window))
            for name in POLICIES
            if name not in (policy, "uniform")
        }

    @property
    def member_ids(self) -> list[int]:
        return sorted(self.members)

    def record_stats(self, member_id: int, stats: dict) -> None:
        """Take a member's own counters (rows, dead letters, own recent accuracy, done)."""
        record = self.members[member_id]
        record.rows = int(stats.get("rows", record.rows))
        record.dead_letter = int(stats.get("dead_letter", record.dead_letter))
        record.own_accuracy = stats.get("recent_accuracy", record.own_accuracy)
        record.done = bool(stats.get("done", record.done))
        record.lag = stats.get("lag", record.lag)

    def mark_snapshot(self, member_id: int) -> None:
        self.members[member_id].has_snapshot = True

    def record_scores(self, probabilities: np.ndarray, labels: np.ndarray) -> None:
        """Score every member with a snapshot on shared-sample rows none has trained on.

        Args:
            probabilities: (n, members) positive-class probability of each member, in
                `member_ids` order (columns of members without a snapshot are ignored).
            labels: (n,) true labels.
        """
        labels = np.asarray(labels, dtype=np.float32).reshape(-1)
        if labels.size == 0:
            return
        ids = self.member_ids
        eligible = [i for i, mid in enumerate(ids) if self.members[mid].has_snapshot]
        if not eligible:
            return
        weights = self.mixing_weights()  # before observing: what Serve answered with
        predicted = probabilities > 0.5
        truth = labels > 0.5
        for i in eligible:
            self.members[ids[i]].shared.add(predicted[:, i] == truth)
        scored = np.zeros(len(ids), dtype=bool)
        scored[eligible] = True
        self.policy.observe(probabilities, labels, scored)
        for shadow, accuracy in self.shadows.values():
            shadow_mixed = probabilities @ shadow.weights(scored)
            accuracy.add((shadow_mixed > 0.5) == truth)
            shadow.observe(probabilities, labels, scored)
        mixed = probabilities @ weights
        equal = probabilities[:, eligible].mean(axis=1)
        self.ensemble.add((mixed > 0.5) == truth)
        self.equal_weight.add((equal > 0.5) == truth)
        self._labels.extend(labels.tolist())

    def chance(self) -> float:
        """Accuracy of always predicting the recent majority class (0.5 with no data)."""
        if not self._labels:
            return 0.5
        positive = float(np.mean(np.asarray(self._labels) > 0.5))
        return max(positive, 1.0 - positive)

    def mixing_weights(self) -> np.ndarray:
        """Current weights in `member_ids` order; members without a snapshot get 0."""
        eligible = np.array([self.members[mid].has_snapshot for mid in self.member_ids])
        if not eligible.any():
            return np.zeros(len(eligible))
        return self.policy.weights(eligible)

    def record_history(self, elapsed_s: float) -> dict:
        """Append one point of the accuracy and weight history (for the report and plot)."""
        weights = self.mixing_weights()
        point = {
            "rows": sum(r.rows for r in self.members.values()),
            "elapsed_s": round(float(elapsed_s), 3),
            "ensemble_accuracy": self.ensemble.value(),
            "equal_weight_accuracy": self.equal_weight.value(),
            "members": {
                str(mid): {"accuracy": self.members[mid].shared.value(), "weight": float(w)}
                for mid, w in zip(self.member_ids, weights, strict=True)
            },
        }
        self.history.append(point)
        return point

    def rows_per_s(self, span_s: float = 5.0) -> float | None:
        """Training rate over roughly the last `span_s` seconds of history."""
        if len(self.history) < 2:
            return None
        last = self.history[-1]
        start = self.history[0]
        for point in reversed(self.history[:-1]):
            start = point
            if last["elapsed_s"] - point["elapsed_s"] >= span_s:
                break
        elapsed = last["elapsed_s"] - start["elapsed_s"]
        return (last["rows"] - start["rows"]) / elapsed if elapsed > 0 else None

    def summary(self) -> dict:
        """Members and ensemble figures, in the report's shape."""
        weights = self.mixing_weights()
        members = []
        scores = self.policy.member_scores()
        for mid, w, score in zip(self.member_ids, weights, scores, strict=True):
            record = self.members[mid]
            members.append(
                {
                    "id": mid,
                    "partitions": record.partitions,
                    "rows": record.rows,
                    "dead_letter": record.dead_letter,
                    "recent_accuracy": record.shared.value(),
                    "own_recent_accuracy": record.own_accuracy,
                    "policy_score": score,
                    "lag": record.lag,
                    "eval_accuracy": record.shared.cumulative(),
                    "eval_rows": record.shared.total_rows,
                    "weight": float(w),
                    "done": record.done,
                }
            )
        member_totals = [
            float(acc)
            for mid in self.member_ids
            if (acc := self.members[mid].shared.cumulative()) is not None
        ]
        return {
            "members": members,
            "rows": sum(r.rows for r in self.members.values()),
            "rows_per_s": self.rows_per_s(),
            "ensemble": {
                "prequential_accuracy": self.ensemble.cumulative(),
                "equal_weight_accuracy": self.equal_weight.cumulative(),
                "best_member_accuracy": max(member_totals) if member_totals else None,
                "recent_accuracy": self.ensemble.value(),
                "eval_rows": self.ensemble.total_rows,
                "chance": self.chance(),
            },
            "policy": {
                "name": self.policy_name,
                "score": self.policy.score_name,
                # Prequential accuracy each policy would have had on the same rows.
                "accuracy_by_policy": {
                    "uniform": self.equal_weight.cumulative(),
                    self.policy_name: self.ensemble.cumulative(),
                    **{name: acc.cumulative() for name, (_, acc) in self.shadows.items()},
                },
            },
        }
