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

from tests.integration.test_end_to_end import run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = "synthetic://hyperplane?noise=0.02,0.02,0.02,0.5&drift_at=none,none,0.3,none"
# Partition 2 switches at 30% of its rows, about 30% of all rows (members progress at
# similar rates, not equal ones: one may be a few percent ahead). "Before" starts once
# members have ~15k rows each: earlier, one member is often a few points ahead of the
# others while all are still learning, and hedge (sharp by design) gives it most of
# the weight, which says nothing about the member that will drift.
BEFORE = (0.15, 0.27)
# Members learn ~100k rows/s on two cores while the coordinator records a history point
# every 50-100 ms, so a window of 12% of the stream needs about a million rows to hold
# the handful of points each assertion takes a median over.
ROWS = 1_000_000


@pytest.fixture(scope="module")
def hedge_run(ray_local, tmp_path_factory):
    # A dense history (every 50 ms) so that each window below holds enough points.
    job, report, _ = run_job(
        tmp_path_factory.mktemp("hedge"),
        STREAM,
        rows=ROWS,
        policy="hedge",
        history_interval_s=0.05,
    )
    job.shutdown()
    by_policy = report["policy"]["accuracy_by_policy"]
    print("prequential accuracy by policy:", {k: round(v, 4) for k, v in by_policy.items()})
    member_of = {p: str(m["id"]) for m in report["members"] for p in m["partitions"]}
    print(
        "median weights: noise member (10-90%)",
        round(_median_weight(job.history, member_of[3], 0.1, 0.9), 4),
        "drifted member before/after its switch",
        round(_median_weight(job.history, member_of[2], *BEFORE), 4),
        round(_median_weight(job.history, member_of[2], 0.4, 0.85), 4),
    )
    return report, job.history, member_of


def _median_weight(history, member: str, start: float, stop: float) -> float:
    return _median(history, member, start, stop, "weight")


def _median(history, member: str, start: float, stop: float, key: str) -> float:
    points = [p for p in history if start * ROWS <= p["rows"] <= stop * ROWS]
    assert len(points) >= 5, f"only {len(points)} history points between {start} and {stop}"
    return float(np.median([p["members"][member][key] for p in points]))


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
    drifted, good = member_of[2], (member_of[0], member_of[1])
    # Before its switch the drifted member is one of three good members on the shared
    # sample. Its *weight* there is not asserted: hedge is sharp by design, and among
    # near-equal members it may give one of them most of the weight for a while (medians
    # seen across runs: 0.01 to 0.49), so a weight floor would test luck, not the policy.
    accuracy_before = _median(history, drifted, *BEFORE, "accuracy")
    best_good_before = max(_median(history, m, *BEFORE, "accuracy") for m in good)
    assert accuracy_before > best_good_before - 0.03, (accuracy_before, best_good_before)
    # After it, its shared-sample accuracy falls and hedge turns it down: well under the
    # third a good member would share.
    accuracy_after = _median(history, drifted, 0.4, 0.85, "accuracy")
    assert accuracy_after < accuracy_before - 0.1, (accuracy_before, accuracy_after)
    assert _median_weight(history, drifted, 0.4, 0.85) < 0.05
