"""Scaling a running job: 2 -> 6 -> 3 members under a steady prediction load, with the
stream flowing. Partitions move at batch boundaries with their offsets, so every row is
learned exactly once (the learn log says so), no request fails, the counts reconcile, and
each new member earns a non-zero weight soon after it joins."""

from __future__ import annotations

import threading
import time

import pytest
import ray
import requests

from pipelines.config import JobConfig
from pipelines.job import Job
from pipelines.learn_log import learned_offsets
from tests.helpers import free_port, wait_until
from tests.integration.test_ingestion import reconciles

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROW = {f"x{i}": 0.5 for i in range(10)}
WEIGHT_WITHIN_S = 60.0
"""How soon after a scale-up returns each new member must hold a non-zero weight: its
first snapshot (within publish_interval_s) and the coordinator's next version."""


def _client(url: str, answers: list, stop: threading.Event) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            try:
                reply = session.post(f"{url}/predict", json={"rows": [ROW]}, timeout=30)
                version = reply.json().get("weights_version") if reply.ok else None
                answers.append((reply.status_code, reply.headers.get("X-Replica"), version))
            except requests.RequestException as error:  # a failure is what we count
                answers.append((type(error).__name__, None, None))


def _new_members_weighted(job: Job, ids: list[int]) -> bool:
    weights = job.weights()["weights"]
    return all(weights.get(str(mid), 0.0) > 0.0 for mid in ids)


def test_scaling_2_6_3_under_load_loses_no_row_and_fails_no_request(ray_local, tmp_path):
    rows, partitions = 900_000, 6
    log = tmp_path / "learned.jsonl"
    config = JobConfig(
        source="synthetic://hyperplane",
        rows=rows,
        members=2,
        max_members=6,
        port=free_port(),
        report=tmp_path,
        progress=False,
        learn_log=str(log),
        checkpoint_every_rows=20_000,
    )
    job = Job(config)
    job.start()
    answers: list = []
    stop = threading.Event()
    thread = threading.Thread(target=_client, args=(job.url, answers, stop), daemon=True)
    thread.start()
    try:
        assert job.partitions_by_member == {0: [0, 2, 4], 1: [1, 3, 5]}
        assert wait_until(lambda: len(answers) >= 20, timeout_s=60)
        began = time.monotonic()
        grown = job.scale(6, policy="clone-best")
        grew_s = time.monotonic() - began
        assert grown["added"] == [2, 3, 4, 5] and grown["cloned_from"] in (0, 1)
        assert sorted(p for owned in job.partitions_by_member.values() for p in owned) == list(
            range(partitions)
        )
        assert all(len(owned) == 1 for owned in job.partitions_by_member.values())
        assert wait_until(lambda: _new_members_weighted(job, grown["added"]), WEIGHT_WITHIN_S)
        weighted_s = time.monotonic() - began - grew_s
        status = job.status()
        mid_rows = status["rows_seen"]
        assert mid_rows < rows, "the stream ended before the scale-up took effect"
        weights = {int(k): v for k, v in job.weights()["weights"].items()}
        # The scale-down goes through the admin route: the driver's `wait` loop carries
        # it out, as it does for `online-ensemble scale`.
        reports: list[dict] = []
        waiter = threading.Thread(target=lambda: reports.append(job.wait()), daemon=True)
        waiter.start()
        bad = requests.post(f"{job.url}/admin/scale", json={"members": "three"}, timeout=10)
        assert bad.status_code == 400 and "members" in bad.json()["error"]
        asked = requests.post(f"{job.url}/admin/scale", json={"members": 3}, timeout=10)
        assert asked.status_code == 202, asked.text
        result_url = f"{job.url}{asked.json()['result']}"
        answer: dict = {}

        def done() -> bool:
            answer.update(requests.get(result_url, timeout=10).json())
            return not answer["pending"]

        assert wait_until(done, timeout_s=120)
        assert answer["ok"], answer
        shrunk = answer
        lowest = sorted(weights, key=lambda m: (weights[m], -m))[:3]
        assert len(shrunk["retired"]) == 3
        # The plan retires by the weights it reads itself, a moment later than ours.
        assert len(set(shrunk["retired"]) & set(lowest)) >= 1
        assert len(job.partitions_by_member) == 3
        assert all(len(owned) == 2 for owned in job.partitions_by_member.values())
        waiter.join(600)
        (report,) = reports
    finally:
        stop.set()
        thread.join(60)
        job.shutdown()
    print(
        f"\nscale-up 2->6 took {grew_s:.1f}s, new members weighted {weighted_s:.1f}s later; "
        f"scale-down 6->3 took {shrunk['seconds']:.1f}s; {len(answers)} requests; "
        f"rows seen at the scale-down {mid_rows:,}"
    )
    statuses = [status for status, *_ in answers]
    assert statuses.count(200) == len(statuses) > 100, {s: statuses.count(s) for s in statuses}
    by_replica: dict[str | None, list[int]] = {}
    for _, replica, version in answers:
        by_replica.setdefault(replica, []).append(int(version))
    assert all(versions == sorted(versions) for versions in by_replica.values())
    reconciles(report, rows)
    assert len(report["members"]) == 3 and len(report["retired_members"]) == 3
    assert [e["members"] for e in report["scale_events"]] == [6, 3]
    # Every row of every partition learned exactly once, across owners.
    learned = learned_offsets(log)
    per_partition = rows // partitions
    for partition in range(partitions):
        counts = learned[partition]
        assert sorted(counts) == list(range(per_partition)), partition
        assert set(counts.values()) == {1}, partition
    assert report["ensemble"]["prequential_accuracy"] > 0.8


@pytest.mark.chaos
def test_a_member_killed_after_a_scale_up_resumes_the_partition_it_was_handed(ray_local, tmp_path):
    """Ray restarts an actor with its constructor's arguments, which name no partition for
    a member added by scaling: the coordinator's record of the move is what it reads."""
    rows, every_rows = 600_000, 10_000
    log = tmp_path / "learned.jsonl"
    config = JobConfig(
        source="synthetic://hyperplane",
        rows=rows,
        members=2,
        max_members=3,
        port=free_port(),
        report=tmp_path,
        progress=False,
        learn_log=str(log),
        checkpoint_every_rows=every_rows,
        member_max_restarts=3,
    )
    job = Job(config)
    job.start()
    try:
        (new,) = job.scale(3)["added"]
        handed = job.partitions_by_member[new]
        assert handed
        assert wait_until(
            lambda: next(m for m in job.status()["members"] if m["id"] == new)["checkpoints"] >= 2,
            timeout_s=120,
        )
        ray.kill(job._members[new], no_restart=False)
        report = job.wait()
    finally:
        job.shutdown()
    after = next(m for m in report["members"] if m["id"] == new)
    assert after["partitions"] == handed and after["restored_from"] is not None, after
    counts = learned_offsets(log)
    per_partition = rows // 3
    for partition in range(3):
        assert set(counts[partition]) == set(range(per_partition)), partition
    duplicated = sum(n - 1 for learned in counts.values() for n in learned.values())
    print(
        f"\nmember {new} killed after taking partitions {handed}: restarted from checkpoint "
        f"{after['restored_from']} on them; {duplicated:,} rows learned twice "
        f"(bound {every_rows + config.batch_size:,})"
    )
    assert duplicated <= every_rows + config.batch_size


def test_a_drift_with_the_spawn_action_adds_a_challenger_member(ray_local, tmp_path):
    # Long enough that the post-drift half outlasts a new actor's start (several seconds).
    rows = 2_400_000
    config = JobConfig(
        source="synthetic://hyperplane?noise=0.05&drift_at=0.5",
        rows=rows,
        members=2,
        max_members=3,
        port=free_port(),
        report=tmp_path,
        progress=False,
        drift_detector="adwin",
        drift_action="spawn",
    )
    job = Job(config)
    job.start()
    try:
        report = job.wait()
    finally:
        job.shutdown()
    events = report["scale_events"]
    print(
        f"\ndrift spawn: scale events {[(e['reason'], e['added'], e['at_s']) for e in events]}; "
        f"rows per member {[(m['id'], m['rows']) for m in report['members']]}"
    )
    assert events and events[0]["reason"].startswith("drift:") and events[0]["added"] == [2]
    assert len(report["members"]) == 3  # the limit: one challenger, no more
    challenger = next(m for m in report["members"] if m["id"] == 2)
    assert challenger["rows"] > 0
    reconciles(report, rows)
