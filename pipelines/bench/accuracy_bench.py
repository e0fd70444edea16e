"""`online-ensemble bench accuracy`: prequential accuracy against River's best online learners.

On each stream, in one run, on the same rows in the same order with the same seed, every
learner is scored test-then-train on every row:

``ensemble``      this project's default configuration, as `online-ensemble run` gets it
                  (4 members, one partition each), replayed in process
                  (`pipelines.bench.ensemble_replay`): its weighted answer on each row
``best_member``   the member whose answers over *all* rows scored best, in that run
``uniform``       the same members mixed with equal weights
``single_model``  one member of the same settings that reads every partition
``river_*``       River's adaptive random forest, Hoeffding adaptive tree and a logistic
                  (linear, for regression) model behind a standard scaler, defaults

Streams (`STREAMS`): SEA with an abrupt switch and 10% label noise, the rotating
hyperplane with gradual drift, Agrawal with a function switch, the periodic series
(regression; its "accuracy" is R²), each also with a different noise level per partition,
and River's bundled Bananas dataset (5,300 real rows) split into four files.

``rows_per_s`` counts each learner's own work on the stream: for the ensemble its members'
reading and learning, run one after another in this process (a job runs them in
parallel), after each member's first batch (the call that traces its graph); for River,
`predict_one` and `learn_one`. The table also gives the accuracy in
the 5,000 rows after each switch and the rows it took to regain 95% of the pre-switch
accuracy (trailing 1,000-row window; see `pipelines.bench.prequential`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actors.errors import ConfigError
from pipelines.bench.accuracy_streams import REGRESSION_STREAMS, STREAMS
from pipelines.bench.ensemble_replay import KNOWLEDGE, replay_ensemble, replay_single_model
from pipelines.bench.prequential import StreamScores, accuracy_curve, prequential_summary
from pipelines.bench.river_baselines import RIVER_LEARNERS, run_river
from pipelines.config import JobConfig

__all__ = ["LEARNERS", "STREAMS", "format_table", "run_accuracy_bench", "write_plots"]

LEARNERS = ("ensemble", "best_member", "uniform", "single_model", *RIVER_LEARNERS)


def run_accuracy_bench(
    *,
    rows: int = 100_000,
    seed: int = 0,
    streams: Sequence[str] = tuple(STREAMS),
    river: Sequence[str] = RIVER_LEARNERS,
    overrides: dict[str, Any] | None = None,
    knowledge: str = "none",
    publish_rows: int = 4096,
) -> dict[str, Any]:
    """Every learner on every stream; see the module docstring.

    Args:
        rows: rows per synthetic stream (the dataset stream has its own size).
        seed: seeds the streams, the members and River's learners.
        streams: keys of `STREAMS`.
        river: which River learners to run (all by default).
        overrides: `JobConfig` fields to change from the defaults (for tuning runs; the
            figures the acceptance is judged on use none).
        knowledge: how the replayed members learn from each other (`KNOWLEDGE`).
        publish_rows: rows a replayed member learns between two publishes
            (`replay_ensemble`).

    Raises:
        ConfigError: for an unknown stream or River learner.
    """
    unknown_fields = sorted(set(overrides or {}) - set(JobConfig.model_fields))
    if unknown_fields:
        raise ConfigError(
            f"unknown job setting(s) {', '.join(unknown_fields)} (see online-ensemble run --help)"
        )
    if knowledge not in KNOWLEDGE:
        raise ConfigError(f"knowledge ({knowledge!r}) must be one of {', '.join(KNOWLEDGE)}")
    unknown = [s for s in streams if s not in STREAMS]
    if unknown:
        raise ConfigError(f"unknown stream(s) {unknown}; expected some of {', '.join(STREAMS)}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in streams:
            results[name] = _run_stream(
                name,
                rows,
                seed,
                list(river),
                dict(overrides or {}),
                knowledge,
                publish_rows,
                Path(scratch),
            )
    return {
        "rows": rows,
        "seed": seed,
        "overrides": dict(overrides or {}),
        "knowledge": knowledge,
        "publish_rows": publish_rows,
        "streams": results,
    }


def _run_stream(
    name: str,
    rows: int,
    seed: int,
    river: list[str],
    overrides: dict,
    knowledge: str,
    publish_rows: int,
    scratch: Path,
) -> dict[str, Any]:
    uri = STREAMS[name]
    task = "regression" if name in REGRESSION_STREAMS else "binary"
    if uri.startswith("river://"):
        uri = _dataset_files(uri.removeprefix("river://"), scratch)
    config = JobConfig.build(
        source=uri,
        rows=rows,
        seed=seed,
        task=task,
        progress=False,
        checkpoints=False,
        **overrides,
    )
    started = time.perf_counter()
    run = replay_ensemble(config, publish_rows=publish_rows, knowledge=knowledge)
    replay_s = time.perf_counter() - started
    n = len(run.y)
    regression = task == "regression"
    per_row: dict[str, np.ndarray] = {"ensemble": run.ensemble, "uniform": run.uniform}
    rows_per_s: dict[str, float] = {
        "ensemble": run.learn_rows / run.learn_s,
        "best_member": run.learn_rows / run.learn_s,
        "uniform": run.learn_rows / run.learn_s,
    }
    best_id, best = max(
        run.members.items(), key=lambda item: StreamScores(item[1], run.y, regression).accuracy()
    )
    per_row["best_member"] = best
    per_row["single_model"], rows_per_s["single_model"] = replay_single_model(
        config, run.y, run.batch_rows
    )
    for learner in river:
        per_row[learner], rows_per_s[learner] = run_river(learner, run.x, run.y, task, seed)
    scored = {key: StreamScores(scores, run.y, regression) for key, scores in per_row.items()}
    summaries = {key: prequential_summary(s, run.drift_rows) for key, s in scored.items()}
    return {
        "uri": STREAMS[name],
        "task": task,
        "rows": n,
        "drift_rows": run.drift_rows,
        "best_member_id": best_id,
        "final_weights": {str(k): v for k, v in run.final_weights.items()},
        "replay_s": round(replay_s, 1),
        "accuracy": {key: s["accuracy"] for key, s in summaries.items()},
        "rows_per_s": {key: round(v) for key, v in rows_per_s.items()},
        "accuracy_after_drift": {key: s["accuracy_after_drift"] for key, s in summaries.items()},
        "rows_to_regain": {key: s["rows_to_regain"] for key, s in summaries.items()},
        "curves": {key: accuracy_curve(s, window=1000) for key, s in scored.items()},
    }


def _dataset_files(name: str, scratch: Path) -> str:
    """A River dataset written as four Parquet files (a file source, four partitions).

    The rows keep the dataset's order; file k holds the k-th quarter of them.
    """
    if name != "bananas":
        raise ConfigError(f"unknown bundled dataset {name!r}; expected bananas")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from river import datasets

    rows = [(list(x.values()), bool(y)) for x, y in datasets.Bananas()]
    features = np.array([x for x, _ in rows], np.float32)
    labels = np.array([y for _, y in rows], np.int64)
    folder = scratch / name
    folder.mkdir(exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(rows)), 4)):
        table = pa.table(
            {
                **{f"x{i}": features[part, i] for i in range(features.shape[1])},
                "label": labels[part],
            }
        )
        pq.write_table(table, folder / f"part-{k}.parquet")
    return str(folder)


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table: per stream and learner, accuracy, after-drift accuracy, rows to
    regain 95%, rows/s."""
    lines = [
        "| stream | learner | accuracy | after switch (5k rows) | rows to regain 95% | rows/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for stream, figures in result["streams"].items():
        for learner in figures["accuracy"]:
            after = figures["accuracy_after_drift"][learner]
            regain = figures["rows_to_regain"][learner]
            lines.append(
                f"| {stream} | {learner} | {figures['accuracy'][learner]:.4f} | "
                f"{', '.join(f'{a:.4f}' for a in after) or '-'} | "
                f"{', '.join('never' if r is None else f'{r:,}' for r in regain) or '-'} | "
                f"{figures['rows_per_s'][learner]:,} |"
            )
    return "\n".join(lines)


def write_plots(result: dict[str, Any], folder: Path) -> list[Path]:
    """One PNG per stream: trailing 1,000-row accuracy of every learner over the stream."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stream, figures in result["streams"].items():
        figure = Figure(figsize=(9, 4.5))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for learner, curve in figures["curves"].items():
            if curve:
                rows, accuracy = zip(*curve, strict=True)
                axes.plot(rows, accuracy, label=learner, linewidth=1.2)
        for drift in figures["drift_rows"]:
            axes.axvline(drift, color="grey", linestyle="--", linewidth=0.8)
        axes.set_xlabel("stream rows")
        axes.set_ylabel("R² (1,000 rows)" if figures["task"] == "regression" else "accuracy")
        axes.set_title(f"{stream}: prequential accuracy, trailing 1,000 rows")
        axes.legend(fontsize=7, loc="lower right")
        path = folder / f"accuracy_{stream}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        paths.append(path)
    return paths
