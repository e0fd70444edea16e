"""The ensemble of a job, replayed in one process so that every row's answer can be scored.

A running job scores its ensemble on the shared sample only (5% of the rows). The
accuracy harness needs the ensemble's answer on *every* row before any member learned it,
in a fixed order that River's learners see too, so it drives the job's own parts, without
Ray, in a deterministic loop:

* one `MemberCore` per member, on the partitions `assign_partitions` gives it, built from
  `JobConfig.member_config()` exactly as a member actor builds it (model, strategy,
  best-snapshot guard, drift response, sampling);
* one `CoordinatorCore`, built as the coordinator actor builds it, that scores the
  members on their shared samples and sets the mixing weights;
* the stream order is a round-robin over members, one batch each (the order a single
  reader of all partitions has, see `single_model`);
* before a member learns a batch, every member answers it with the network it would serve
  (`MemberCore.served_outputs`) and the ensemble's answer is their mix under the
  coordinator's current weights (and, beside it, their plain mean: the uniform ensemble);
* every `publish_rows` rows a member "publishes": it offers a snapshot to its guard, and
  its sampled rows are scored by every member and handed to the coordinator.

Knowledge flow between members (`KNOWLEDGE`, an experiment of the harness, not a job
setting: neither helped in `docs/benchmarks.md`, so the product has none):

* ``none``: members share nothing but their answers (what a job does);
* ``shared-sample``: once a member's sampled rows are scored, every *other* member also
  learns them (thin: ``eval_fraction`` of the rows, never a partition's bulk);
* ``peer-average``: members start from one initialisation, and at each publish the
  publishing member's weights move `PEER_PULL` of the way to the mixing-weighted mean of
  all members' (periodic averaging, as in federated learning).

Two simplifications, both in the ensemble's favour by little: members answer with their
live networks, not with snapshots up to one publish old; and publishing is by rows, not
by the clock. The replay measures learning, not Serve (`bench serve` measures that).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.coordination import CoordinatorCore
from actors.errors import ConfigError
from actors.member_core import MemberCore
from actors.weighting import mix_outputs, row_scores
from pipelines.bench.accuracy_streams import KNOWLEDGE
from pipelines.config import JobConfig
from pipelines.job import assign_partitions
from pipelines.sources.base import StreamSource
from pipelines.sources.registry import open_source

__all__ = ["KNOWLEDGE", "EnsembleRun", "replay_ensemble", "replay_single_model"]

PEER_PULL = 0.5


@dataclass
class EnsembleRun:
    """Per-row scores of the ensemble and its parts, with the rows in stream order.

    Attributes:
        x, y: every row the members learned, in stream order (what River learns too).
        ensemble, uniform: per-row scores of the weighted and of the equal-weight mix.
        members: member id -> its per-row scores on *every* row (not only its own).
        partition_of_row: which partition each row came from.
        drift_rows: stream positions where a partition's concept switched, earliest
            first, partitions switching within one round of batches counted once.
        learn_s: seconds the members spent reading and learning (serially here; a job
            runs them in parallel), after each member's first batch. The ensemble's
            answers, a measurement only, are not in it.
        learn_rows: rows learned in those seconds (every row but the first batches: the
            first call of a member's step traces its graph, a one-off that every bench
            here leaves out of a rate, as River's clock leaves out building its learner).
        final_weights: the coordinator's mixing weights at the end.
        batch_rows: the rows each batch asked for, in stream order (members' batches
            grow, `actors.batch_schedule`); the single model reads the same batches.
    """

    x: np.ndarray
    y: np.ndarray
    ensemble: np.ndarray
    uniform: np.ndarray
    members: dict[int, np.ndarray]
    partition_of_row: np.ndarray
    drift_rows: list[int]
    learn_s: float
    learn_rows: int
    final_weights: dict[int, float] = field(default_factory=dict)
    batch_rows: list[int] = field(default_factory=list)


def _open(config: JobConfig) -> tuple[StreamSource, dict[int, list[int]]]:
    source = open_source(config.source_spec())
    return source, assign_partitions(source.partitions(), config.members)


def replay_ensemble(
    config: JobConfig, *, publish_rows: int = 4096, knowledge: str = "none"
) -> EnsembleRun:
    """Run `config`'s ensemble over its whole (bounded) stream; see the module docstring.

    Args:
        config: the job's settings (source, members, model, strategy, policy, ...).
        publish_rows: rows a member learns between two publishes. A member of a job
            publishes every `publish_interval_s` (0.25 s) or `publish_every_rows`; at the
            ~17,000 rows/s a member trained at on this machine with one optimizer step per
            batch, 0.25 s was about 4,096 rows (fewer with 8-row steps, so this is the
            staler end of what a job serves).
        knowledge: how members learn from each other (`KNOWLEDGE`, module docstring).

    Raises:
        ConfigError: for an unknown `knowledge`.
    """
    if knowledge not in KNOWLEDGE:
        raise ConfigError(f"knowledge ({knowledge!r}) must be one of {', '.join(KNOWLEDGE)}")
    source, assignment = _open(config)
    member_config = config.member_config()
    members = {
        mid: MemberCore(mid, [source.open(p) for p in parts], source.schema, member_config)
        for mid, parts in assignment.items()
    }
    if knowledge == "peer-average":
        # Averaging only makes sense between networks of one initialisation (two
        # independently initialised ones have their hidden units in unrelated orders).
        start = members[min(members)].learner.get_weights()
        for member in members.values():
            member.learner.set_weights(start)
    task = config.task
    coordinator = CoordinatorCore(
        assignment,
        task=task,
        window=config.window,
        policy=config.policy,
        floor=config.weight_floor,
        cap=config.weight_cap,
        policy_params=config.policy_params(),
        by_partition=config.weights_by_partition,
    )
    ids = coordinator.member_ids
    scores: dict[str, list[np.ndarray]] = {"ensemble": [], "uniform": []}
    member_scores: dict[int, list[np.ndarray]] = {mid: [] for mid in ids}
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    partitions: list[np.ndarray] = []
    since_publish = dict.fromkeys(ids, 0)
    batch_rows: list[int] = []
    clock = _LearnClock()
    active = list(ids)
    while active:
        for mid in list(active):
            member = members[mid]
            rows = member.next_batch_rows()
            started = time.perf_counter()
            prepared = member.read_batch(rows)
            read_s = time.perf_counter() - started
            if prepared is None:
                active.remove(mid)
                continue
            batch_rows.append(rows)
            if len(prepared.y):
                outputs = _answers(members, ids, prepared.x)
                # The weights Serve mixes a request naming this batch's partition with.
                weights = coordinator.mixing_weights(prepared.partition)
                if weights.sum() <= 0:  # nothing published yet: Serve has no snapshot
                    weights = np.full(len(ids), 1.0 / len(ids))
                scores["ensemble"].append(
                    row_scores(task, mix_outputs(outputs, weights), prepared.y)
                )
                scores["uniform"].append(row_scores(task, outputs.mean(axis=1), prepared.y))
                for i, other in enumerate(ids):
                    member_scores[other].append(row_scores(task, outputs[:, i], prepared.y))
                xs.append(prepared.x)
                ys.append(prepared.y)
                partitions.append(np.full(len(prepared.y), prepared.partition, np.int32))
            started = time.perf_counter()
            member.learn_batch(prepared)
            clock.add(mid, read_s + time.perf_counter() - started, len(prepared.y))
            since_publish[mid] += len(prepared.y)
            if since_publish[mid] >= publish_rows or member.done:
                since_publish[mid] = 0
                _publish(coordinator, members, ids, mid, knowledge)
    x, y = np.concatenate(xs), np.concatenate(ys)
    partition_of_row = np.concatenate(partitions)
    weights = coordinator.mixing_weights()
    return EnsembleRun(
        x=x,
        y=y,
        ensemble=np.concatenate(scores["ensemble"]).astype(np.float64),
        uniform=np.concatenate(scores["uniform"]).astype(np.float64),
        members={m: np.concatenate(s).astype(np.float64) for m, s in member_scores.items()},
        partition_of_row=partition_of_row,
        drift_rows=_drift_rows(source, partition_of_row, members, config),
        learn_s=clock.seconds,
        learn_rows=clock.rows,
        final_weights={mid: round(float(w), 4) for mid, w in zip(ids, weights, strict=True)},
        batch_rows=batch_rows,
    )


def replay_single_model(
    config: JobConfig, expected_y: np.ndarray, batch_rows: list[int]
) -> tuple[np.ndarray, float]:
    """One member of the same settings reading *every* partition: the model that sees all
    rows, in the same order as the ensemble (its reader round-robins over partitions one
    batch at a time, as the ensemble's loop does).

    It reads the ensemble's batches (`EnsembleRun.batch_rows`), so the stream order is
    the same. That favours it a little: by its own schedule, learning every row, its
    batches would grow to full size in a quarter of the stream a member takes.

    Returns:
        Its per-row scores (answered with its served network before learning each batch)
        and its rows per second reading and learning, after its first batch (as in
        `EnsembleRun.learn_s`).

    Raises:
        RuntimeError: if its rows came in a different order from `expected_y` (the
            comparison would then not be on the same stream).
    """
    source, _ = _open(config)
    member = MemberCore(
        0, [source.open(p) for p in source.partitions()], source.schema, config.member_config()
    )
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    clock = _LearnClock()
    next_rows = iter(batch_rows)
    while True:
        started = time.perf_counter()
        prepared = member.read_batch(next(next_rows, None))
        read_s = time.perf_counter() - started
        if prepared is None:
            break
        if len(prepared.y):
            outputs = member.served_outputs(prepared.x)
            scores.append(row_scores(config.task, outputs, prepared.y))
            labels.append(prepared.y)
        started = time.perf_counter()
        member.learn_batch(prepared)
        clock.add(0, read_s + time.perf_counter() - started, len(prepared.y))
    if not np.array_equal(np.concatenate(labels), expected_y):
        raise RuntimeError("the single model read the stream in a different order")
    return np.concatenate(scores).astype(np.float64), clock.rows_per_s


@dataclass
class _LearnClock:
    """Seconds and rows of reading and learning, leaving out each member's first batch."""

    seconds: float = 0.0
    rows: int = 0
    started: set[int] = field(default_factory=set)

    def add(self, member_id: int, seconds: float, rows: int) -> None:
        if member_id not in self.started:
            self.started.add(member_id)  # its first step: the graph is traced here
            return
        self.seconds += seconds
        self.rows += rows

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def _answers(members: dict[int, MemberCore], ids: list[int], x: np.ndarray) -> np.ndarray:
    """Every member's served answer on `x`: (n, members) or (n, members, classes)."""
    return np.stack([members[mid].served_outputs(x) for mid in ids], axis=1)


def _publish(
    coordinator: CoordinatorCore,
    members: dict[int, MemberCore],
    ids: list[int],
    mid: int,
    knowledge: str,
) -> None:
    """What a member's publish does to the coordinator (stats, snapshot, scored sample),
    then the `knowledge` exchange, if any."""
    member = members[mid]
    member.snapshot_weights()  # offers the network to the best-snapshot guard
    coordinator.record_stats(mid, member.stats())
    coordinator.mark_snapshot(mid)
    sample = member.take_sample()
    if sample is not None:
        sample_x, sample_y, sample_partitions = sample
        coordinator.record_scores(_answers(members, ids, sample_x), sample_y, sample_partitions)
        if knowledge == "shared-sample":
            for other in ids:
                if other != mid:
                    members[other].learner.learn_many(sample_x, sample_y)
    if knowledge == "peer-average":
        weights = coordinator.mixing_weights()
        if weights.sum() > 0:
            networks = [members[other].learner.get_weights() for other in ids]
            mean = [
                sum(w * net[k] for w, net in zip(weights, networks, strict=True)) / weights.sum()
                for k in range(len(networks[0]))
            ]
            own = networks[ids.index(mid)]
            member.learner.set_weights(
                [(1 - PEER_PULL) * o + PEER_PULL * m for o, m in zip(own, mean, strict=True)]
            )


def _drift_rows(
    source: Any, partition_of_row: np.ndarray, members: dict[int, MemberCore], config: JobConfig
) -> list[int]:
    """Stream positions of the partitions' concept switches (synthetic sources say where)."""
    switch_offset = getattr(source, "switch_offset", None)
    if switch_offset is None:
        return []
    positions = []
    for partition in np.unique(partition_of_row).tolist():
        offset = switch_offset(partition)
        if offset is None:
            continue
        rows_of_partition = np.flatnonzero(partition_of_row == partition)
        if offset < rows_of_partition.size:
            positions.append(int(rows_of_partition[offset]))
    one_round = len(members) * config.batch_size
    merged: list[int] = []
    for position in sorted(positions):
        if not merged or position - merged[-1] > one_round:
            merged.append(position)
    return merged
