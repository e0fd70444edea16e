"""`online-ensemble bench drift`: how soon the ensemble recovers from an abrupt switch, with
drift detection off and on, on the same stream and seed.

Two streams, each switching half-way through every partition: SEA (``synthetic://sea``)
with 10% label noise, from concept 0 (``f0 + f1 <= 8``) to concept 3 (``<= 9.5``), a
mild switch (about 12% of the labels change); and the rotating hyperplane with 5% noise,
whose hyperplane is replaced by a fresh one, a severe switch. On each, two real jobs (4
members, the coordinator, Serve) run in turn on one Ray: one with detection off, one
with `--drift-detector adwin --drift-action reset` (or the detector and action given).
Nothing else differs. Jobs are not bit-for-bit repeatable (which shared-sample rows a
publish carries depends on timing), so compare runs with the spread between runs of the
same settings in mind (docs/benchmarks.md).

The ensemble's accuracy is the coordinator's: the weighted mix scored on the shared
sample, rows no member has trained on yet (test-then-train at the ensemble level). The
bench raises the sample share to 20% and shortens the window to 500 sampled rows, so a
history point covers the last ~2,500 stream rows; points come every 0.1 s. From them:

* ``pre_switch_accuracy``: the median over the 20% of the stream before the switch;
* ``rows_to_regain``: stream rows from the switch to the first point, after the
  accuracy fell below ``share`` (95%) of that, where it is back at or above it (0 if it
  never fell below; None if it never came back);
* ``post_switch_accuracy``: the mean over the quarter of the stream after the switch.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from pipelines.config import JobConfig
from pipelines.job import Job

__all__ = ["STREAMS", "rows_to_regain", "run_drift_bench"]

STREAMS = {
    # A mild switch: about 12% of the labels change (concept 0 -> 3), under 10% noise.
    "sea": "synthetic://sea?concept=0&drift_concept=3&noise=0.1&drift_at=0.5",
    # A severe one: every partition's hyperplane is replaced by a new one.
    "hyperplane": "synthetic://hyperplane?noise=0.05&drift_at=0.5",
}


def rows_to_regain(
    history: Sequence[Mapping[str, Any]], switch_rows: int, share: float = 0.95
) -> dict[str, float | int | None]:
    """Recovery figures from the coordinator's history (see the module docstring).

    Args:
        history: points with ``rows`` (stream rows learned) and ``ensemble_accuracy``.
        switch_rows: stream rows at the switch.
        share: what share of the pre-switch accuracy counts as regained.

    Raises:
        ValueError: if no point lies in the stretch before the switch.
    """
    points = [(int(p["rows"]), p["ensemble_accuracy"]) for p in history]
    points = [(rows, float(acc)) for rows, acc in points if acc is not None]
    before = [acc for rows, acc in points if 0.6 * switch_rows <= rows < switch_rows]
    if not before:
        raise ValueError(f"no history point between {0.6 * switch_rows:.0f} and {switch_rows} rows")
    pre = statistics.median(before)
    after = [(rows, acc) for rows, acc in points if rows >= switch_rows]
    fell = next((i for i, (_, acc) in enumerate(after) if acc < share * pre), None)
    regained: int | None
    if fell is None:
        regained = 0
    else:
        back = next((rows for rows, acc in after[fell:] if acc >= share * pre), None)
        regained = None if back is None else back - switch_rows
    quarter = [acc for rows, acc in after if rows < 1.5 * switch_rows]
    return {
        "pre_switch_accuracy": round(pre, 4),
        "lowest_accuracy": round(min((acc for _, acc in after), default=pre), 4),
        "rows_to_regain": regained,
        "post_switch_accuracy": round(statistics.fmean(quarter), 4) if quarter else None,
    }


def run_drift_bench(
    *,
    rows: int = 800_000,
    members: int = 4,
    detector: str = "adwin",
    action: str = "reset",
    seed: int = 0,
    port: int = 8000,
    streams: Sequence[str] = tuple(STREAMS),
) -> dict[str, Any]:
    """Run both jobs on each stream and return the figures (see the module docstring)."""
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results: dict[str, Any] = {}
    try:
        for stream in streams:
            runs = {
                name: _run(STREAMS[stream], rows, members, seed, port, drift_detector, action)
                for name, drift_detector in (("detection_off", "none"), ("detection_on", detector))
            }
            off = runs["detection_off"]["rows_to_regain"]
            on = runs["detection_on"]["rows_to_regain"]
            results[stream] = {
                "uri": STREAMS[stream],
                **runs,
                "regain_ratio_off_over_on": round(off / on, 2) if off and on else None,
            }
    finally:
        if started_ray:
            ray.shutdown()
    return {
        "rows": rows,
        "members": members,
        "seed": seed,
        "detector": detector,
        "action": action,
        "streams": results,
    }


def _run(
    uri: str, rows: int, members: int, seed: int, port: int, drift_detector: str, action: str
) -> dict[str, Any]:
    """One job to the end; its recovery figures and drift events."""
    with tempfile.TemporaryDirectory() as report_dir:
        config = JobConfig(
            source=uri,
            rows=rows,
            members=members,
            seed=seed,
            port=port,
            report=report_dir,
            progress=False,
            checkpoints=False,
            eval_fraction=0.2,
            window=500,
            history_interval_s=0.1,
            drift_detector=drift_detector,
            drift_action=action,
        )
        job = Job(config)
        try:
            job.start()
            report = job.wait()
        finally:
            job.shutdown()
    figures: dict[str, Any] = dict(rows_to_regain(job.history, rows // 2))
    drift = [m.get("drift", {}) for m in report["members"]]
    figures["drift_responses"] = sum(d.get("acted", 0) for d in drift)
    figures["rows_trained"] = report["rows_trained"]
    # Where each member's drift events fell, in its own rows (its switch is at half of
    # them), to tell a response to the switch from a false alarm.
    figures["event_rows"] = {
        str(m["id"]): [e["rows"] for e in d.get("events", [])]
        for m, d in zip(report["members"], drift, strict=True)
    }
    return figures
