"""`online-ensemble bench train`: a member actor's training rate against a bare step.

One run, one stream (partition 0 of ``synthetic://hyperplane``, 10 features, seeded) and
one network (`build_model(ModelSpec(), 10)`: the MLP every member trains), five ways.
Every contender takes one optimizer step per `batch` rows (256 by default); the member
reads `read_rows` rows at a time (4,096 by default, a multiple of `batch`) and learns
them as ``read_rows / batch`` such steps inside one compiled call, as a job's member
learns a read in `step_rows`-row steps:

* ``fit_per_chunk``: the usual Keras loop, ``model.fit(x, y, epochs=1, verbose=0)`` on
  each successive 100-row chunk (Adam, binary cross-entropy, the spec's learning rate).
* ``train_on_batch``: ``model.train_on_batch`` on batches of the bench batch size.
  This and the two below take one optimizer step per batch (``step_rows`` = batch; a
  job's default learns a batch in 8-row steps, see `OnlineLearner._in_steps`) on the
  batch's rows alone (``finetune``; a job's default ``replay`` adds old rows to each step).
* ``bare_step``: `OnlineLearner.learn_many` on rows already in memory (no Ray, no source,
  no validation), one call per `batch` rows: the compiled step called as a loop over
  batches calls it.
* ``bare_step_read``: the same learner and the same steps, one call per `read_rows` rows
  (the steps run inside the call): the limit for a member that reads `read_rows` at a
  time, since it differs from the member only by everything the member does around the
  call. With ``read_rows == batch`` it is ``bare_step``'s loop again.
* ``member_actor``: one real `MemberActor` inside a local Ray, publishing to a real
  `CoordinatorActor`: source -> Arrow -> validation -> sampling -> step -> publish.

Why two bare loops: a call of the compiled step costs a fixed ~0.5 ms of dispatch besides
its arithmetic (`docs/benchmarks.md`), as much as a 256-row step of the default MLP
computes. ``member_actor / bare_step`` says how the member compares with the plain
per-batch loop; ``member_actor / bare_step_read`` says what the member's own work around
the step costs, against the fastest way to run the same steps.

Every contender is warmed up (the first call traces a graph) before it is timed. The
member's rate is read from its own stats (rows learned / elapsed), from the first stats
taken after its warm-up to the stats `run` returns, so its trace does not count either.
The in-process contenders run with TensorFlow's thread pools sized to one CPU, as a
member's are (`configure_tensorflow(1)`), and at the member's scheduling niceness, so
the comparison is per CPU and other tenants' load slows every contender alike.
``bare_step`` and ``bare_step_read`` are each timed in two quarters of the stream, in the
order bare_step, bare_step_read, member, bare_step_read, bare_step, to bracket drift in a
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

CONTENDERS = ("fit_per_chunk", "train_on_batch", "bare_step", "bare_step_read", "member_actor")

TARGETS = {
    "member_actor/bare_step": 0.8,
    "member_actor/bare_step_read": 0.8,
    "member_actor/fit_per_chunk": 100.0,
}
"""The issue's acceptance ratios at batch 256, and its 0.8 held against the limit at the
member's read size as well (reported, never tuned for)."""

WARMUP_STEPS = 3  # untimed calls before each in-process contender: the first one traces
MEMBER_WARMUP_READS = 10  # the member's rate counts from after this many reads...
MIN_READS = 4 * MEMBER_WARMUP_READS  # ...so it needs well over that many to measure
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


def job_config(batch: int, rows: int, seed: int, read_rows: int | None = None) -> JobConfig:
    """The job settings the member runs with: `run`'s defaults, one member, reads of
    `read_rows` (default: `batch`) learned in optimizer steps of `batch` rows.

    Raises:
        ConfigError: on a batch size or row count the job itself would refuse, a read
            size that is not a multiple of the batch, or too few rows to time the member
            after its warm-up.
    """
    read_rows = batch if read_rows is None else read_rows
    if read_rows < batch or read_rows % batch:
        raise ConfigError(
            f"read_rows ({read_rows}) must be a multiple of batch ({batch}): every contender "
            "takes whole batch-row steps"
        )
    # One optimizer step per `batch` rows (step_rows = batch) on those rows alone
    # (finetune: no replayed rows), as train_on_batch takes: the bench compares the cost
    # around a step, not how many steps, or how many rows per step, a row is learned in.
    # Every read is `read_rows` from the first (batch_start: no small first reads).
    config = JobConfig.build(
        members=1,
        rows=rows,
        batch_size=read_rows,
        batch_start=read_rows,
        step_rows=batch,
        strategy="finetune",
        seed=seed,
    )
    least = MIN_READS * max(read_rows, CHUNK_ROWS)
    if rows < least:
        raise ConfigError(
            f"rows ({rows}) must be at least {least} ({MIN_READS} reads of "
            f"max(read_rows, {CHUNK_ROWS}) rows): the member is timed only after its first "
            f"{MEMBER_WARMUP_READS} reads"
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


def time_member_run(member: Any, read_rows: int, poll_s: float = 0.01) -> tuple[Measurement, dict]:
    """Run `member` to the end of its stream; time it from its first stats after warm-up.

    Returns:
        The steady-state measurement and the stats `run` returned.
    """
    run = member.run.remote()
    warm: dict | None = None
    while warm is None:
        stats = ray.get(member.stats.remote())
        if stats["rows"] >= MEMBER_WARMUP_READS * read_rows and stats["publishes"] >= 1:
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
    read_rows: int = 4096,
    rows: int = 1_000_000,
    seconds: float = 3.0,
    seed: int = 0,
    niceness: int = MEMBER_NICENESS,
) -> dict[str, Any]:
    """Run the five contenders (see the module docstring) and return their figures.

    Args:
        batch: rows per optimizer step of every contender (``fit_per_chunk`` aside, which
            steps on its 100-row chunks).
        read_rows: rows the member reads at a time and ``bare_step_read`` passes per call,
            a multiple of `batch`; `batch` itself gives one step per call everywhere.
        rows: rows of the stream; the bare loops and the member train on all of them.
        seconds: how long ``fit_per_chunk`` and ``train_on_batch`` are timed.
        seed: seeds the stream and the networks.
        niceness: scheduling niceness of the member and of this process's timing thread
            (the job runs members at 5): other tenants' load then slows every contender
            alike. 0 leaves this process as it is.

    Raises:
        ConfigError: on a bad argument, before anything starts.
    """
    config = job_config(batch, rows, seed, read_rows)
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
        # Four quarters of whole reads, timed bare_step, bare_step_read, (member),
        # bare_step_read, bare_step: each bare loop brackets the member in time.
        quarter = (len(y) // (4 * read_rows)) * read_rows
        parts = [
            (x[i * quarter : (i + 1) * quarter], y[i * quarter : (i + 1) * quarter])
            for i in range(4)
        ]

        def bare(part: int, size: int) -> Measurement:
            return _timed(learner.learn_many, _chunks(*parts[part], size))

        halves = {"bare_step": [bare(0, batch)], "bare_step_read": [bare(1, read_rows)]}
        member, coordinator = start_member(config, niceness)
        try:
            measured["member_actor"], member_stats = time_member_run(member, read_rows)
        finally:
            ray.kill(member)
            ray.kill(coordinator)
        halves["bare_step_read"].append(bare(2, read_rows))
        halves["bare_step"].append(bare(3, batch))
    for name, (first, second) in halves.items():
        measured[name] = first + second
    rates = {name: measured[name].rows_per_s for name in CONTENDERS}
    ratios = {
        "member_actor/bare_step": rates["member_actor"] / rates["bare_step"],
        "member_actor/bare_step_read": rates["member_actor"] / rates["bare_step_read"],
        "member_actor/fit_per_chunk": rates["member_actor"] / rates["fit_per_chunk"],
        "bare_step/fit_per_chunk": rates["bare_step"] / rates["fit_per_chunk"],
        "bare_step_read/bare_step": rates["bare_step_read"] / rates["bare_step"],
    }
    return {
        "batch": batch,
        "read_rows": read_rows,
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
        "bare_halves_rows_per_s": {
            name: [part.rows_per_s for part in pair] for name, pair in halves.items()
        },
        "member": {
            "rows_per_s_including_warmup": member_stats["rows_per_s"],
            "reads": member_stats["batches"],
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
        "bare_step": f"bare learn_many, one call per {result['batch']} rows",
        "bare_step_read": f"bare learn_many, one call per {result['read_rows']} rows",
        "member_actor": f"MemberActor in Ray, reads of {result['read_rows']} rows",
    }
    member = result["rows_per_s"]["member_actor"]
    table = Table(
        title=f"bench train: {result['source']}, {result['rows']:,} rows, "
        f"{result['batch']}-row optimizer steps"
    )
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
