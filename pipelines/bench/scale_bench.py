"""`online-ensemble bench scale`: one real job scaled 2 -> 6 -> 3 members under a steady
1-row prediction load while the stream flows.

Figures, all from the one run: how long each step takes, how soon the new members hold a
non-zero weight, the request latency (p50/p99) before, during and after the steps with
their ratios, failed requests, training rows/s at each size, and whether rows learned +
sampled + dead-lettered + context == rows produced.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.bench.latency import Target, percentile_ms
from pipelines.config import JobConfig

if TYPE_CHECKING:
    from pipelines.job import Job

__all__ = ["run_scale_bench"]

ROW = {f"x{i}": 0.5 for i in range(10)}


def run_scale_bench(
    rows: int = 3_000_000, sizes: tuple[int, ...] = (2, 6, 3), port: int = 8000
) -> dict:
    """Run the job, scale it through `sizes` (the first is where it starts), report figures."""
    from pipelines.job import Job  # Ray and TensorFlow load only when the bench runs

    start, *steps = sizes
    with tempfile.TemporaryDirectory() as folder:
        config = JobConfig(
            source="synthetic://hyperplane",
            rows=rows,
            members=start,
            max_members=max(sizes),
            port=port,
            report=Path(folder),
            progress=False,
            checkpoint_every_rows=50_000,
        )
        target = Target("127.0.0.1", port, "/predict", json.dumps({"rows": [ROW]}).encode())
        samples: list[tuple[float, float, int]] = []  # (time, latency s, status)
        stop = threading.Event()

        def client() -> None:
            connection = target.connect()
            while not stop.is_set():
                began = time.monotonic()
                try:
                    status = target.send(connection)
                except OSError:
                    status = 0
                    connection = target.connect()
                samples.append((began, time.monotonic() - began, status))

        with Job(config) as job:
            job.start()
            thread = threading.Thread(target=client, daemon=True)
            thread.start()
            time.sleep(5.0)  # a steady stretch at the starting size, for the baseline
            phases: list[dict] = []
            marks = [time.monotonic()]
            rates = [_rate(job, 3.0)]
            for size in steps:
                began = time.monotonic()
                step = job.scale(size)
                done = time.monotonic()
                weighted_s = None
                while step["added"] and time.monotonic() - done < 120:
                    weights = job.weights()["weights"]
                    if all(weights.get(str(m), 0.0) > 0 for m in step["added"]):
                        weighted_s = round(time.monotonic() - done, 3)
                        break
                    time.sleep(0.1)  # polling the coordinator's weights, bounded above
                phases.append(
                    {
                        "to": size,
                        "step_s": round(done - began, 3),
                        "added": step["added"],
                        "retired": step["retired"],
                        "moves": len(step["moves"]),
                        "new_members_weighted_after_s": weighted_s,
                        "during": (began, done),
                    }
                )
                marks.append(time.monotonic())
                rates.append(_rate(job, 3.0))
            stop.set()
            thread.join(30)
            report = job.wait()
    accounted = (
        report["rows_trained"]
        + report["rows_sampled"]
        + report["dead_letter"]
        + report["rows_context"]
    )
    steady = _latencies(samples, 0, marks[0])
    result: dict = {
        "rows": rows,
        "sizes": list(sizes),
        "requests": len(samples),
        "failed_requests": sum(1 for _, _, status in samples if status != 200),
        "steady_p50_ms": _percentile(steady, 50),
        "steady_p99_ms": _percentile(steady, 99),
        "rows_per_s_by_size": {str(s): round(r) for s, r in zip(sizes, rates, strict=True)},
        "counts_reconcile": report["rows_seen"] == rows == accounted,
        "rows_seen": report["rows_seen"],
        "prequential_accuracy": report["ensemble"]["prequential_accuracy"],
        "steps": [],
    }
    for phase in phases:
        during = _latencies(samples, *phase.pop("during"))
        phase["during_p50_ms"] = _percentile(during, 50)
        phase["during_p99_ms"] = _percentile(during, 99)
        steady_p99, during_p99 = result["steady_p99_ms"], phase["during_p99_ms"]
        phase["p99_ratio_to_steady"] = (
            round(during_p99 / steady_p99, 2) if steady_p99 and during_p99 else None
        )
        result["steps"].append(phase)
    return result


def _percentile(latencies: np.ndarray, q: float) -> float | None:
    return round(percentile_ms(latencies, q), 3) if len(latencies) else None


def _latencies(samples: list[tuple[float, float, int]], start: float, end: float) -> np.ndarray:
    return np.array([lat for at, lat, status in samples if start <= at < end and status == 200])


def _rate(job: Job, seconds: float) -> float:
    """Rows learned per second over the next `seconds` (the job's own counters)."""
    first = job.status()["rows_trained"]
    began = time.monotonic()
    time.sleep(seconds)  # measuring a rate over a fixed span
    return (job.status()["rows_trained"] - first) / (time.monotonic() - began)
