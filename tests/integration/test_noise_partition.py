"""A member fed pure label noise must end with a clearly lower weight than the others."""

from __future__ import annotations

import pytest
import requests

from tests.integration.test_end_to_end import run_job

pytestmark = pytest.mark.integration


def test_pure_noise_partition_gets_a_clearly_lower_weight(ray_local, tmp_path):
    job, report, _ = run_job(
        tmp_path, "synthetic://hyperplane?noise=0.0,0.02,0.05,0.5", impute_missing=True
    )
    try:
        weights = {m["id"]: m["weight"] for m in report["members"]}
        noisy = next(m["id"] for m in report["members"] if 3 in m["partitions"])
        others = [w for mid, w in weights.items() if mid != noisy]
        assert weights[noisy] < 0.5 * min(others), weights
        # This job imputes missing features: the answer says which were imputed.
        partial = {f"x{i}": 0.5 for i in range(9)}
        answer = requests.post(f"{job.url}/predict", json={"rows": [partial]}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["imputed"] == [{"row": 0, "features": ["x9"]}]
    finally:
        job.shutdown()
