"""`bench drift` end to end on a short stream: the figures' shape, both jobs complete, and
the run with detection on answered the switch. How much sooner it recovers is for the
benchmark itself (docs/benchmarks.md), not for a test."""

from __future__ import annotations

import json

import pytest

from pipelines.bench.drift_bench import STREAMS, run_drift_bench
from tests.helpers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_drift_runs_detection_off_and_on_on_the_same_stream(ray_local):
    rows = 200_000
    result = run_drift_bench(rows=rows, port=free_port(), streams=["hyperplane"])
    assert json.loads(json.dumps(result)) == result  # what --json prints
    stream = result["streams"]["hyperplane"]
    assert stream["uri"] == STREAMS["hyperplane"]
    off, on = stream["detection_off"], stream["detection_on"]
    for run in (off, on):
        assert run["rows_trained"] == rows
        assert 0.5 < run["pre_switch_accuracy"] <= 1.0
        assert run["lowest_accuracy"] < run["pre_switch_accuracy"]  # the switch shows
    assert off["drift_responses"] == 0 and not any(off["event_rows"].values())
    # Each member's switch is at half its rows (25,000); detection answers it there.
    assert on["drift_responses"] >= 1
    for events in on["event_rows"].values():
        assert all(25_000 <= at < 35_000 for at in events), on["event_rows"]
    assert ray_local.is_initialized()  # the fixture's Ray is left running
