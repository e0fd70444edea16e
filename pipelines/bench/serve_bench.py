"""`online-ensemble bench serve`: Serve latency and throughput, the ensemble against a floor.

In one run, on one Ray: (a) a trivial Serve deployment that returns a constant (the
floor: HTTP proxy, routing, replica round trip), and (b) the 4-member ensemble after a
short training run, both answering a 1-row JSON request. Latency is measured with one
kept-alive client per target, one request to each target in turn, in a fresh random
order per turn, so that both meet the same moment's load on a shared machine
(`alternating_latencies`); requests/s with several concurrent clients; bulk rows/s with
1,024-row Arrow IPC requests to the ensemble.

Also, alternating with the two: (c) a second replica of the same ensemble (same
coordinator, same snapshots) whose graph computes in TensorFlow instead of the default
NumPy forward pass of MLP members, so the run shows what that path saves
(``ensemble_tensorflow_*``, ``tensorflow_added_p50_ms``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from actors.requests import ARROW_STREAM
from actors.serve_app import build_app
from pipelines.bench.latency import (
    Target,
    alternating_latencies,
    concurrent_rate,
    percentile_ms,
    sequential_latencies,
)
from pipelines.config import JobConfig
from pipelines.job import Job

__all__ = ["run_serve_bench"]

logger = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class ConstantFloor:
    """The floor: answers every request with a constant, reading the body like the ensemble."""

    async def __call__(self, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"predictions": [1], "probabilities": [0.5], "weights_version": 0})


def _arrow_body(features: list[str], rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    table = pa.table({name: rng.random(rows, dtype=np.float32) for name in features})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def run_serve_bench(
    *,
    port: int = 8000,
    members: int = 4,
    train_rows: int = 100_000,
    requests: int = 1000,
    clients: int = 4,
    rate_seconds: float = 5.0,
    bulk_requests: int = 40,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring)."""
    with tempfile.TemporaryDirectory() as report_dir:
        config = JobConfig(
            members=members,
            rows=train_rows,
            port=port,
            report=report_dir,
            progress=False,
            seed=seed,
        )
        job = Job(config)
        try:
            job.start()
            job.wait()  # train to the end: the bench measures serving, not training load
            serve.run(ConstantFloor.bind(), name="floor", route_prefix="/floor")  # type: ignore[attr-defined]
            features = job.features
            serve.run(
                build_app(
                    job.coordinator,
                    features,
                    config.model_spec(),
                    expected_members=members,
                    forward="tensorflow",
                ),
                name="ensemble_tensorflow",
                route_prefix="/tensorflow",
            )
            row = json.dumps({"rows": [{name: 0.5 for name in features}]}).encode()
            targets = {
                "floor": Target(config.host, port, "/floor", row),
                "ensemble": Target(config.host, port, "/predict", row),
                "ensemble_tensorflow": Target(config.host, port, "/tensorflow/predict", row),
            }
            for target in targets.values():  # warm every path before measuring
                sequential_latencies(target, 50)
            samples, failures = alternating_latencies(targets, requests, seed)
            floor, ensemble = targets["floor"], targets["ensemble"]
            floor_rps, floor_rate_failures = concurrent_rate(floor, clients, rate_seconds)
            ensemble_rps, ensemble_rate_failures = concurrent_rate(ensemble, clients, rate_seconds)
            bulk = Target(
                config.host, port, "/predict", _arrow_body(features, 1024, seed), ARROW_STREAM
            )
            sequential_latencies(bulk, 5)
            bulk_latencies, bulk_failures = sequential_latencies(bulk, bulk_requests)
        finally:
            job.shutdown()
    floor_all, ensemble_all = samples["floor"], samples["ensemble"]
    tensorflow_all = samples["ensemble_tensorflow"]
    result = {
        "members": members,
        "requests_per_target": int(floor_all.size),
        "floor_p50_ms": percentile_ms(floor_all, 50),
        "floor_p99_ms": percentile_ms(floor_all, 99),
        "ensemble_p50_ms": percentile_ms(ensemble_all, 50),
        "ensemble_p99_ms": percentile_ms(ensemble_all, 99),
        "ensemble_tensorflow_p50_ms": percentile_ms(tensorflow_all, 50),
        "ensemble_tensorflow_p99_ms": percentile_ms(tensorflow_all, 99),
        "floor_requests_per_s": floor_rps,
        "ensemble_requests_per_s": ensemble_rps,
        "bulk_rows_per_request": 1024,
        "bulk_rows_per_s": 1024 * bulk_requests / float(bulk_latencies.sum()),
        "failed_requests": sum(failures.values())
        + floor_rate_failures
        + ensemble_rate_failures
        + bulk_failures,
        "clients_for_rate": clients,
    }
    result["added_p50_ms"] = result["ensemble_p50_ms"] - result["floor_p50_ms"]
    # The median of the per-request differences: request i of each target was sent at the
    # same moment, so this is the added time under the same load, request by request.
    result["paired_added_p50_ms"] = float(np.median(ensemble_all - floor_all) * 1000.0)
    result["p99_ratio"] = result["ensemble_p99_ms"] / result["floor_p99_ms"]
    result["tensorflow_added_p50_ms"] = (
        result["ensemble_tensorflow_p50_ms"] - result["floor_p50_ms"]
    )
    return result
