"""Integration fixtures: one real local Ray per test module, free loopback ports."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="online-ensemble",
        log_to_driver=False,
        logging_level="WARNING",
    )
    yield ray
    ray.shutdown()
