"""The coordinator's bookkeeping, without Ray: scores, recent accuracy, weights, history.

Two views of each member's accuracy (DESIGN rule 4):

* its own prequential accuracy on its own partition, reported by the member;
* its accuracy on the *shared evaluation sample*: a thin, recent, cross-partition
  sample of rows that members forward before training on them. Every member is scored
  on the same rows, with the snapshot Serve would use, so weights compare like with
  like even when partitions differ (one may be all noise).

Weights come from a named `WeightingPolicy` (``actors.weighting``) fed with every
member's predictions on the shared sample; a member with fewer than `min_eval_rows`
scored rows gets the average share of the others until it has a record. Each shared row
knows its source partition, so the policy is also kept per partition
(`actors.partition_weights`): a row, or a request that names its partition, is mixed
with that partition's weights; the overall weights serve everything else.

The task sets what a scored row says. Classification (``binary``, ``multiclass``)
counts hits: the predicted class (``p > 0.5``, or the argmax) is the label, and the
figures are accuracies. Regression keeps squared errors, and the figures are RMSEs
(``*_error`` keys; the ``*_accuracy`` keys stay, as None, for the report's shape).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.errors import ConfigError
from actors.partition_weights import PartitionWeighting
from actors.specs import TASKS
from actors.weighting import (
    POLICIES,
    RecentAccuracy,
    RecentMean,
    mix_outputs,
    mix_rows,
    recent_scores,
    row_scores,
)

__all__ = ["CoordinatorCore", "MemberRecord"]


@dataclass
class MemberRecord:
    """What the coordinator knows about one member."""

    member_id: int
    partitions: list[int]
    rows: int = 0
    dead_letter: int = 0
    own_accuracy: float | None = None
    own_error: float | None = None
    lag: int | None = None
    has_snapshot: bool = False
    done: bool = False
    shared: RecentMean = field(default_factory=lambda: RecentAccuracy(2000))
    """Its shared-sample hits (classification) or squared errors (regression)."""


class CoordinatorCore:
    """Recent accuracy (or error) per member and for the ensemble; the weights they imply.

    Args:
        partitions_by_member: member id -> the source partitions it reads.
        window: rows of the shared evaluation sample that count as "recent".
        policy: weighting policy name (see `actors.weighting`).
        floor: minimum weight of an above-chance member.
        cap: maximum weight of any member.
        min_eval_rows: shared-sample rows a member needs before they set its weight.
        policy_params: the policy's own parameters (``temperature``, ``eta``).
        task: what the members predict, ``binary``, ``multiclass`` or ``regression``;
            it sets the shape `record_scores` takes and the figures `summary` reports.
        max_history: history points kept; past it the history is halved (every other
            point goes), so a run of any length keeps a bounded history of all of it.
        by_partition: also weigh members per source partition (`PartitionWeighting`);
            False mixes every row with the overall weights.

    Raises:
        ConfigError: for an unknown task, max_history < 2, or a policy setting out of
            range.
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
        task: str = "binary",
        max_history: int = 2_000,
        by_partition: bool = True,
    ):
        if task not in TASKS:
            raise ConfigError(f"task ({task!r}) must be one of {', '.join(TASKS)}")
        self.task = task
        self.window = int(window)
        self.policy_name = policy
        self.members = {
            mid: MemberRecord(mid, list(parts), shared=self._tracker())
            for mid, parts in partitions_by_member.items()
        }
        self.retired: dict[int, MemberRecord] = {}  # counters of members scaled away
        self.ensemble = self._tracker()
        self.equal_weight = self._tracker()
        # The policy's overall weights on every row, whatever its partition: what a
        # request that names no partition is answered with.
        self.overall_weight = self._tracker()
        self._labels: deque[float] = deque(maxlen=self.window)
        self.history: list[dict] = []
        if max_history < 2:
            raise ConfigError(f"max_history must be >= 2 points, got {max_history}")
        self.max_history = int(max_history)
        self.history_thinned = 0  # times the history was halved (see `record_history`)
        self.by_partition = bool(by_partition)
        common = {
            "window": self.window,
            "floor": floor,
            "cap": cap,
            "min_rows": min(int(min_eval_rows), self.window),
        }
        self._settings: dict[str, Any] = {
            "task": task,
            "by_partition": self.by_partition,
            **common,
        }
        self._policy_params = dict(policy_params or {})
        self.policy = self._weighting(policy, self._policy_params)
        # Shadow policies: every other policy weighs the same members on the same shared
        # rows, so the report can say how each would have served on this very stream (the
        # fairest comparison there is: same stream, seed, members and snapshots). Uniform
        # needs no shadow: `equal_weight` already is it.
        self.shadows = {
            name: (self._weighting(name, {}), self._tracker())
            for name in POLICIES
            if name not in (policy, "uniform")
        }

    @property
    def member_ids(self) -> list[int]:
        return sorted(self.members)

    # -- membership changes (scaling) --------------------------------------------------

    def add_member(self, member_id: int, partitions: list[int]) -> None:
        """Take a new member in: an empty window, and the average share until it has one.

        Ids only grow (a new id is above every current one), so the policies' columns,
        which follow `member_ids` order, grow at the end.

        Raises:
            ConfigError: if the id is not above every current and retired member's.
        """
        used = [*self.members, *self.retired]
        if used and member_id <= max(used):
            raise ConfigError(
                f"a new member's id must be above every id used so far ({max(used)}), "
                f"got {member_id}"
            )
        self.members[member_id] = MemberRecord(member_id, list(partitions), shared=self._tracker())
        for policy in self._policies().values():
            policy.resize(len(self.members))

    def remove_member(self, member_id: int) -> None:
        """Retire a member: its windows go, its counters stay (in `retired`) for the totals.

        Raises:
            ConfigError: if it is not a current member, or the last one.
        """
        if member_id not in self.members:
            raise ConfigError(f"member {member_id} is not in the ensemble ({self.member_ids})")
        index = self.member_ids.index(member_id)
        for policy in self._policies().values():
            policy.drop(index)  # raises for the last member, before anything changes
        record = self.members.pop(member_id)
        record.partitions = []
        self.retired[member_id] = record

    def set_partitions(self, member_id: int, partitions: list[int]) -> None:
        """Record which partitions a member reads now (after a reassignment)."""
        self.members[member_id].partitions = list(partitions)

    @property
    def rows(self) -> int:
        """Rows learned by every member, retired ones included."""
        return sum(r.rows for r in self.members.values()) + sum(
            r.rows for r in self.retired.values()
        )

    @property
    def sample_share(self) -> int:
        """Most rows of one sample that enter the shared windows (the newest are kept).

        The windows are cross-partition: a sample holds one member's partitions only, so
        one large sample (a member's first publish after the coordinator was away) would
        otherwise replace the whole window with one partition's rows and make every
        member look as good as it is there, a noise partition making all look like chance.
        """
        return max(1, self.window // len(self.members))

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def record_stats(self, member_id: int, stats: dict) -> None:
        """Take a member's own counters (rows, dead letters, own recent figure, done)."""
        record = self.members[member_id]
        record.rows = int(stats.get("rows", record.rows))
        record.dead_letter = int(stats.get("dead_letter", record.dead_letter))
        record.own_accuracy = stats.get("recent_accuracy", record.own_accuracy)
        record.own_error = stats.get("recent_error", record.own_error)
        record.done = bool(stats.get("done", record.done))
        record.lag = stats.get("lag", record.lag)

    def mark_snapshot(self, member_id: int) -> None:
        self.members[member_id].has_snapshot = True

    def record_scores(
        self, outputs: np.ndarray, labels: np.ndarray, partitions: np.ndarray | None = None
    ) -> None:
        """Score every member with a snapshot on shared-sample rows none has trained on.

        Args:
            outputs: each member's answer on the n rows, in `member_ids` order (columns
                of members without a snapshot are ignored): ``binary`` (n, members)
                positive-class probabilities; ``multiclass`` (n, members, classes)
                class probabilities; ``regression`` (n, members) predictions.
            labels: (n,) true labels (0/1, class indices, or regression targets).
                Only the newest `sample_share` rows are kept.
            partitions: (n,) source partition of each row; None: unknown (the rows
                count for the overall weights only).

        Raises:
            ValueError: if `outputs` does not have the task's shape for n rows and the
                members, `partitions` is not (n,), or (from the policy) a label is not
                one of the task's.
        """
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        if labels.size == 0:
            return
        outputs = np.asarray(outputs)
        ids = self.member_ids
        multiclass = self.task == "multiclass"
        if outputs.ndim != (3 if multiclass else 2) or outputs.shape[:2] != (labels.size, len(ids)):
            expected = f"({labels.size}, {len(ids)}{', classes' if multiclass else ''})"
            raise ValueError(
                f"{self.task} outputs for {labels.size} labels and {len(ids)} members must "
                f"have shape {expected}, got {outputs.shape}"
            )
        if partitions is not None:
            partitions = np.asarray(partitions).reshape(-1)
            if partitions.shape != labels.shape:
                raise ValueError(
                    f"partitions must have one entry per label ({labels.size}), "
                    f"got shape {partitions.shape}"
                )
            partitions = partitions[-self.sample_share :]
        outputs, labels = outputs[-self.sample_share :], labels[-self.sample_share :]
        eligible = [i for i, mid in enumerate(ids) if self.members[mid].has_snapshot]
        if not eligible:
            return
        scored = np.zeros(len(ids), dtype=bool)
        scored[eligible] = True
        # Before observing: what Serve answered these rows with, each by its partition.
        row_weights = self.policy.row_weights(scored, partitions)
        overall = self.policy.weights(scored)
        self.policy.observe(outputs, labels, scored, partitions)  # first: checks labels
        for i in eligible:
            self.members[ids[i]].shared.add(row_scores(self.task, outputs[:, i], labels))
        for shadow, figure in self.shadows.values():
            mixed = mix_rows(outputs, shadow.row_weights(scored, partitions))
            figure.add(row_scores(self.task, mixed, labels))
            shadow.observe(outputs, labels, scored, partitions)
        self.ensemble.add(row_scores(self.task, mix_rows(outputs, row_weights), labels))
        self.overall_weight.add(row_scores(self.task, mix_outputs(outputs, overall), labels))
        self.equal_weight.add(row_scores(self.task, outputs[:, eligible].mean(axis=1), labels))
        self._labels.extend(labels.tolist())

    def chance(self) -> float | None:
        """Accuracy of always predicting the recent majority class.

        For regression 0.0: the skill of predicting the mean (see `WeightingPolicy`).
        With no rows yet: 0.5 for binary, None for multiclass (no classes seen).
        """
        if self.regression:
            return 0.0
        if not self._labels:
            return 0.5 if self.task == "binary" else None
        labels = np.asarray(self._labels)
        if self.task == "binary":
            positive = float(np.mean(labels > 0.5))
            return max(positive, 1.0 - positive)
        _, counts = np.unique(labels, return_counts=True)
        return float(counts.max() / labels.size)

    def mixing_weights(self, partition: int | None = None) -> np.ndarray:
        """Current weights in `member_ids` order; members without a snapshot get 0.

        Args:
            partition: the weights for this source partition's rows (the overall ones
                until it has a record of its own); None: the overall weights.
        """
        eligible = self._eligible()
        if not eligible.any():
            return np.zeros(len(eligible))
        return self.policy.weights(eligible, partition)

    def partition_mixing(self) -> dict[int, np.ndarray]:
        """Each partition with weights of its own, and those weights (`member_ids` order)."""
        eligible = self._eligible()
        return self.policy.partition_weights(eligible) if eligible.any() else {}

    @property
    def partitions(self) -> list[int]:
        """Every partition the current members read."""
        return sorted({p for r in self.members.values() for p in r.partitions})

    def _eligible(self) -> np.ndarray:
        return np.array([self.members[mid].has_snapshot for mid in self.member_ids], dtype=bool)

    def record_history(self, elapsed_s: float) -> dict:
        """Append one point of the accuracy (or error) and weight history.

        Classification points carry ``ensemble_accuracy``, ``equal_weight_accuracy`` and
        each member's ``accuracy``; regression points have those as None and carry the
        RMSEs as ``ensemble_error``, ``equal_weight_error`` and each member's ``error``.
        """
        weights = self.mixing_weights()
        members: dict[str, dict] = {}
        for mid, w in zip(self.member_ids, weights, strict=True):
            shared = self.members[mid].shared
            if self.regression:
                members[str(mid)] = {"accuracy": None, "error": _rmse(shared.value())}
            else:
                members[str(mid)] = {"accuracy": shared.value()}
            members[str(mid)]["weight"] = float(w)
            # The member's own rows: places its drift events (counted in its rows) on the
            # stream axis of the report's plot.
            members[str(mid)]["rows"] = self.members[mid].rows
        point: dict[str, Any] = {
            "rows": self.rows,
            "elapsed_s": round(float(elapsed_s), 3),
        }
        if self.regression:
            point["ensemble_accuracy"] = point["equal_weight_accuracy"] = None
            point["ensemble_error"] = _rmse(self.ensemble.value())
            point["equal_weight_error"] = _rmse(self.equal_weight.value())
        else:
            point["ensemble_accuracy"] = self.ensemble.value()
            point["equal_weight_accuracy"] = self.equal_weight.value()
        point["members"] = members
        self.history.append(point)
        if len(self.history) > self.max_history:
            # Every other point goes (the newest stays): memory and checkpoints stay
            # bounded however long the run, and the history still spans all of it. The
            # caller doubles its interval per halving (`history_thinned`), so points stay
            # evenly spaced instead of the oldest thinning again and again.
            self.history = [*self.history[:-1:2], self.history[-1]]
            self.history_thinned += 1
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
        """Members and ensemble figures, in the report's shape.

        Classification reports accuracies (``recent_accuracy``, ``prequential_accuracy``,
        ...). Regression reports RMSEs under the matching ``*_error`` keys, each member's
        ``recent_skill`` (``1 - mse / var(y)`` over its recent shared rows), and keeps
        the ``*_accuracy`` keys as None; ``policy.error_by_policy`` replaces
        ``policy.accuracy_by_policy``.
        """
        weights = self.mixing_weights()
        scores = self.policy.member_scores()
        skills = self.policy.member_accuracies() if self.regression else [None] * len(scores)
        members = [
            self._member_summary(self.members[mid], float(w), score, skill)
            for mid, w, score, skill in zip(self.member_ids, weights, scores, skills, strict=True)
        ]
        figure = "error" if self.regression else "accuracy"
        score_name = self.policy.score_name
        ids = self.member_ids
        by_partition = {
            str(p): {str(mid): round(float(w), 6) for mid, w in zip(ids, weights, strict=True)}
            for p, weights in self.partition_mixing().items()
        }
        return {
            "members": members,
            "rows": self.rows,
            "retired": [
                {"id": r.member_id, "rows": r.rows, "dead_letter": r.dead_letter}
                for r in self.retired.values()
            ],
            "rows_per_s": self.rows_per_s(),
            "ensemble": self._ensemble_summary(),
            "policy": {
                "name": self.policy_name,
                "score": "skill" if self.regression and score_name == "accuracy" else score_name,
                "by_partition": self.by_partition,
                # Weights of each partition with a record of its own (member id -> weight).
                "partition_weights": by_partition,
                # Prequential accuracy (RMSE) each policy would have had on the same rows.
                f"{figure}_by_policy": {
                    "uniform": self._overall(self.equal_weight),
                    self.policy_name: self._overall(self.ensemble),
                    **{name: self._overall(fig) for name, (_, fig) in self.shadows.items()},
                },
            },
        }

    def _member_summary(
        self, record: MemberRecord, weight: float, score: float | None, skill: float | None
    ) -> dict:
        shared = record.shared
        entry: dict[str, Any] = {
            "id": record.member_id,
            "partitions": record.partitions,
            "rows": record.rows,
            "dead_letter": record.dead_letter,
            "recent_accuracy": None if self.regression else shared.value(),
            "own_recent_accuracy": record.own_accuracy,
            "policy_score": score,
            "lag": record.lag,
            "eval_accuracy": None if self.regression else shared.cumulative(),
            "eval_rows": shared.total_rows,
            "weight": weight,
            "done": record.done,
        }
        if self.regression:
            entry["recent_error"] = _rmse(shared.value())
            entry["recent_skill"] = skill
            entry["own_recent_error"] = record.own_error
            entry["eval_error"] = _rmse(shared.cumulative())
        return entry

    def _ensemble_summary(self) -> dict:
        member_totals = [
            total
            for mid in self.member_ids
            if (total := self._overall(self.members[mid].shared)) is not None
        ]
        if not self.regression:
            return {
                "prequential_accuracy": self.ensemble.cumulative(),
                "equal_weight_accuracy": self.equal_weight.cumulative(),
                "overall_weight_accuracy": self.overall_weight.cumulative(),
                "best_member_accuracy": max(member_totals) if member_totals else None,
                "recent_accuracy": self.ensemble.value(),
                "eval_rows": self.ensemble.total_rows,
                "chance": self.chance(),
            }
        return {
            "prequential_accuracy": None,
            "equal_weight_accuracy": None,
            "overall_weight_accuracy": None,
            "best_member_accuracy": None,
            "recent_accuracy": None,
            "eval_rows": self.ensemble.total_rows,
            "chance": self.chance(),
            "prequential_error": _rmse(self.ensemble.cumulative()),
            "equal_weight_error": _rmse(self.equal_weight.cumulative()),
            "overall_weight_error": _rmse(self.overall_weight.cumulative()),
            "best_member_error": min(member_totals) if member_totals else None,
            "recent_error": _rmse(self.ensemble.value()),
        }

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Everything the weights depend on, as plain arrays and JSON (for a checkpoint).

        The recent-accuracy windows of members, ensemble and shadows, every policy's
        windows, the recent labels (chance), each member's last counters and the
        membership the state belongs to. Which members hold a snapshot is left out: a
        restarted coordinator holds none until each member publishes again.

        Returns:
            (arrays, meta): arrays for `np.savez` (no object arrays, so no pickle), and
            JSON-ready metadata. `restore` takes both back.
        """
        arrays: dict[str, np.ndarray] = {"labels": np.asarray(self._labels, np.float64)}
        totals: dict[str, dict[str, float]] = {}
        for key, tracker in self._trackers().items():
            arrays[f"tracker.{key}"], totals[key] = tracker.state()
        for name, policy in self._policies().items():
            for key, value in policy.state().items():
                arrays[f"policy.{name}.{key}"] = np.asarray(value)
        meta = {
            "task": self.task,
            "policy": self.policy_name,
            "membership": {str(mid): r.partitions for mid, r in self.members.items()},
            "totals": totals,
            "members": {
                str(mid): {
                    "rows": r.rows,
                    "dead_letter": r.dead_letter,
                    "own_accuracy": r.own_accuracy,
                    "own_error": r.own_error,
                    "lag": r.lag,
                    "done": r.done,
                }
                for mid, r in self.members.items()
            },
            "retired": {
                str(mid): {"rows": r.rows, "dead_letter": r.dead_letter}
                for mid, r in self.retired.items()
            },
        }
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Take back what `state` returned, if it belongs to this membership and policy.

        Raises:
            ValueError: if the state is for other members, partitions, task or policy, or
                an array is missing or misshapen; nothing is changed then.
        """
        membership = {str(mid): r.partitions for mid, r in self.members.items()}
        saved = {str(k): list(v) for k, v in meta.get("membership", {}).items()}
        if saved != membership or meta.get("task") != self.task:
            raise ValueError(
                f"the state is for members {saved} ({meta.get('task')}); this coordinator "
                f"has {membership} ({self.task})"
            )
        if meta.get("policy") != self.policy_name:
            raise ValueError(
                f"the state is for policy {meta.get('policy')!r}, not {self.policy_name!r}"
            )
        policies = {}
        for name in self._policies():
            prefix = f"policy.{name}."
            part = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            policies[name] = self._weighting(name, self._params_of(name))
            policies[name].load_state(part)
        trackers = self._trackers()
        missing = [key for key in trackers if f"tracker.{key}" not in arrays]
        if missing or "labels" not in arrays:
            raise ValueError(f"the state lacks the recent windows of {missing or ['labels']}")
        # Everything is checked and built: now change this object.
        self.policy = policies.pop(self.policy_name)
        for name, rebuilt in policies.items():
            self.shadows[name] = (rebuilt, self.shadows[name][1])
        for key, tracker in trackers.items():
            tracker.load_state(arrays[f"tracker.{key}"], meta["totals"][key])
        self._labels.clear()
        self._labels.extend(np.asarray(arrays["labels"], np.float64).tolist())
        for mid, counters in meta.get("members", {}).items():
            record = self.members[int(mid)]
            record.rows = int(counters["rows"])
            record.dead_letter = int(counters["dead_letter"])
            record.own_accuracy = counters["own_accuracy"]
            record.own_error = counters["own_error"]
            record.lag = counters["lag"]
            record.done = bool(counters["done"])
        self.retired = {
            int(mid): MemberRecord(
                int(mid), [], rows=int(c["rows"]), dead_letter=int(c["dead_letter"])
            )
            for mid, c in meta.get("retired", {}).items()
        }

    def _trackers(self) -> dict[str, RecentMean]:
        """Every recent-figure window by a stable name (members, ensemble, shadows)."""
        trackers = {f"member-{mid}": r.shared for mid, r in self.members.items()}
        trackers["ensemble"] = self.ensemble
        trackers["equal_weight"] = self.equal_weight
        trackers["overall_weight"] = self.overall_weight
        trackers.update({f"shadow-{name}": fig for name, (_, fig) in self.shadows.items()})
        return trackers

    def _policies(self) -> dict[str, PartitionWeighting]:
        return {self.policy_name: self.policy, **{n: p for n, (p, _) in self.shadows.items()}}

    def _weighting(self, name: str, params: dict[str, Any]) -> PartitionWeighting:
        return PartitionWeighting(name, len(self.members), **self._settings, **params)

    def _params_of(self, name: str) -> dict[str, Any]:
        """The policy's own parameters: the job's for its policy, defaults for shadows."""
        return self._policy_params if name == self.policy_name else {}

    def _tracker(self) -> RecentMean:
        return recent_scores(self.task, self.window)

    def _overall(self, tracker: RecentMean) -> float | None:
        """Accuracy, or RMSE for regression, over every row the tracker has seen."""
        total = tracker.cumulative()
        return _rmse(total) if self.regression else total


def _rmse(mean_squared_error: float | None) -> float | None:
    return None if mean_squared_error is None else math.sqrt(mean_squared_error)
