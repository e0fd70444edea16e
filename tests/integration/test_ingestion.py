"""Ingestion end to end: real Ray members reading a real Kafka endpoint, files and rated
generators; counts that reconcile exactly, restarts that lose nothing, keeping pace.

Every job here runs members in other processes; the Kafka endpoint is librdkafka's mock
cluster in this test process, which members reach over TCP on 127.0.0.1.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import ray
import requests
from confluent_kafka import Consumer, TopicPartition

from pipelines.config import JobConfig
from pipelines.job import Job
from pipelines.learn_log import learned_offsets
from tests.helpers import free_port, wait_until
from tests.kafka_cluster import MockKafka

pytestmark = pytest.mark.integration

FEATURES = [f"x{i}" for i in range(10)]


@pytest.fixture(scope="module")
def kafka():
    with MockKafka() as cluster:
        yield cluster


def hyperplane_rows(rows: int, seed: int) -> pa.RecordBatch:
    """A learnable, labelled batch in the default stream's shape."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, len(FEATURES)), dtype=np.float32)
    label = (x @ np.linspace(1, 2, len(FEATURES)) > 1.5 * len(FEATURES) / 2).astype(np.float32)
    columns = {name: x[:, i] for i, name in enumerate(FEATURES)}
    return pa.RecordBatch.from_pydict({**columns, "label": label})


def run(tmp_path, source: str, **settings) -> tuple[Job, dict]:
    config = JobConfig(
        source=source,
        port=free_port(),
        report=tmp_path,
        progress=False,
        seed=3,
        **settings,
    )
    job = Job(config)
    job.start()
    return job, job.wait()


def reconciles(report: dict, produced: int) -> None:
    accounted = (
        report["rows_trained"]
        + report["rows_sampled"]
        + report["dead_letter"]
        + report["rows_context"]
    )
    assert report["rows_seen"] == produced, report
    assert accounted == produced, {
        k: report[k]
        for k in ("rows_seen", "rows_trained", "rows_sampled", "dead_letter", "rows_context")
    }


def committed(kafka: MockKafka, topic: str, group: str) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def poison_json(rows: pa.RecordBatch, every: int, seed: int) -> tuple[list[bytes], int]:
    """JSON messages of `rows`, every `every`-th one replaced by a poison record of a
    rotating kind; returns the messages and how many are poison."""
    kinds = [
        b"{not json",
        b'{"x0": "abc", "x1": 0.1, "label": 1}',  # wrong type
        json.dumps({name: 0.5 for name in FEATURES}).encode(),  # missing label
        json.dumps({**{name: 0.5 for name in FEATURES}, "x3": float("nan"), "label": 1.0}).encode(),
        json.dumps({**{name: 0.5 for name in FEATURES}, "x7": float("-inf"), "label": 0}).encode(),
        b"[1, 2, 3]",  # not an object
        json.dumps({**{f"x{i}": 0.5 for i in range(5)}, "label": 1.0}).encode(),  # wrong width
        json.dumps({**{name: 0.5 for name in FEATURES}, "label": "x" * 200_000}).encode(),  # huge
        json.dumps({**{name: 0.5 for name in FEATURES}, "label": 7}).encode(),  # not a class
    ]
    messages, poison = [], 0
    for i, record in enumerate(rows.to_pylist()):
        if i % every == every - 1:
            messages.append(kinds[(i // every + seed) % len(kinds)])
            poison += 1
        else:
            messages.append(json.dumps(record).encode())
    return messages, poison


def test_kafka_json_job_reconciles_poison_and_commits_every_offset(ray_local, kafka, tmp_path):
    topic = kafka.create_topic()
    per_partition = 5_000
    messages, poison = {}, 0
    for partition in range(4):
        messages[partition], bad = poison_json(
            hyperplane_rows(per_partition, partition), every=50, seed=partition
        )
        poison += bad
    kafka.produce_messages(topic, messages)
    source = kafka.uri(topic, group="reconcile", eof="stop", features=",".join(FEATURES))
    job, report = run(tmp_path, source, members=2, checkpoint_every_rows=4_000)
    try:
        produced = 4 * per_partition
        reconciles(report, produced)
        assert report["dead_letter"] == poison
        with open(report["dead_letter_path"], encoding="utf-8") as lines:
            letters = [json.loads(line) for line in lines]
        assert len(letters) == poison
        assert all(letter["reason"] and letter["offset"] >= 0 for letter in letters)
        assert {letter["partition"] for letter in letters} == {0, 1, 2, 3}
        # Offsets move only after a checkpoint, and the last one covers every message.
        assert committed(kafka, topic, "reconcile") == dict.fromkeys(range(4), per_partition)
        assert all(m["checkpoints"] >= 2 for m in report["members"])
        # The members learned the concept, not just the counts; poison did not get in.
        assert report["ensemble"]["prequential_accuracy"] > 0.8
        weights = requests.get(f"{job.url}/weights", timeout=10).json()["weights"]
        assert all(np.isfinite(w) for w in weights.values()), weights
        assert all(m["restored_from"] is None for m in report["members"])  # no crash
    finally:
        job.shutdown()


def test_a_killed_member_resumes_from_its_checkpoint_losing_nothing(ray_local, kafka, tmp_path):
    """Arrow messages of 100 rows; member 0 is killed mid-stream and Ray restarts it."""
    topic = kafka.create_topic()
    per_partition, rows_per_message = 40_000, 100
    kafka.produce(
        topic,
        {p: [hyperplane_rows(per_partition, 10 + p)] for p in range(4)},
        format="arrow",
        rows_per_message=rows_per_message,
    )
    every_rows, batch = 4_000, 32
    source = kafka.uri(topic, group="restart", eof="stop", format="arrow")
    log = tmp_path / "learned.jsonl"
    config = JobConfig(
        source=source,
        members=2,
        port=free_port(),
        report=tmp_path,
        progress=False,
        batch_size=batch,  # small steps: the member is still mid-stream when it is killed
        checkpoint_every_rows=every_rows,
        learn_log=str(log),
    )
    job = Job(config)
    job.start()
    try:

        def member_rows() -> int:
            return next(m for m in job.status()["members"] if m["id"] == 0).get("rows", 0)

        # Half-way between two checkpoints, so the restart is likely to replay rows.
        assert wait_until(lambda: member_rows() >= 3.5 * every_rows, timeout_s=120)
        assert member_rows() < 2 * per_partition, "member 0 finished before it was killed"
        ray.kill(job._members[0], no_restart=False)
        report = job.wait()
        by_member = {m["id"]: m for m in report["members"]}
        assert by_member[0]["restored_from"] is not None
        assert by_member[1]["restored_from"] is None
        messages_per_partition = per_partition // rows_per_message
        counts = learned_offsets(log)
        assert sorted(counts) == [0, 1, 2, 3]
        duplicated = {}
        for partition, seen in counts.items():
            # Every produced message offset was learned at least once ...
            assert set(seen) == set(range(messages_per_partition)), partition
            duplicated[partition] = sum(n - 1 for n in seen.values()) * rows_per_message
        # ... and only the killed member's partitions repeat rows, bounded by what it
        # read since its last checkpoint (the interval, plus the step that crossed it).
        killed = job.partitions_by_member[0]
        print(
            f"restart: duplicated rows by partition {duplicated}, restored from checkpoint "
            f"{by_member[0]['restored_from']}, checkpoints {by_member[0]['checkpoints']}"
        )
        # (It may be 0: a kill that lands while the member commits, just after a
        # checkpoint, replays nothing.)
        assert sum(duplicated[p] for p in killed) <= every_rows + rows_per_message
        assert all(duplicated[p] == 0 for p in job.partitions_by_member[1])
        # The final counts describe the checkpointed timeline: each row once.
        reconciles(report, 4 * per_partition)
        assert report["rows_trained"] == 4 * per_partition
        assert committed(kafka, topic, "restart") == dict.fromkeys(range(4), messages_per_partition)
    finally:
        job.shutdown()


def test_a_member_behind_a_fast_stream_samples_to_keep_pace(ray_local, tmp_path):
    """Two partitions arriving at 100k rows/s each: faster than a member trains here."""
    produced = 400_000
    # One concept (no mid-stream switch): the accuracy below is about learning from a
    # thinned stream, not about recovering from a drift in a 2 s stream.
    source = f"synthetic://hyperplane?rate=100000&rows={produced}&noise=0.0&drift_at=none"
    job, report = run(
        tmp_path, source, members=2, max_lag_rows=5_000, lag_policy="uniform", batch_size=256
    )
    try:
        reconciles(report, produced)
        accuracy = report["ensemble"]["prequential_accuracy"]
        print(
            f"fast stream: {report['rows_trained']} learned, {report['rows_sampled']} sampled, "
            f"accuracy {accuracy:.3f}"
        )
        assert report["rows_sampled"] > 0, report
        assert report["dead_letter"] == 0
        # It kept pace: it finished close to when the last row arrived (2 s of stream),
        # instead of trailing by the rows it could not learn.
        assert all(m["rows_sampled"] > 0 for m in report["members"])
        assert accuracy > 0.8
    finally:
        job.shutdown()


def test_a_member_on_a_slow_stream_gathers_min_batch_rows(ray_local, tmp_path):
    """Rows trickle in at 400/s per partition: steps wait (bounded) to gather rows."""
    produced = 2 * 1_200
    source = f"synthetic://hyperplane?rate=400&rows={produced}"
    # Full-size batches from the first row (batch_start): this counts steps to show the
    # gathering, and a young member's small first batches (batch_schedule) are steps too.
    job, report = run(
        tmp_path,
        source,
        members=2,
        min_batch=64,
        max_wait_ms=200,
        batch_size=128,
        batch_start=128,
    )
    try:
        reconciles(report, produced)
        assert report["rows_sampled"] == 0
        batches = sum(m["batches"] for m in report["members"])
        print(f"slow stream: {produced} rows in {batches} steps")
        # At 400 rows/s and a 200 ms wait, a step gathers ~64 rows; without gathering a
        # member polling every few ms would train on a handful of rows per step.
        assert produced / batches >= 40, (produced, batches)
    finally:
        job.shutdown()


def test_follow_mode_learns_files_as_they_land(ray_local, tmp_path):
    """Files renamed into a followed directory while the job runs are all learned."""
    import pyarrow.parquet as pq

    landing = tmp_path / "landing"
    landing.mkdir()

    def land(index: int, rows: int) -> None:
        hidden = landing / f".part-{index}.parquet"  # writers land files by rename
        pq.write_table(pa.Table.from_batches([hyperplane_rows(rows, 100 + index)]), hidden)
        hidden.rename(landing / f"part-{index}.parquet")

    land(0, 3_000)
    config = JobConfig(
        source=str(landing),
        follow=True,
        members=2,
        port=free_port(),
        report=tmp_path / "report",
        progress=False,
    )
    job = Job(config)
    job.start()
    try:
        produced = 3_000
        for index in range(1, 6):
            land(index, 2_000)
            produced += 2_000
        assert wait_until(lambda: job.status()["rows_seen"] >= produced, timeout_s=120)
        job.request_stop()
        report = job.wait()
        reconciles(report, produced)
        assert report["dead_letter"] == 0
        assert report["stopped_early"] is True  # a followed directory never ends by itself
    finally:
        job.shutdown()
