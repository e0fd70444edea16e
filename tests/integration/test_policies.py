"""Dynamic weights on a stream with one noisy and one drifting partition.

Partition 3 is pure label noise; partition 2 switches to a different concept at 30% of
its rows while the others keep theirs. One job runs with the hedge policy; the
coordinator scores every other policy as a shadow on the same shared-sample rows with
the same member snapshots.

Final weights are not asserted: members finish their partitions at slightly different
times, so the last shared-sample window holds only the last-running partition's rows,
and a sharp policy follows them. The assertions use the weight history while every
partition is still flowing.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.test_end_to_end import ROWS, run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = "synthetic://hyperplane?noise=0.02,0.02,0.02,0.5&drift_at=none,none,0.3,none"


@pytest.fixture(scope="module")
def hedge_run(ray_local, tmp_path_factory):
    job, report, _ = run_job(tmp_path_factory.mktemp("hedge"), STREAM, policy="hedge")
    job.shutdown()
    by_policy = report["policy"]["accuracy_by_policy"]
    print("prequential accuracy by policy:", {k: round(v, 4) for k, v in by_policy.items()})
    member_of = {p: str(m["id"]) for m in report["members"] for p in m["partitions"]}
    print(
        "median weights: noise member (10-90%)",
        round(_median_weight(job.history, member_of[3], 0.1, 0.9), 4),
        "drifted member before/after its switch",
        round(_median_weight(job.history, member_of[2], 0.1, 0.28), 4),
        round(_median_weight(job.history, member_of[2], 0.4, 0.85), 4),
    )
    return report, job.history, member_of


def _median_weight(history, member: str, start: float, stop: float) -> float:
    points = [p for p in history if start * ROWS <= p["rows"] <= stop * ROWS]
    assert len(points) >= 5, f"only {len(points)} history points between {start} and {stop}"
    return float(np.median([p["members"][member]["weight"] for p in points]))


def test_every_policy_is_scored_on_the_same_rows(hedge_run):
    report, _, _ = hedge_run
    by_policy = report["policy"]["accuracy_by_policy"]
    assert set(by_policy) == {"uniform", "accuracy", "softmax", "hedge", "awe"}
    assert by_policy["hedge"] == report["ensemble"]["prequential_accuracy"]
    assert by_policy["uniform"] == report["ensemble"]["equal_weight_accuracy"]


def test_hedge_turns_the_noise_member_down(hedge_run):
    _, history, member_of = hedge_run
    assert _median_weight(history, member_of[3], 0.1, 0.9) < 0.05


def test_hedge_turns_the_drifted_member_down_after_its_switch(hedge_run):
    _, history, member_of = hedge_run
    # Partition 2 switches at 30% of its rows, about 30% of all rows (equal partitions).
    before = _median_weight(history, member_of[2], 0.1, 0.28)
    after = _median_weight(history, member_of[2], 0.4, 0.85)
    # One of three good members before the switch: not turned down, though hedge is sharp
    # enough that small loss differences swing it (CI medians seen: 0.12 to 0.37).
    assert before > 0.05, before
    assert after < 0.1 and after < before / 3, (before, after)
