"""`resume`: a job stopped gracefully continues from its checkpoints, every row once."""

from __future__ import annotations

import pytest

from pipelines.config import JobConfig
from pipelines.job import Job
from pipelines.learn_log import learned_offsets
from tests.helpers import free_port, wait_until
from tests.integration.test_ingestion import reconciles

pytestmark = pytest.mark.integration


def test_a_stopped_job_resumes_where_it_stopped(ray_local, tmp_path):
    produced = 300_000
    log = tmp_path / "learned.jsonl"
    settings = dict(
        source="synthetic://hyperplane?noise=0.0",
        rows=produced,
        members=2,
        report=tmp_path / "report",
        progress=False,
        batch_size=64,
        learn_log=str(log),
    )
    first = Job(JobConfig(port=free_port(), **settings))
    first.start()
    try:
        assert wait_until(lambda: first.status()["rows_seen"] >= produced // 4, timeout_s=120)
        first.request_stop()  # as SIGTERM does: finish the batch, checkpoint, commit
        stopped = first.wait()
    finally:
        first.shutdown()
    assert stopped["stopped_early"] and stopped["rows_seen"] < produced
    folder = first.checkpoint_uri
    second = Job(JobConfig(port=free_port(), resume=folder, **settings))
    assert second.checkpoint_uri == folder
    second.start()
    try:
        report = second.wait()
    finally:
        second.shutdown()
    # The resumed counters carry the first run's rows: the report covers the whole stream.
    reconciles(report, produced)
    assert report["rows_trained"] == produced
    assert all(m["restored_from"] is not None for m in report["members"])
    counts = learned_offsets(log)
    for partition in (0, 1):
        seen = counts[partition]
        assert set(seen) == set(range(produced // 2))
        assert max(seen.values()) == 1  # a graceful stop checkpoints exactly: no repeats
    print(f"resume: stopped at {stopped['rows_seen']} rows, resumed to {report['rows_seen']}")
