"""The end-of-run report: `report.json`, an accuracy/weights plot, and a text summary.

The caller (the job) assembles the report dict and the history of points over the
stream; this module only checks the shape, writes both files atomically, and turns
the figures into a few lines for the terminal.

The plot uses `matplotlib.figure.Figure` with `FigureCanvasAgg` directly, never
`pyplot`, so it touches no global backend state and is safe in any process (a Ray
actor, a worker thread, a headless CI runner).

Example::

    paths = write_report(report, history, "report/")
    logger.info("report written to %s and %s", paths.json_path, paths.plot_path)
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

__all__ = [
    "REQUIRED_ENSEMBLE_KEYS",
    "REQUIRED_MEMBER_KEYS",
    "REQUIRED_REPORT_KEYS",
    "ReportPaths",
    "summarise",
    "write_report",
]

logger = logging.getLogger(__name__)

REQUIRED_REPORT_KEYS: tuple[str, ...] = (
    "rows_seen",
    "rows_trained",
    "dead_letter",
    "elapsed_s",
    "throughput_rows_per_s",
    "members",
    "ensemble",
)
REQUIRED_MEMBER_KEYS: tuple[str, ...] = ("id", "partitions", "rows", "recent_accuracy", "weight")
REQUIRED_ENSEMBLE_KEYS: tuple[str, ...] = (
    "prequential_accuracy",
    "equal_weight_accuracy",
    "best_member_accuracy",
    "eval_rows",
)

JSON_NAME = "report.json"
PLOT_NAME = "accuracy.png"


@dataclass(frozen=True)
class ReportPaths:
    """Where `write_report` put its two files."""

    json_path: Path
    plot_path: Path


def write_report(
    report: Mapping[str, Any], history: Sequence[Mapping[str, Any]], out_dir: str | Path
) -> ReportPaths:
    """Write `out_dir/report.json` and `out_dir/accuracy.png`, each atomically.

    Both inputs are checked before anything is written. Non-finite floats (NaN,
    inf) are written as JSON `null` so the file stays strict JSON; numpy scalars
    and arrays are written as plain numbers and lists.

    Args:
        report: the run report; needs the keys in `REQUIRED_REPORT_KEYS`, each
            member the keys in `REQUIRED_MEMBER_KEYS`, and `ensemble` the keys in
            `REQUIRED_ENSEMBLE_KEYS`. Other keys are written unchanged.
        history: points over the stream, oldest first, each with `rows` (rows seen
            so far) and optionally `ensemble_accuracy`, `equal_weight_accuracy`
            and `members` (`{"0": {"accuracy": ..., "weight": ...}, ...}`).
            Missing or None values are drawn as gaps. May be empty.
        out_dir: folder to write into; created if missing.

    Returns:
        The paths of the JSON file and the PNG plot.

    Raises:
        ValueError: a required key is missing (all missing keys are named), or a
            history point has no numeric `rows`.
        TypeError: `report` is not a mapping or `history` not a sequence of mappings.
        OSError: the folder or a file cannot be written.
    """
    _validate_report(report)
    _validate_history(history)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    plot_path = out / PLOT_NAME

    text = json.dumps(_to_json_safe(report), indent=2, allow_nan=False) + "\n"
    _atomic_write_bytes(json_path, text.encode("utf-8"))

    png = io.BytesIO()
    figure = _build_figure(report, history)
    figure.savefig(png, format="png", dpi=110)
    _atomic_write_bytes(plot_path, png.getvalue())

    logger.info("wrote %s and %s", json_path, plot_path)
    return ReportPaths(json_path=json_path, plot_path=plot_path)


def summarise(report: Mapping[str, Any]) -> str:
    """A short multi-line human summary of a report, for the end of a CLI run.

    Missing or None figures are shown as "-", so a partial report still prints.

    Args:
        report: a report shaped as `write_report` expects.

    Returns:
        Lines for rows, throughput, ensemble vs equal-weight vs best-member
        accuracy, and each member's weight, joined by newlines (no trailing one).

    Example::

        >>> summarise({"rows_seen": 1000, "rows_trained": 990}).splitlines()[0]
        'rows: 1,000 seen, 990 trained, - dead-letter'
    """
    ensemble = report.get("ensemble")
    ensemble = ensemble if isinstance(ensemble, Mapping) else {}
    # Regression reports an error (RMSE, lower is better) where classification reports
    # an accuracy; gains are signed so that positive always means "the weights helped".
    metric, sign = ("error", -1.0) if _is_regression(ensemble) else ("accuracy", 1.0)
    weighted = _as_float(ensemble.get(f"prequential_{metric}"))
    equal = _as_float(ensemble.get(f"equal_weight_{metric}"))
    best = _as_float(ensemble.get(f"best_member_{metric}"))

    lines = [
        f"rows: {_fmt_int(report.get('rows_seen'))} seen, "
        f"{_fmt_int(report.get('rows_trained'))} trained, "
        f"{_fmt_int(report.get('dead_letter'))} dead-letter"
        + (
            f", {_fmt_int(report.get('rows_sampled'))} sampled away to keep pace"
            if report.get("rows_sampled")
            else ""
        ),
        f"throughput: {_fmt_int(report.get('throughput_rows_per_s'))} rows/s "
        f"over {_fmt_float(report.get('elapsed_s'), 1)} s",
        f"{'error (RMSE)' if metric == 'error' else 'accuracy'} on "
        f"{_fmt_int(ensemble.get('eval_rows'))} eval rows: "
        f"weighted ensemble {_fmt_float(weighted, 3)}, "
        f"equal-weight {_fmt_float(equal, 3)}, best member {_fmt_float(best, 3)}",
    ]
    if weighted is not None and (equal is not None or best is not None):
        gains = []
        if equal is not None:
            gains.append(f"{sign * (weighted - equal):+.3f} vs equal-weight")
        if best is not None:
            gains.append(f"{sign * (weighted - best):+.3f} vs best member")
        better = "lower error" if metric == "error" else "higher accuracy"
        lines.append(f"weighted ensemble ({better} is +): " + ", ".join(gains))

    members = report.get("members")
    if isinstance(members, Sequence) and not isinstance(members, str) and members:
        lines.append("members:")
        for member in members:
            if not isinstance(member, Mapping):
                continue
            partitions = member.get("partitions")
            partitions_text = (
                ",".join(str(p) for p in partitions)
                if isinstance(partitions, Sequence) and not isinstance(partitions, str)
                else "-"
            )
            lines.append(
                f"  member {member.get('id', '-')}: "
                f"weight {_fmt_float(member.get('weight'), 3)}, "
                f"recent {metric} {_fmt_float(member.get(f'recent_{metric}'), 3)}, "
                f"{_fmt_int(member.get('rows'))} rows, partitions [{partitions_text}]"
            )
    return "\n".join(lines)


# --- validation ---------------------------------------------------------------


def _validate_report(report: Mapping[str, Any]) -> None:
    if not isinstance(report, Mapping):
        raise TypeError(f"report must be a mapping (dict), got {type(report).__name__}")
    missing = [key for key in REQUIRED_REPORT_KEYS if key not in report]

    members = report.get("members")
    if "members" in report:
        if isinstance(members, str) or not isinstance(members, Sequence):
            raise ValueError(
                f"report['members'] must be a list of member dicts, got {type(members).__name__}"
            )
        for index, member in enumerate(members):
            if not isinstance(member, Mapping):
                raise ValueError(
                    f"report['members'][{index}] must be a dict with keys "
                    f"{list(REQUIRED_MEMBER_KEYS)}, got {type(member).__name__}"
                )
            missing += [f"members[{index}].{k}" for k in REQUIRED_MEMBER_KEYS if k not in member]

    ensemble = report.get("ensemble")
    if "ensemble" in report:
        if not isinstance(ensemble, Mapping):
            raise ValueError(
                f"report['ensemble'] must be a dict with keys {list(REQUIRED_ENSEMBLE_KEYS)}, "
                f"got {type(ensemble).__name__}"
            )
        missing += [f"ensemble.{k}" for k in REQUIRED_ENSEMBLE_KEYS if k not in ensemble]

    if missing:
        raise ValueError(
            f"report is missing required keys: {', '.join(missing)}; "
            "the job assembles them from the coordinator's status (see pipelines/report.py)"
        )


def _validate_history(history: Sequence[Mapping[str, Any]]) -> None:
    if isinstance(history, str) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a list of dicts, got {type(history).__name__}")
    for index, point in enumerate(history):
        if not isinstance(point, Mapping):
            raise TypeError(f"history[{index}] must be a dict, got {type(point).__name__}")
        if _as_float(point.get("rows")) is None:
            raise ValueError(
                f"history[{index}] needs a numeric 'rows' (rows seen so far), "
                f"got {point.get('rows')!r}"
            )


# --- writing ------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync it, then rename over `path`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name == "nt":
        return
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _to_json_safe(value: Any) -> Any:
    """Plain JSON types only: numpy values unwrapped, NaN/inf as None, paths as str."""
    if isinstance(value, Mapping):
        return {str(k): _to_json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _to_json_safe(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_to_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _to_json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --- plotting -----------------------------------------------------------------


def _build_figure(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> Figure:
    figure = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(figure)
    if not history:
        figure.text(0.5, 0.5, "no history recorded", ha="center", va="center", fontsize=16)
        figure.suptitle(_title(report))
        return figure

    acc_ax, weight_ax = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    rows = np.array([float(point["rows"]) for point in history])
    member_ids = _member_ids(history)
    _plot_accuracy(acc_ax, rows, history, member_ids)
    _plot_weights(weight_ax, rows, history, member_ids)
    marks = drift_marks(report, history)
    for i, (at, member_id, action) in enumerate(marks):
        acc_ax.axvline(
            at,
            color="dimgray",
            linestyle=":",
            linewidth=1.2,
            label="drift detected" if i == 0 else None,
        )
        acc_ax.annotate(
            f"m{member_id} {action}",
            (at, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            fontsize=7,
            color="dimgray",
        )
    if marks:
        _legend_outside(acc_ax)  # again, now with the drift lines
    figure.suptitle(_title(report))
    return figure


def drift_marks(
    report: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> list[tuple[float, str, str]]:
    """Where each member's drift events fall on the plot's axis (rows seen by all).

    An event is counted in its member's own rows; it goes at the first history point
    where that member had learned as many. Events past the last point, or of members
    without rows in the history, are left out.

    Returns:
        (rows seen, member id, action) per event, in the members' order.
    """
    marks = []
    for member in report.get("members", []):
        member_id = str(member.get("id"))
        own = [
            (float(p["rows"]), ((p.get("members") or {}).get(member_id) or {}).get("rows"))
            for p in history
        ]
        for event in (member.get("drift") or {}).get("events", []):
            at = next((x for x, r in own if r is not None and r >= event["rows"]), None)
            if at is not None:
                marks.append((at, member_id, str(event["action"])))
    return marks


def _plot_accuracy(
    ax: Axes, rows: np.ndarray, history: Sequence[Mapping[str, Any]], member_ids: list[str]
) -> None:
    # A single point draws no line; a marker keeps it visible.
    marker = "o" if len(rows) == 1 else None
    regression = any(point.get("ensemble_error") is not None for point in history)
    metric = "error" if regression else "accuracy"
    ensemble = _series(history, f"ensemble_{metric}")
    equal = _series(history, f"equal_weight_{metric}")
    for member_id in member_ids:
        accuracy = _member_series(history, member_id, metric)
        ax.plot(
            rows, accuracy, linewidth=0.9, alpha=0.8, marker=marker, label=f"member {member_id}"
        )
    ax.plot(
        rows,
        equal,
        color="black",
        linestyle="--",
        linewidth=1.6,
        marker=marker,
        label="equal-weight ensemble",
    )
    ax.plot(
        rows, ensemble, color="crimson", linewidth=2.8, marker=marker, label="weighted ensemble"
    )
    ax.set_title("Recent error (RMSE)" if regression else "Recent accuracy")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)


def _plot_weights(
    ax: Axes, rows: np.ndarray, history: Sequence[Mapping[str, Any]], member_ids: list[str]
) -> None:
    ax.set_title("Mixing weights")
    ax.set_xlabel("rows seen")
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_ylabel("weight")
    ax.grid(True, alpha=0.3)
    if not member_ids:
        ax.text(
            0.5, 0.5, "no member weights recorded", ha="center", va="center", transform=ax.transAxes
        )
        return
    # A member absent from a point (not yet started, or removed) holds no weight there.
    weights = [np.nan_to_num(_member_series(history, m, "weight"), nan=0.0) for m in member_ids]
    ax.stackplot(rows, *weights, labels=[f"member {m}" for m in member_ids], alpha=0.8)
    ax.set_ylim(0.0, max(1.0, float(np.sum(weights, axis=0).max())))
    _legend_outside(ax)


def _legend_outside(ax: Axes) -> None:
    # Outside the axes so that no member count hides the lines; constrained layout makes room.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _title(report: Mapping[str, Any]) -> str:
    ensemble = report.get("ensemble")
    ensemble = ensemble if isinstance(ensemble, Mapping) else {}
    metric = "error" if _is_regression(ensemble) else "accuracy"
    return (
        f"Online ensemble: {_fmt_int(report.get('rows_seen'))} rows, "
        f"{_fmt_int(report.get('throughput_rows_per_s'))} rows/s; "
        f"{'RMSE' if metric == 'error' else 'accuracy'} weighted "
        f"{_fmt_float(ensemble.get(f'prequential_{metric}'), 3)}, equal-weight "
        f"{_fmt_float(ensemble.get(f'equal_weight_{metric}'), 3)}, best member "
        f"{_fmt_float(ensemble.get(f'best_member_{metric}'), 3)}"
    )


def _is_regression(ensemble: Mapping[str, Any]) -> bool:
    """Regression summaries carry errors (RMSE) instead of accuracies."""
    return "prequential_error" in ensemble


def _member_ids(history: Sequence[Mapping[str, Any]]) -> list[str]:
    ids: set[str] = set()
    for point in history:
        members = point.get("members")
        if isinstance(members, Mapping):
            ids.update(str(k) for k in members)
    return sorted(ids, key=lambda m: (0, int(m), m) if m.isdigit() else (1, 0, m))


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """`point[key]` for each point; None or non-numeric values become NaN (a gap)."""
    return _floats_or_nan(point.get(key) for point in history)


def _member_series(history: Sequence[Mapping[str, Any]], member_id: str, field: str) -> np.ndarray:
    """`point["members"][member_id][field]` for each point; absent values become NaN."""
    values = []
    for point in history:
        members = point.get("members")
        member = members.get(member_id) if isinstance(members, Mapping) else None
        values.append(member.get(field) if isinstance(member, Mapping) else None)
    return _floats_or_nan(values)


def _floats_or_nan(values: Iterable[Any]) -> np.ndarray:
    floats = (_as_float(v) for v in values)
    return np.array([np.nan if f is None else f for f in floats], dtype=float)


# --- formatting ---------------------------------------------------------------


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt_int(value: Any) -> str:
    number = _as_float(value)
    return "-" if number is None else f"{number:,.0f}"


def _fmt_float(value: Any, digits: int) -> str:
    number = _as_float(value)
    return "-" if number is None else f"{number:.{digits}f}"
