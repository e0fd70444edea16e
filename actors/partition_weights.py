"""One weighting policy over the whole shared sample, and one per source partition.

Why per partition: when partitions carry different concepts (a region whose customers
behave differently, a sensor that drifted, a feed that is pure noise), the member that
is right depends on where a row came from. One weight per member for every row then
gains on one partition's rows what it gives back on another's, and a uniform mean is the
best compromise (measured in `docs/benchmarks.md`, "Weighting policies"). Every
shared-sample row knows its source partition, so the coordinator can score each member
on each partition's rows alone and weigh the members for that partition's rows: the
member trained on a drifted partition leads there and nowhere else, and a member that is
wrong only on one partition's rows loses weight only for them.

`PartitionWeighting` keeps the `overall` policy (all shared rows; the weights for a
request that names no partition) and, lazily, one policy of the same kind and settings
per partition seen. A partition's own weights exist once one of the eligible members has
`min_rows` rows in that partition's window.

They are not always better. Where partitions share one concept and differ only in
noise, a partition's window holds a fraction of the rows and its weights are noisier
than the overall ones, for no gain (measured: -0.1 points on the accuracy harness's
agrawal_partitioned). So each partition also keeps, prequentially, how the two mixes did
on its recent shared rows (each row scored with both before either policy learns it),
and its own weights are used only while they mixed strictly better there: a choice by
the same test-then-train evidence the weights themselves come from.

Example:
    >>> import numpy as np
    >>> weighting = PartitionWeighting("accuracy", 2, min_rows=4, window=16)
    >>> labels = np.array([0.0, 1.0] * 4)
    >>> right, wrong = np.where(labels == 1, 0.9, 0.1), np.where(labels == 1, 0.1, 0.9)
    >>> # Member 0 is right on partition 0's rows, member 1 on partition 1's.
    >>> outputs = np.concatenate([np.stack([right, wrong], 1), np.stack([wrong, right], 1)])
    >>> both = np.array([True, True])
    >>> for _ in range(2):  # the second time, the partitions' own weights prove better
    ...     weighting.observe(outputs, np.tile(labels, 2), both, partitions=np.repeat([0, 1], 8))
    >>> weighting.weights(both, partition=0).tolist(), weighting.weights(both, 1).tolist()
    ([1.0, 0.0], [0.0, 1.0])
    >>> weighting.weights(both).tolist()  # overall: each is right on half the rows
    [0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from actors.weighting import (
    POLICIES,
    WeightingPolicy,
    make_policy,
    mix_outputs,
    recent_scores,
    row_scores,
)

__all__ = ["PartitionWeighting"]

_OVERALL = "overall."
_PARTITION = "partition."
_TRIAL = "trial."


class _Trial:
    """How a partition's own weights and the overall ones mixed on its recent rows."""

    def __init__(self, task: str, window: int) -> None:
        self.task = task
        self.own, self.overall = recent_scores(task, window), recent_scores(task, window)

    def add(
        self, outputs: np.ndarray, labels: np.ndarray, own: np.ndarray, overall: np.ndarray
    ) -> None:
        self.own.add(row_scores(self.task, mix_outputs(outputs, own), labels))
        self.overall.add(row_scores(self.task, mix_outputs(outputs, overall), labels))

    def own_is_better(self) -> bool:
        own, overall = self.own.value(), self.overall.value()
        if own is None or overall is None:
            return False
        # Hits for classification (higher is better), squared errors for regression.
        return own < overall if self.task == "regression" else own > overall

    def state(self) -> dict[str, np.ndarray]:
        arrays = {}
        for name, tracker in (("own", self.own), ("overall", self.overall)):
            recent, totals = tracker.state()
            arrays[f"{name}.recent"] = recent
            arrays[f"{name}.totals"] = np.array([totals["total_rows"], totals["total"]])
        return arrays

    def load_state(self, arrays: Mapping[str, Any]) -> None:
        for name, tracker in (("own", self.own), ("overall", self.overall)):
            rows, total = np.asarray(arrays[f"{name}.totals"], np.float64).tolist()
            tracker.load_state(arrays[f"{name}.recent"], {"total_rows": rows, "total": total})


class PartitionWeighting:
    """A named weighting policy over every shared row and over each partition's rows.

    Args:
        name: a key of `actors.weighting.POLICIES`.
        n_members: number of members (columns of what `observe` receives).
        by_partition: keep per-partition policies (False: `weights` always answers the
            overall ones, whatever partition is asked for).
        task: ``binary``, ``multiclass`` or ``regression``.
        **params: the policy's parameters (see `make_policy`); every partition's policy
            gets the same.

    Raises:
        ConfigError: as `make_policy`.
    """

    def __init__(
        self,
        name: str,
        n_members: int,
        *,
        by_partition: bool = True,
        task: str = "binary",
        **params: Any,
    ) -> None:
        self.name = name
        self.task = task
        self.by_partition = bool(by_partition)
        self.overall = make_policy(name, n_members, task=task, **params)
        self._params = dict(params)
        self.partitions: dict[int, WeightingPolicy] = {}
        self.trials: dict[int, _Trial] = {}

    def __repr__(self) -> str:
        return (
            f"PartitionWeighting({self.overall!r}, by_partition={self.by_partition}, "
            f"partitions={sorted(self.partitions)})"
        )

    @property
    def n_members(self) -> int:
        return self.overall.n_members

    @property
    def score_name(self) -> str:
        return self.overall.score_name

    def observe(
        self,
        outputs: np.ndarray,
        labels: np.ndarray,
        scored: np.ndarray,
        partitions: np.ndarray | None = None,
    ) -> None:
        """Add scored shared rows to the overall windows and to their partitions' windows.

        Args:
            outputs, labels, scored: as `WeightingPolicy.observe`.
            partitions: (n,) source partition of each row; None: the overall windows only.

        Raises:
            ValueError: as `WeightingPolicy.observe`, or if `partitions` is not (n,).
        """
        if not self.by_partition or partitions is None:
            self.overall.observe(outputs, labels, scored)
            return
        partitions = np.asarray(partitions).reshape(-1)
        if partitions.shape != (len(labels),):
            raise ValueError(
                f"partitions must have one entry per row ({len(labels)}), got {partitions.shape}"
            )
        overall = self.overall.weights(scored)  # before it learns these rows
        self.overall.observe(outputs, labels, scored)  # before the trials: checks the shapes
        outputs, labels = np.asarray(outputs), np.asarray(labels)
        for partition in (int(p) for p in np.unique(partitions).tolist()):
            rows = partitions == partition
            policy = self._policy_of(partition)
            own = self._raw_own(scored, partition)
            if own is not None:  # both mixes on rows neither policy has learned
                trial = self.trials.setdefault(partition, _Trial(self.task, policy.window))
                trial.add(outputs[rows], labels[rows], own, overall)
            policy.observe(outputs[rows], labels[rows], scored)

    def weights(self, eligible: np.ndarray, partition: int | None = None) -> np.ndarray:
        """Mixing weights for `partition`'s rows (its own while they mix better there,
        else the overall ones), or the overall weights for `partition` None."""
        own = self.own_weights(eligible, partition) if partition is not None else None
        return own if own is not None else self.overall.weights(eligible)

    def own_weights(self, eligible: np.ndarray, partition: int) -> np.ndarray | None:
        """`partition`'s own weights while they mixed better than the overall ones on its
        recent shared rows; None otherwise, before it has a record, or when
        per-partition weighting is off."""
        trial = self.trials.get(partition)
        if trial is None or not trial.own_is_better():
            return None
        return self._raw_own(eligible, partition)

    def partition_weights(self, eligible: np.ndarray) -> dict[int, np.ndarray]:
        """Every partition whose own weights are in use, and those weights."""
        own = {p: self.own_weights(eligible, p) for p in sorted(self.partitions)}
        return {p: w for p, w in own.items() if w is not None}

    def _raw_own(self, eligible: np.ndarray, partition: int) -> np.ndarray | None:
        """`partition`'s policy's weights, or None while no eligible member has
        `min_rows` rows of it (or per-partition weighting is off)."""
        policy = self.partitions.get(partition) if self.by_partition else None
        if policy is None:
            return None
        eligible = np.asarray(eligible, dtype=bool)
        if not (eligible & (policy.rows_held >= policy.min_rows)).any():
            return None
        return policy.weights(eligible)

    def row_weights(self, eligible: np.ndarray, partitions: np.ndarray | None) -> np.ndarray:
        """(n, n_members) weights each row is mixed with (its partition's), or (1,
        n_members) overall weights for `partitions` None (broadcasts over the rows)."""
        overall = self.overall.weights(eligible)
        if partitions is None:
            return overall[None, :]
        partitions = np.asarray(partitions).reshape(-1)
        result = np.tile(overall, (partitions.size, 1))
        for partition in np.unique(partitions).tolist():
            own = self.own_weights(eligible, int(partition))
            if own is not None:
                result[partitions == partition] = own
        return result

    # -- the `WeightingPolicy` surface the coordinator uses (overall figures) ------------

    def member_scores(self) -> list[float | None]:
        return self.overall.member_scores()

    def member_accuracies(self) -> list[float | None]:
        return self.overall.member_accuracies()

    def resize(self, n_members: int) -> None:
        for policy in self._all():
            policy.resize(n_members)

    def drop(self, index: int) -> None:
        self.overall.drop(index)  # raises for the last member, before anything changes
        for policy in self.partitions.values():
            policy.drop(index)

    def state(self) -> dict[str, Any]:
        """Every policy's `state()` and every trial's windows, as plain arrays; keys
        prefixed ``overall.``, ``partition.P.`` or ``trial.P.``."""
        state = {f"{_OVERALL}{k}": v for k, v in self.overall.state().items()}
        for partition, policy in self.partitions.items():
            state.update({f"{_PARTITION}{partition}.{k}": v for k, v in policy.state().items()})
        for partition, trial in self.trials.items():
            state.update({f"{_TRIAL}{partition}.{k}": v for k, v in trial.state().items()})
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take back what `state` returned (also after `np.savez`/`np.load`).

        Raises:
            ValueError: if the overall policy's state is missing or does not fit, or a
                partition's does not; nothing is changed then.
        """
        policy_class = POLICIES[self.name]
        overall = policy_class.from_state(_with_prefix(state, _OVERALL))
        partitions = {
            p: policy_class.from_state(_with_prefix(state, f"{_PARTITION}{p}."))
            for p in _partitions_in(state, _PARTITION)
        }
        if any(p.n_members != overall.n_members for p in partitions.values()):
            raise ValueError("the per-partition policies' member counts differ from the overall")
        trials = {}
        for partition in _partitions_in(state, _TRIAL):
            window = partitions[partition].window if partition in partitions else overall.window
            trials[partition] = _Trial(self.task, window)
            try:
                trials[partition].load_state(_with_prefix(state, f"{_TRIAL}{partition}."))
            except KeyError as error:
                raise ValueError(f"partition {partition}'s trial state lacks {error}") from None
        self.overall = overall
        self.partitions = partitions if self.by_partition else {}
        self.trials = trials if self.by_partition else {}

    def _policy_of(self, partition: int) -> WeightingPolicy:
        if partition not in self.partitions:
            self.partitions[partition] = make_policy(
                self.name, self.overall.n_members, task=self.task, **self._params
            )
        return self.partitions[partition]

    def _all(self) -> list[WeightingPolicy]:
        return [self.overall, *self.partitions.values()]


def _with_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _partitions_in(state: Mapping[str, Any], prefix: str) -> list[int]:
    """The partition ids P of keys ``{prefix}P.<name>``."""
    return sorted({int(k[len(prefix) :].split(".", 1)[0]) for k in state if k.startswith(prefix)})
