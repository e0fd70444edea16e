"""A member fed pure label noise must end with a clearly lower weight than the others."""

from __future__ import annotations

import pytest

from tests.integration.test_end_to_end import run_job

pytestmark = pytest.mark.integration


def test_pure_noise_partition_gets_a_clearly_lower_weight(ray_local, tmp_path):
    job, report, _ = run_job(tmp_path, "synthetic://hyperplane?noise=0.0,0.02,0.05,0.5")
    try:
        weights = {m["id"]: m["weight"] for m in report["members"]}
        noisy = next(m["id"] for m in report["members"] if 3 in m["partitions"])
        others = [w for mid, w in weights.items() if mid != noisy]
        assert weights[noisy] < 0.5 * min(others), weights
    finally:
        job.shutdown()
