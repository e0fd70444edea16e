"""The names `bench accuracy` takes: its streams, River's learners and the knowledge-flow
experiments (kept apart so the CLI can check them without importing TensorFlow)."""

from __future__ import annotations

__all__ = ["KNOWLEDGE", "REGRESSION_STREAMS", "RIVER_LEARNERS", "STREAMS"]

# Per-partition noise for the "partitioned" variants: one clean, one very noisy partition.
STREAMS: dict[str, str] = {
    "sea": "synthetic://sea?noise=0.1&drift_at=0.5",
    "sea_partitioned": "synthetic://sea?noise=0.0,0.1,0.2,0.3&drift_at=0.5",
    "hyperplane": "synthetic://hyperplane?noise=0.05&rotation=0.0001&drift_at=none",
    "hyperplane_partitioned": (
        "synthetic://hyperplane?noise=0.0,0.05,0.15,0.3&rotation=0.0001&drift_at=none"
    ),
    "agrawal": "synthetic://agrawal?function=0&drift_function=2&noise=0.05&drift_at=0.5",
    "agrawal_partitioned": (
        "synthetic://agrawal?function=0&drift_function=2&noise=0.0,0.05,0.1,0.2&drift_at=0.5"
    ),
    "periodic": "synthetic://periodic?noise=0.05&drift_at=0.5",
    "periodic_partitioned": "synthetic://periodic?noise=0.02,0.05,0.1,0.2&drift_at=0.5",
    # river://NAME: a real dataset bundled with River, written to four Parquet files.
    "bananas": "river://bananas",
}
REGRESSION_STREAMS = ("periodic", "periodic_partitioned")

RIVER_LEARNERS = ("river_arf", "river_hat", "river_logreg")
"""River's learners, by harness key (see `pipelines.bench.river_baselines`)."""

KNOWLEDGE = ("none", "shared-sample", "peer-average")
"""How members of the replayed ensemble learn from each other (`ensemble_replay`)."""
