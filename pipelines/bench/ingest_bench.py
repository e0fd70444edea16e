"""`online-ensemble bench ingest`: how fast members read a source, against how fast they train.

One run builds the default job's stream once (``synthetic://hyperplane``: 10 float32
features, 4 partitions, seeded) and writes it three ways:

* ``kafka``: a topic on librdkafka's mock cluster, which this process starts on loopback
  (a real Kafka protocol endpoint; member actors reach it over TCP). Arrow IPC messages
  of `batch` rows each, the bulk format: an Arrow message is never split, so a message
  of the job's batch size keeps the training step the same as on the other sources.
* ``kafka_json``: the same rows, one JSON object per message (the Kafka source's default
  format), for comparison. The mock cluster keeps only the newest ~5 MiB of a partition,
  so this topic holds at most `JSON_MAX_ROWS` rows.
* ``parquet``: one file per partition in a temporary directory, in row groups of
  `PARQUET_ROW_GROUP_ROWS` rows.

Then, for each source and each member count N (1, 2, 4):

* **read**: N Ray actors each read their round-robin share of the 4 partitions through
  a member's read path, and nothing else: `open_source` in the actor, `PartitionIntake`
  with the job's `IngestSpec` and batch size, `StreamSchema.validate` on every piece,
  the pieces joined into one array per step (what `MemberCore` does before its label
  check and training step). Readers are opened first; the pass is timed from one
  common start to the last actor's finish, and run `READ_PASSES` times (the median
  counts).
* **train**: N real member actors (`MemberActor`) with the job's default member
  settings (checkpoints off) and a real `CoordinatorActor`, on the same source. Timed
  once every actor is built (TensorFlow loaded, partitions open) and every member has
  learned `WARMUP_BATCHES` batches and published once (its graphs are traced), to the
  last member's finish: rows learned in that window over its wall time (the whole run
  if the stream is too short for that; `train_warmup_excluded` says which).

Every actor asks for ``min(1, CPUs / N)`` CPUs (as `Job` shares them out) and runs at
the member's niceness, so four fit on two cores as in the job; the read phase and the
training run each use their own consumer group, on a bounded source (``eof=stop``).
Every count is checked: each read pass and each training run must see exactly the rows
produced, or the bench raises (the mock cluster drops old messages silently when a
partition outgrows its retention).

Ray: as ``bench train``, the Ray this process joined, or a small local one (2 CPUs).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from confluent_kafka import Producer
from rich.table import Table

from actors.errors import ConfigError, SourceError
from actors.intake import PartitionIntake
from actors.specs import MemberConfig
from pipelines.config import JobConfig
from pipelines.sources import SourceSpec, open_source
from pipelines.sources.kafka import produce_batches

# Deliberately no TensorFlow here at import time (`actors.member`, `pipelines.job` and
# `train_bench` load it): the read actors are defined in this module, and a Ray worker
# imports it to build one. They are imported where the driver needs them.

__all__ = [
    "JSON_MAX_ROWS",
    "KAFKA_MAX_ROWS",
    "MEMBER_COUNTS",
    "SOURCES",
    "TARGET_RATIO",
    "result_table",
    "run_ingest_bench",
]

logger = logging.getLogger(__name__)

SOURCES = ("kafka", "parquet", "kafka_json")
JUDGED_SOURCES = ("kafka", "parquet")
"""The sources the acceptance ratio is judged on; ``kafka_json`` is shown for contrast."""

MEMBER_COUNTS = (1, 2, 4)
PARTITIONS = 4  # the default job's, and the mock cluster's for every topic
TARGET_RATIO = 5.0
"""The issue's acceptance: read rows/s at least this many times the training rows/s."""

KAFKA_MAX_ROWS = 320_000
"""80,000 rows a partition: ~4.3 MB of 128-row Arrow messages, under the mock's ~5 MiB."""
JSON_MAX_ROWS = 48_000
"""12,000 rows a partition: ~3.9 MB of ~330-byte JSON records, under the mock's ~5 MiB."""

PARQUET_ROW_GROUP_ROWS = 16_384
READ_PASSES = 5
WARMUP_BATCHES = 10  # a member's rate counts from after this many batches (graph traced)
MEMBER_NICENESS = 5  # `MemberActor`'s default, which `Job` keeps; the read actors use it too


@ray.remote
class _ReadPathActor:
    """Reads partitions as a member does up to its label check and step, and times it.

    Args:
        member_id: which member's share this is (seeds the intake, as in `MemberCore`).
        spec: the source; opened here, in the actor, as a member opens it.
        partitions: the partitions to read.
        config: the member settings (batch size, `IngestSpec`, seed).
        niceness: how much to lower this process's priority, as `MemberActor` does.
    """

    def __init__(
        self,
        member_id: int,
        spec: SourceSpec,
        partitions: list[int],
        config: MemberConfig,
        niceness: int = MEMBER_NICENESS,
    ) -> None:
        if niceness:
            os.nice(niceness)
        self._member_id = member_id
        self._source = open_source(spec)
        self._partitions = list(partitions)
        self._config = config
        self._intake: PartitionIntake | None = None

    def open(self) -> None:
        """Open the partitions at the source's committed offsets (none: the start)."""
        readers = [self._source.open(p, None) for p in self._partitions]
        self._intake = PartitionIntake(
            readers,
            self._config.batch_size,
            self._config.ingest,
            seed=self._config.seed + self._member_id,
        )

    def read(self) -> dict[str, float]:
        """Read the opened partitions to their end; returns the counts and seconds taken."""
        if self._intake is None:
            raise SourceError("open() the partitions before reading them")
        intake, schema = self._intake, self._source.schema
        rows_read = rows_valid = dead = steps = 0
        began = time.perf_counter()
        while (taken := intake.next()) is not None:
            rows_read += taken.rows_read
            dead += len(taken.source_dead)
            xs, ys = [], []
            for piece in taken.pieces:
                valid = schema.validate(
                    piece.batch,
                    partition=piece.partition,
                    first_offset=piece.first_offset,
                    offsets=piece.offsets,
                )
                dead += len(valid.dead_letters)
                xs.append(valid.x)
                ys.append(valid.y)
            if len(xs) > 1:  # as `MemberCore` joins a gathered step's pieces
                xs, ys = [np.concatenate(xs)], [np.concatenate(ys)]
            rows_valid += sum(len(y) for y in ys)
            steps += 1
        seconds = time.perf_counter() - began
        for reader in intake.readers:
            reader.close()
        self._intake = None
        return {
            "rows_read": rows_read,
            "rows_valid": rows_valid,
            "dead_letters": dead,
            "steps": steps,
            "seconds": seconds,
        }


# --- the data ------------------------------------------------------------------------------


def stream_partitions(rows: int, seed: int) -> dict[int, pa.Table]:
    """The default job's stream, `rows` in all, as one table per partition."""
    source = open_source(
        SourceSpec(JobConfig().source, partitions=PARTITIONS, rows=rows, seed=seed)
    )
    tables = {}
    for partition in source.partitions():
        reader = source.open(partition)
        batches = []
        try:
            while (read := reader.read_batch(65_536)) is not None:
                batches.append(read.batch)
        finally:
            reader.close()
        tables[partition] = pa.Table.from_batches(batches)
    return tables


def write_parquet(tables: dict[int, pa.Table], directory: Path) -> str:
    """One Parquet file per partition (sorted names, so file i is partition i)."""
    for partition, table in tables.items():
        pq.write_table(
            table,
            directory / f"part-{partition}.parquet",
            row_group_size=PARQUET_ROW_GROUP_ROWS,
        )
    return str(directory)


@contextmanager
def mock_kafka() -> Iterator[Producer]:
    """librdkafka's in-process mock cluster (one broker on 127.0.0.1), while the block runs.

    The cluster lives as long as the producer that owns it, which this yields; see
    `bootstrap_of` for its address.
    """
    producer = Producer(
        {
            "test.mock.num.brokers": 1,
            "log.connection.close": False,
            "logger": logging.getLogger(__name__ + ".mock"),
        }
    )
    try:
        yield producer
    finally:
        producer.flush(1)


def bootstrap_of(producer: Producer) -> str:
    brokers = producer.list_topics(timeout=10).brokers.values()
    return ",".join(f"{broker.host}:{broker.port}" for broker in brokers)


def create_topic(producer: Producer, name: str, timeout_s: float = 10.0) -> None:
    """Create `name` on the mock cluster (it creates a topic when asked for its metadata)."""
    deadline = time.monotonic() + timeout_s
    while True:
        topic = producer.list_topics(name, timeout=timeout_s).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) >= PARTITIONS:
            if len(topic.partitions) != PARTITIONS:
                raise SourceError(
                    f"the mock cluster created topic {name!r} with {len(topic.partitions)} "
                    f"partitions; the bench expects {PARTITIONS}"
                )
            return
        if time.monotonic() > deadline:
            raise SourceError(f"mock topic {name!r} did not appear within {timeout_s:g} s")
        time.sleep(0.02)


# --- one measurement -----------------------------------------------------------------------


def _member_cpus(members: int) -> float:
    """As `Job`: the cluster's CPUs shared out, at most 1, floored to hundredths."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(0.01, min(1.0, math.floor(100 * total / members) / 100))


def time_reads(
    spec: SourceSpec, owned: dict[int, list[int]], config: MemberConfig, passes: int
) -> list[dict[str, float]]:
    """`passes` timed reads of the whole source by one `_ReadPathActor` per member.

    Returns:
        Per pass: rows read, valid and dead-lettered (summed over actors) and the wall
        seconds from the common start to the last actor's finish.
    """
    cpus = _member_cpus(len(owned))
    actors = [
        _ReadPathActor.options(num_cpus=cpus).remote(  # type: ignore[attr-defined]
            member, spec, partitions, config
        )
        for member, partitions in owned.items()
    ]
    results = []
    try:
        for _ in range(passes):
            ray.get([actor.open.remote() for actor in actors])
            began = time.perf_counter()
            counts = ray.get([actor.read.remote() for actor in actors])
            seconds = time.perf_counter() - began
            results.append(
                {
                    key: sum(count[key] for count in counts)
                    for key in ("rows_read", "rows_valid", "dead_letters")
                }
                | {"seconds": seconds}
            )
    finally:
        for actor in actors:
            ray.kill(actor)
    return results


def time_training(
    spec: SourceSpec, owned: dict[int, list[int]], job: JobConfig, poll_s: float = 0.01
) -> dict[str, Any]:
    """Train one `MemberActor` per member of `owned` on `spec`, with a coordinator.

    Returns:
        Rows read and learned, dead letters, and the timed window: from when every
        member has `WARMUP_BATCHES` batches and a publish behind it to the last member's
        finish; from the start instead if a member finishes before all get there, or if
        that would leave less than half the rows learned to time.
    """
    from actors.coordinator import CoordinatorActor
    from actors.member import MemberActor

    source = open_source(spec)
    cpus = _member_cpus(len(owned))
    # Unnamed, unlike the job's: the bench must not collide with a job in the same Ray.
    coordinator = CoordinatorActor.remote(  # type: ignore[attr-defined]
        owned,
        source.schema.n_features,
        job.model_spec(),
        window=job.window,
        policy=job.policy,
        floor=job.weight_floor,
        cap=job.weight_cap,
        policy_params=job.policy_params(),
    )
    members = [
        MemberActor.options(num_cpus=cpus).remote(  # type: ignore[attr-defined]
            member,
            spec,
            partitions,
            job.member_config(),  # no checkpoint folder: checkpoints off
            coordinator,
            num_cpus=cpus,
            niceness=MEMBER_NICENESS,
        )
        for member, partitions in owned.items()
    ]
    try:
        ray.get([coordinator.latest_version.remote()] + [m.ready.remote() for m in members])
        began = time.perf_counter()
        runs = [member.run.remote() for member in members]
        warm_rows, warm_at = 0, began
        while not ray.wait(runs, num_returns=1, timeout=0)[0]:
            asked = time.perf_counter()
            stats = ray.get([member.stats.remote() for member in members])
            if all(s["batches"] >= WARMUP_BATCHES and s["publishes"] >= 1 for s in stats):
                warm_rows = sum(s["rows"] for s in stats)
                warm_at = (asked + time.perf_counter()) / 2
                break
            time.sleep(poll_s)
        finals = ray.get(runs)
        ended = time.perf_counter()
    finally:
        for actor in [*members, coordinator]:
            ray.kill(actor)
    learned = sum(s["rows"] for s in finals)
    if learned - warm_rows < learned / 2:
        # A stream this short is mostly warm-up: time all of it rather than a sliver.
        warm_rows, warm_at = 0, began
    return {
        "rows_read": sum(s["rows_seen"] for s in finals),
        "rows_learned": learned,
        "dead_letters": sum(s["dead_letter"] for s in finals),
        "rows_timed": learned - warm_rows,
        "seconds": ended - warm_at,
        "seconds_including_warmup": ended - began,
        "warmup_excluded": warm_at > began,
    }


def measure(
    read_spec: SourceSpec,
    train_spec: SourceSpec,
    members: int,
    produced: int,
    job: JobConfig,
    passes: int = READ_PASSES,
) -> dict[str, Any]:
    """Read and train figures of one source at one member count, its counts checked.

    `read_spec` and `train_spec` are the same stream (for Kafka: each its own consumer
    group).

    Raises:
        SourceError: if a read pass or the training run saw other than `produced` rows.
    """
    from pipelines.job import assign_partitions

    owned = assign_partitions(open_source(read_spec).partitions(), members)
    reads = time_reads(read_spec, owned, job.member_config(), passes)
    trained = time_training(train_spec, owned, job)
    seen = [("a read pass", r["rows_read"]) for r in reads] + [("training", trained["rows_read"])]
    for what, rows in seen:
        if rows != produced:
            raise SourceError(
                f"{members} member(s) read {rows:,} rows in {what}, but {produced:,} were "
                "produced: the source lost or repeated rows (the mock Kafka cluster keeps "
                "only ~5 MiB a partition; use fewer --rows)",
                uri=read_spec.uri,
            )
    read_rate = statistics.median(r["rows_read"] / r["seconds"] for r in reads)
    train_rate = trained["rows_timed"] / trained["seconds"]
    ratio = read_rate / train_rate if train_rate > 0 else 0.0  # 0: nothing was learned
    return {
        "read_rows_per_s": read_rate,
        "train_rows_per_s": train_rate,
        "ratio": ratio,
        "meets_5x": ratio >= TARGET_RATIO,
        "rows": produced,
        "rows_read": reads[0]["rows_read"],
        "rows_learned": trained["rows_learned"],
        "dead_letters": max(r["dead_letters"] for r in reads) + trained["dead_letters"],
        "read_seconds": [round(r["seconds"], 4) for r in reads],
        "read_rows_per_s_passes": [r["rows_read"] / r["seconds"] for r in reads],
        "train_seconds": round(trained["seconds"], 3),
        "train_rows_timed": trained["rows_timed"],
        "train_rows_per_s_including_warmup": trained["rows_learned"]
        / trained["seconds_including_warmup"],
        "train_warmup_excluded": trained["warmup_excluded"],
        "member_cpus": _member_cpus(members),
    }


# --- the bench -----------------------------------------------------------------------------


def check_arguments(rows: int, members: Sequence[int], batch: int) -> tuple[int, ...]:
    """The member counts, sorted; raises ConfigError on what the bench cannot run."""
    least = PARTITIONS * batch
    if not least <= rows <= KAFKA_MAX_ROWS:
        raise ConfigError(
            f"rows ({rows}) must be in {least}..{KAFKA_MAX_ROWS}: at least a {batch}-row "
            f"batch per partition, and at most what the mock Kafka cluster keeps (~5 MiB "
            f"a partition)"
        )
    counts = tuple(sorted(set(members)))
    if not counts or len(counts) != len(members) or not all(1 <= n <= PARTITIONS for n in counts):
        raise ConfigError(
            f"members ({','.join(map(str, members)) or 'none'}) must be distinct counts in "
            f"1..{PARTITIONS} (the stream has {PARTITIONS} partitions), e.g. 1,2,4"
        )
    return counts


def run_ingest_bench(
    *, rows: int = 200_000, members: Sequence[int] = MEMBER_COUNTS, seed: int = 0
) -> dict[str, Any]:
    """Measure read and training rates per source and member count (see the module docstring).

    Args:
        rows: rows of the ``kafka`` and ``parquet`` streams; ``kafka_json`` holds at most
            `JSON_MAX_ROWS` of them.
        members: member counts to measure, each 1..4.
        seed: seeds the stream and the networks.

    Returns:
        The figures: per source and member count (as a string key) ``read_rows_per_s``,
        ``train_rows_per_s``, their ``ratio`` and ``meets_5x``, and the counts.

    Raises:
        ConfigError: on a bad argument, before anything starts.
        SourceError: if a source does not give back every row produced.
    """
    job = JobConfig.build(seed=seed)
    counts = check_arguments(rows, members, job.batch_size)
    from pipelines.bench.train_bench import local_ray  # loads TensorFlow: after the checks

    json_rows = min(rows, JSON_MAX_ROWS)
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder, mock_kafka() as cluster:
        bootstrap = bootstrap_of(cluster)
        tables = stream_partitions(rows, seed)
        json_tables = tables if json_rows == rows else stream_partitions(json_rows, seed)
        topics = {
            "kafka": f"bench-ingest-{run_id}-arrow",
            "kafka_json": f"bench-ingest-{run_id}-json",
        }
        for name in topics.values():
            create_topic(cluster, name)
        messages = {
            "kafka": produce_batches(
                bootstrap,
                topics["kafka"],
                {p: [table] for p, table in tables.items()},
                format="arrow",
                rows_per_message=job.batch_size,
            ),
            "kafka_json": produce_batches(
                bootstrap,
                topics["kafka_json"],
                {p: [table] for p, table in json_tables.items()},
                format="json",
            ),
        }
        parquet_dir = write_parquet(tables, Path(folder))

        def spec_of(source: str, members: int, phase: str) -> SourceSpec:
            if source == "parquet":
                return SourceSpec(parquet_dir, partitions=PARTITIONS, seed=seed)
            fmt = "arrow" if source == "kafka" else "json"
            group = f"bench-ingest-{run_id}-{source}-{members}-{phase}"
            return SourceSpec(
                f"kafka://{bootstrap}/{topics[source]}?format={fmt}&eof=stop&group={group}"
            )

        produced = {"kafka": rows, "parquet": rows, "kafka_json": json_rows}
        figures: dict[str, dict[str, Any]] = {source: {} for source in SOURCES}
        with local_ray():
            for source in SOURCES:
                for n in counts:
                    logger.info("bench ingest: %s, %d member(s)", source, n)
                    figures[source][str(n)] = measure(
                        spec_of(source, n, "read"),
                        spec_of(source, n, "train"),
                        n,
                        produced[source],
                        job,
                    )
    return {
        "rows": rows,
        "batch": job.batch_size,
        "partitions": PARTITIONS,
        "members": list(counts),
        "seed": seed,
        "target_ratio": TARGET_RATIO,
        "judged_sources": list(JUDGED_SOURCES),
        "sources": figures,
        "targets_met": {
            source: all(entry["meets_5x"] for entry in figures[source].values())
            for source in SOURCES
        },
        "source_details": {
            "kafka": {
                "format": f"Arrow IPC, {job.batch_size} rows per message",
                "rows": rows,
                "messages": sum(messages["kafka"].values()),
            },
            "kafka_json": {
                "format": "JSON, one record per message",
                "rows": json_rows,
                "messages": sum(messages["kafka_json"].values()),
            },
            "parquet": {
                "format": f"Parquet, {PARTITIONS} files, {PARQUET_ROW_GROUP_ROWS}-row groups",
                "rows": rows,
            },
        },
        "read_passes": READ_PASSES,
        "warmup_batches": WARMUP_BATCHES,
        "niceness": MEMBER_NICENESS,
    }


def result_table(result: dict[str, Any]) -> Table:
    """The figures as a `rich` table, one row per source and member count."""
    target = result["target_ratio"]
    table = Table(title=f"bench ingest: default stream, batch {result['batch']}")
    table.add_column("source")
    table.add_column("members", justify="right")
    table.add_column("rows", justify="right")
    table.add_column("read rows/s", justify="right")
    table.add_column("train rows/s", justify="right")
    table.add_column("read / train", justify="right")
    table.add_column(f">= {target:g}x", justify="center")
    for source, by_members in result["sources"].items():
        for n, entry in by_members.items():
            table.add_row(
                source,
                n,
                f"{entry['rows']:,}",
                f"{entry['read_rows_per_s']:,.0f}",
                f"{entry['train_rows_per_s']:,.0f}",
                f"{entry['ratio']:.1f}",
                "yes" if entry["meets_5x"] else "no",
            )
    formats = "; ".join(
        f"{source}: {details['format']}" for source, details in result["source_details"].items()
    )
    verdicts = "; ".join(
        f"{source}: {'met' if met else 'not met'}"
        + ("" if source in result["judged_sources"] else " (shown for contrast)")
        for source, met in result["targets_met"].items()
    )
    table.caption = f"{formats}\nread / train >= {target:g} at every member count: {verdicts}"
    return table
