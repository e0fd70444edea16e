"""Dynamic weights against uniform ones, on the same stream, seed, members and rows.

Partition 3 is pure label noise; partition 2 switches to a different concept at 30% of
its rows while the others keep theirs. One job runs with the hedge policy; the
coordinator scores every other policy as a shadow on the same shared-sample rows with
the same member snapshots, so the comparison has no run-to-run noise at all.
"""

from __future__ import annotations

import pytest

from tests.integration.test_end_to_end import run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = "synthetic://hyperplane?noise=0.02,0.02,0.02,0.5&drift_at=none,none,0.3,none"


@pytest.fixture(scope="module")
def hedge_run(ray_local, tmp_path_factory):
    job, report, _ = run_job(tmp_path_factory.mktemp("hedge"), STREAM, policy="hedge")
    job.shutdown()
    by_policy = report["policy"]["accuracy_by_policy"]
    print("prequential accuracy by policy:", {k: round(v, 4) for k, v in by_policy.items()})
    return report


def test_every_policy_is_scored_on_the_same_rows(hedge_run):
    by_policy = hedge_run["policy"]["accuracy_by_policy"]
    assert set(by_policy) == {"uniform", "accuracy", "softmax", "hedge", "awe"}
    assert by_policy["hedge"] == hedge_run["ensemble"]["prequential_accuracy"]
    assert by_policy["uniform"] == hedge_run["ensemble"]["equal_weight_accuracy"]


def test_hedge_turns_the_noise_and_drifted_members_down(hedge_run):
    weights = {p: m["weight"] for m in hedge_run["members"] for p in m["partitions"]}
    assert weights[3] < 0.05, weights  # pure noise
    assert weights[2] < 0.05, weights  # trained on a concept the shared sample mostly lacks
    assert weights[0] + weights[1] > 0.9, weights


@pytest.mark.xfail(
    strict=True,
    reason="issue 5 acceptance not met yet: on this stream awe/hedge tie or trail uniform "
    "(a near-0.5 noise member barely moves a uniform mean); see docs/benchmarks.md",
)
def test_awe_or_hedge_beats_uniform_with_a_noisy_and_a_drifting_partition(hedge_run):
    by_policy = hedge_run["policy"]["accuracy_by_policy"]
    assert max(by_policy["awe"], by_policy["hedge"]) > by_policy["uniform"] + 0.005, by_policy
