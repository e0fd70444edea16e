"""`online-ensemble bench train`: a member actor's training rate against a bare step.

One run, one stream (partition 0 of ``synthetic://hyperplane``, 10 features, seeded) and
one network (`build_model(ModelSpec(), 10)`: the MLP every member trains), four ways:

* ``fit_per_chunk``: the usual Keras loop, ``model.fit(x, y, epochs=1, verbose=0)`` on
  each successive 100-row chunk (Adam, binary cross-entropy, the spec's learning rate).
* ``train_on_batch``: ``model.train_on_batch`` on batches of the bench batch size.
  This and the two below take one optimizer step per batch (``step_rows`` = batch; a
  job's default learns a batch in 8-row steps, see `OnlineLearner._in_steps`) on the
  batch's rows alone (``finetune``; a job's default ``replay`` adds old rows to each step).
* ``bare_step``: `OnlineLearner.learn_many` on rows already in memory (no Ray, no source,
  no validation): the limit a member can approach.
* ``member_actor``: one real `MemberActor` inside a local Ray, publishing to a real
  `CoordinatorActor`: source -> Arrow -> validation -> sampling -> step -> publish.

Every contender is warmed up (the first call traces a graph) before it is timed. The
member's rate is read from its own stats (rows learned / elapsed), from the first stats
taken after its warm-up to the stats `run` returns, so its trace does not count either.
The in-process contenders run with TensorFlow's thread pools sized to one CPU, as a
member's are (`configure_tensorflow(1)`), and at the member's scheduling niceness, so
the comparison is per CPU and other tenants' load slows every contender alike.
``bare_step`` is timed in two halves, before and after the member, to bracket drift in a
shared machine's load; ``fit_per_chunk`` and ``train_on_batch`` are slow, so they run
for a fixed time instead of over every row.

Ray: the bench joins the Ray this process already initialised (a test fixture), or
starts a small local one as `Job` does (loopback, no dashboard; Ray's local token
authentication left on) with two CPUs, and shuts it down at the end.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import ray
from rich.table import Table

from actors.coordinator import CoordinatorActor
from actors.errors import ConfigError
from actors.learner import OnlineLearner
from actors.member import MemberActor
from actors.models import build_model
from actors.specs import ModelSpec
from actors.tf_runtime import configure_tensorflow
from pipelines.config import JobConfig
from pipelines.job import NAMESPACE, assign_partitions
from pipelines.sources import SourceSpec, open_source

__all__ = [
    "CHUNK_ROWS",
    "CONTENDERS",
    "TARGETS",
    "Measurement",
    "result_table",
    "run_train_bench",
    "start_member",
    "time_member_run",
]

logger = logging.getLogger(__name__)

CHUNK_ROWS = 100
"""Rows per `model.fit` call in ``fit_per_chunk``: the usual per-chunk online loop."""

CONTENDERS = ("fit_per_chunk", "train_on_batch", "bare_step", "member_actor")

TARGETS = {"member_actor/bare_step": 0.8, "member_actor/fit_per_chunk": 100.0}
"""The issue's acceptance ratios at batch 256 (reported, never tuned for)."""

WARMUP_STEPS = 3  # untimed calls before each in-process contender: the first one traces
MEMBER_WARMUP_BATCHES = 10  # the member's rate counts from after this many batches...
MIN_BATCHES = 4 * MEMBER_WARMUP_BATCHES  # ...so it needs well over that many to measure
OBJECT_STORE_BYTES = 128 * 1024**2  # snapshots are a few KB; the store needs little
MEMBER_NICENESS = 5  # `MemberActor`'s default, which `Job` keeps


@dataclass(frozen=True)
class Measurement:
    """Rows trained in `seconds` of wall time."""

    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def __add__(self, other: Measurement) -> Measurement:
        return Measurement(self.rows + other.rows, self.seconds + other.seconds)


def job_config(batch: int, rows: int, seed: int) -> JobConfig:
    """The job settings the member runs with: `run`'s defaults, one member, this batch size
    learned in one optimizer step.

    Raises:
        ConfigError: on a batch size or row count the job itself would refuse, or too
            few rows to time the member after its warm-up.
    """
    # One optimizer step per batch (step_rows = batch) on the batch's rows alone
    # (finetune: no replayed rows), as train_on_batch takes: the bench compares the cost
    # around a step, not how many steps, or how many rows per step, a batch is learned in.
    config = JobConfig.build(
        members=1,
        rows=rows,
        batch_size=batch,
        step_rows=batch,
        strategy="finetune",
        seed=seed,
    )
    least = MIN_BATCHES * max(batch, CHUNK_ROWS)
    if rows < least:
        raise ConfigError(
            f"rows ({rows}) must be at least {least} ({MIN_BATCHES} batches of "
            f"max(batch, {CHUNK_ROWS}) rows): the member is timed only after its first "
            f"{MEMBER_WARMUP_BATCHES} batches"
        )
    return config


def source_spec(config: JobConfig) -> SourceSpec:
    """The stream as `Job` opens it for this config."""
    return SourceSpec(
        uri=config.source, partitions=config.partition_count, rows=config.rows, seed=config.seed
    )


def stream_arrays(spec: SourceSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every row of partition 0 as float32 features and labels, validated as a member would."""
    source = open_source(spec)
    reader = source.open(0)
    xs, ys = [], []
    try:
        while (read := reader.read_batch(65_536)) is not None:
            valid = source.schema.validate(
                read.batch, partition=read.partition, first_offset=read.first_offset
            )
            xs.append(valid.x)
            ys.append(valid.y)
    finally:
        reader.close()
    return np.concatenate(xs), np.concatenate(ys)


def _chunks(x: np.ndarray, y: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(y) - size + 1, size):
        yield x[start : start + size], y[start : start + size]


def _timed(
    step: Callable[[np.ndarray, np.ndarray], object],
    chunks: Iterator[tuple[np.ndarray, np.ndarray]],
    seconds: float | None = None,
) -> Measurement:
    """Warm `step` up on the first chunks, then time it until `seconds` or the chunks end."""
    for _ in range(WARMUP_STEPS):
        step(*next(chunks))
    rows = 0
    began = time.perf_counter()
    for x, y in chunks:
        step(x, y)
        rows += len(y)
        if seconds is not None and time.perf_counter() - began >= seconds:
            break
    return Measurement(rows, time.perf_counter() - began)


def _compiled_model(spec: ModelSpec, n_features: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_model(spec, n_features)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate),
        loss="binary_crossentropy",
    )
    return model


def time_fit_per_chunk(
    x: np.ndarray, y: np.ndarray, spec: ModelSpec, seconds: float, seed: int = 0
) -> Measurement:
    """``model.fit(epochs=1, verbose=0)`` per 100-row chunk, for about `seconds`."""
    model = _compiled_model(spec, x.shape[1], seed)
    return _timed(
        lambda xc, yc: model.fit(xc, yc, epochs=1, verbose=0),
        _chunks(x, y, CHUNK_ROWS),
        seconds,
    )


def time_train_on_batch(
    x: np.ndarray, y: np.ndarray, spec: ModelSpec, batch: int, seconds: float, seed: int = 0
) -> Measurement:
    """``model.train_on_batch`` per `batch` rows, for about `seconds`."""
    model = _compiled_model(spec, x.shape[1], seed)
    return _timed(model.train_on_batch, _chunks(x, y, batch), seconds)


def start_member(config: JobConfig, niceness: int = MEMBER_NICENESS) -> tuple[Any, Any]:
    """Start a coordinator and one member on `config`'s stream, as `Job.start` does.

    The member gets one CPU, and `niceness` (the job leaves `MemberActor`'s default, 5).

    Returns:
        (member, coordinator) handles, both constructed (TensorFlow loaded, source open).
    """
    spec = source_spec(config)
    source = open_source(spec)
    owned = assign_partitions(source.partitions(), config.members)
    # Unnamed, unlike the job's: the bench must not collide with a job in the same Ray.
    coordinator = CoordinatorActor.remote(  # type: ignore[attr-defined]
        owned,
        source.schema.n_features,
        config.model_spec(),
        window=config.window,
        policy=config.policy,
        floor=config.weight_floor,
        cap=config.weight_cap,
        policy_params=config.policy_params(),
    )
    member = MemberActor.options(num_cpus=1).remote(  # type: ignore[attr-defined]
        0, spec, owned[0], config.member_config(), coordinator, num_cpus=1, niceness=niceness
    )
    ray.get([coordinator.latest_version.remote(), member.ready.remote()])
    return member, coordinator


def time_member_run(member: Any, batch: int, poll_s: float = 0.01) -> tuple[Measurement, dict]:
    """Run `member` to the end of its stream; time it from its first stats after warm-up.

    Returns:
        The steady-state measurement and the stats `run` returned.
    """
    run = member.run.remote()
    warm: dict | None = None
    while warm is None:
        stats = ray.get(member.stats.remote())
        if stats["rows"] >= MEMBER_WARMUP_BATCHES * batch and stats["publishes"] >= 1:
            warm = stats
        elif ray.wait([run], timeout=poll_s)[0]:
            raise ConfigError(
                "the member finished its stream during its warm-up; give the bench more rows"
            )
    final = ray.get(run)
    return (
        Measurement(final["rows"] - warm["rows"], final["elapsed_s"] - warm["elapsed_s"]),
        final,
    )


@contextmanager
def local_ray() -> Iterator[None]:
    """Use the Ray this process already joined, or start a small local one for the bench."""
    if ray.is_initialized():
        yield
        return
    # As `Job` starts an embedded Ray (local token authentication is Ray's default), with
    # the bench's fixed two CPUs and a small object store.
    ray.init(
        namespace=NAMESPACE,
        logging_level=logging.WARNING,
        log_to_driver=False,
        num_cpus=2,
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


def run_train_bench(
    *,
    batch: int = 256,
    rows: int = 1_000_000,
    seconds: float = 3.0,
    seed: int = 0,
    niceness: int = MEMBER_NICENESS,
) -> dict[str, Any]:
    """Run the four contenders (see the module docstring) and return their figures.

    Args:
        batch: rows per step of ``train_on_batch``, ``bare_step`` and the member.
        rows: rows of the stream; ``bare_step`` and the member train on all of them.
        seconds: how long ``fit_per_chunk`` and ``train_on_batch`` are timed.
        seed: seeds the stream and the networks.
        niceness: scheduling niceness of the member and of this process's timing thread
            (the job runs members at 5): other tenants' load then slows every contender
            alike. 0 leaves this process as it is.

    Raises:
        ConfigError: on a bad argument, before anything starts.
    """
    config = job_config(batch, rows, seed)
    if not seconds > 0:
        raise ConfigError(f"seconds ({seconds}) must be > 0")
    if not 0 <= niceness <= 19:
        raise ConfigError(f"niceness ({niceness}) must be in 0..19")
    spec = config.model_spec()
    with local_ray():
        # After Ray forked its processes (they keep the job's priorities), before
        # TensorFlow starts its threads (they inherit this thread's).
        _lower_priority(niceness)
        tf_threads = configure_tensorflow(1)  # before the first op: one CPU, like a member
        x, y = stream_arrays(source_spec(config))
        measured = {
            "fit_per_chunk": time_fit_per_chunk(x, y, spec, seconds, seed),
            "train_on_batch": time_train_on_batch(x, y, spec, batch, seconds, seed),
        }
        learner = OnlineLearner(x.shape[1], spec, seed=seed, strategy=config.strategy_spec())
        half = (len(y) // (2 * batch)) * batch
        bare_before = _timed(learner.learn_many, _chunks(x[:half], y[:half], batch))
        member, coordinator = start_member(config, niceness)
        try:
            measured["member_actor"], member_stats = time_member_run(member, batch)
        finally:
            ray.kill(member)
            ray.kill(coordinator)
        bare_after = _timed(learner.learn_many, _chunks(x[half:], y[half:], batch))
    measured["bare_step"] = bare_before + bare_after
    rates = {name: measured[name].rows_per_s for name in CONTENDERS}
    ratios = {
        "member_actor/bare_step": rates["member_actor"] / rates["bare_step"],
        "member_actor/fit_per_chunk": rates["member_actor"] / rates["fit_per_chunk"],
        "bare_step/fit_per_chunk": rates["bare_step"] / rates["fit_per_chunk"],
    }
    return {
        "batch": batch,
        "chunk_rows": CHUNK_ROWS,
        "source": config.source,
        "rows": rows,
        "seed": seed,
        "rows_per_s": rates,
        "ratios": ratios,
        "targets": dict(TARGETS),
        "targets_met": {name: ratios[name] >= target for name, target in TARGETS.items()},
        "rows_timed": {name: measured[name].rows for name in CONTENDERS},
        "seconds_timed": {name: round(measured[name].seconds, 3) for name in CONTENDERS},
        "bare_step_halves_rows_per_s": [bare_before.rows_per_s, bare_after.rows_per_s],
        "member": {
            "rows_per_s_including_warmup": member_stats["rows_per_s"],
            "batches": member_stats["batches"],
            "publishes": member_stats["publishes"],
            "tf_threads": member_stats["tf_threads"],
        },
        "tf_threads": tf_threads,
        "niceness": niceness,
    }


def _lower_priority(niceness: int) -> None:
    """Raise this thread's niceness to `niceness` (never lower it: that needs privilege)."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness > current:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def result_table(result: dict[str, Any]) -> Table:
    """The figures as a `rich` table, one row per contender."""
    labels = {
        "fit_per_chunk": f"model.fit per {result['chunk_rows']}-row chunk",
        "train_on_batch": f"train_on_batch, batch {result['batch']}",
        "bare_step": f"bare learn_many, batch {result['batch']}",
        "member_actor": f"MemberActor in Ray, batch {result['batch']}",
    }
    member = result["rows_per_s"]["member_actor"]
    table = Table(title=f"bench train: {result['source']}, {result['rows']:,} rows")
    table.add_column("contender")
    table.add_column("rows/s", justify="right")
    table.add_column("rows timed", justify="right")
    table.add_column("member / this", justify="right")
    for name in CONTENDERS:
        rate = result["rows_per_s"][name]
        table.add_row(
            labels[name],
            f"{rate:,.0f}",
            f"{result['rows_timed'][name]:,}",
            f"{member / rate:.2f}" if rate > 0 else "-",
        )
    targets = ", ".join(
        f"{name} {result['ratios'][name]:.2f} (target >= {target:g}: "
        f"{'met' if result['targets_met'][name] else 'not met'})"
        for name, target in result["targets"].items()
    )
    table.caption = targets
    return table
