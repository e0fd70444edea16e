"""`pipelines.report`: report.json round-trips, the plot is a real PNG, the summary reads right."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.report import ReportPaths, drift_marks, summarise, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_report(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "rows_seen": 120_000,
        "rows_trained": 119_500,
        "dead_letter": 12,
        "elapsed_s": 7.88,
        "throughput_rows_per_s": 15_234.4,
        "members": [
            {"id": 0, "partitions": [0], "rows": 30_000, "recent_accuracy": 0.901, "weight": 0.31},
            {"id": 1, "partitions": [1], "rows": 30_000, "recent_accuracy": 0.893, "weight": 0.30},
            {
                "id": 2,
                "partitions": [2, 3],
                "rows": 59_500,
                "recent_accuracy": None,
                "weight": 0.39,
            },
        ],
        "ensemble": {
            "prequential_accuracy": 0.912,
            "equal_weight_accuracy": 0.905,
            "best_member_accuracy": 0.897,
            "eval_rows": 4_000,
        },
        "source": "synthetic://drift?seed=7",
        "weights_version": 57,
    }
    report.update(overrides)
    return report


def make_history(points: int = 40, members: int = 3) -> list[dict[str, Any]]:
    """A drifting run: accuracy dips mid-stream, weights shift, some values are gaps."""
    history = []
    for i in range(points):
        raw = np.array([1.0 + (m == i % members) for m in range(members)])
        weights = raw / raw.sum()
        history.append(
            {
                "rows": (i + 1) * 3_000,
                "elapsed_s": (i + 1) * 0.2,
                # The first two points have no accuracy yet: gaps, not zeros.
                "ensemble_accuracy": None if i < 2 else 0.9 - 0.2 * (15 <= i < 20),
                "equal_weight_accuracy": None if i < 2 else 0.88 - 0.25 * (15 <= i < 20),
                "members": {
                    str(m): {
                        "accuracy": None if (i < 2 or (m == 1 and i == 10)) else 0.85 + 0.01 * m,
                        "weight": float(weights[m]),
                    }
                    for m in range(members)
                },
            }
        )
    return history


def read_png(path: Path) -> bytes:
    data = path.read_bytes()
    assert len(data) > 1_000
    assert data.startswith(PNG_MAGIC)
    return data


def test_report_json_round_trips(tmp_path: Path) -> None:
    report = make_report()

    paths = write_report(report, make_history(), tmp_path)

    assert paths == ReportPaths(tmp_path / "report.json", tmp_path / "accuracy.png")
    assert json.loads(paths.json_path.read_text()) == report
    assert paths.json_path.read_text().startswith("{\n  ")  # indented for humans


def test_write_report_creates_missing_folder_and_leaves_no_temp_files(tmp_path: Path) -> None:
    out_dir = tmp_path / "runs" / "latest"

    write_report(make_report(), make_history(), str(out_dir))
    write_report(make_report(rows_seen=240_000), make_history(), out_dir)  # overwrite

    assert sorted(p.name for p in out_dir.iterdir()) == ["accuracy.png", "report.json"]
    assert json.loads((out_dir / "report.json").read_text())["rows_seen"] == 240_000


def test_numpy_values_and_non_finite_floats_become_plain_json(tmp_path: Path) -> None:
    report = make_report(
        elapsed_s=np.float32(2.5),
        rows_seen=np.int64(10),
        extra={"scores": np.array([0.5, 0.25]), "bad": math.nan, "inf": math.inf},
    )

    paths = write_report(report, [], tmp_path)

    written = json.loads(paths.json_path.read_text())
    assert written["elapsed_s"] == 2.5
    assert written["rows_seen"] == 10
    assert written["extra"] == {"scores": [0.5, 0.25], "bad": None, "inf": None}


def test_write_report_does_not_mutate_its_inputs(tmp_path: Path) -> None:
    report, history = make_report(), make_history()
    report_before, history_before = copy.deepcopy(report), copy.deepcopy(history)

    write_report(report, history, tmp_path)

    assert report == report_before
    assert history == history_before


def test_missing_top_level_keys_are_all_named(tmp_path: Path) -> None:
    report = make_report()
    del report["rows_trained"]
    del report["ensemble"]

    with pytest.raises(ValueError, match="rows_trained, ensemble"):
        write_report(report, [], tmp_path)
    assert not (tmp_path / "report.json").exists()


def test_missing_member_and_ensemble_keys_are_named_with_their_place(tmp_path: Path) -> None:
    report = make_report()
    del report["members"][1]["weight"]
    del report["ensemble"]["eval_rows"]

    with pytest.raises(ValueError, match=r"members\[1\]\.weight, ensemble\.eval_rows"):
        write_report(report, [], tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"members": {"0": {}}}, r"report\['members'\] must be a list"),
        ({"members": [3]}, r"report\['members'\]\[0\] must be a dict"),
        ({"ensemble": 0.9}, r"report\['ensemble'\] must be a dict"),
    ],
)
def test_wrongly_shaped_sections_are_rejected(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_report(make_report(**overrides), [], tmp_path)


def test_history_point_without_rows_is_rejected(tmp_path: Path) -> None:
    history = make_history(points=3)
    del history[1]["rows"]

    with pytest.raises(ValueError, match=r"history\[1\] needs a numeric 'rows'"):
        write_report(make_report(), history, tmp_path)


def test_plot_is_a_png_for_realistic_history_with_gaps(tmp_path: Path) -> None:
    paths = write_report(make_report(), make_history(), tmp_path)

    read_png(paths.plot_path)


def test_plot_is_a_png_for_empty_history(tmp_path: Path) -> None:
    paths = write_report(make_report(), [], tmp_path)

    read_png(paths.plot_path)


@pytest.mark.parametrize(
    "history",
    [
        pytest.param(make_history(points=1), id="single-point"),
        pytest.param([{"rows": 100}, {"rows": 200, "members": None}], id="no-member-data"),
        pytest.param(
            # Member 3 joins mid-stream (scale-up): absent points are gaps / zero weight.
            [
                *make_history(points=5, members=3),
                {"rows": 20_000, "members": {"0": {"weight": 0.5}, "3": {"weight": 0.5}}},
            ],
            id="member-joins-late",
        ),
    ],
)
def test_plot_handles_sparse_histories(tmp_path: Path, history: list[dict[str, Any]]) -> None:
    paths = write_report(make_report(), history, tmp_path)

    read_png(paths.plot_path)


def test_plot_does_not_touch_pyplot_state(tmp_path: Path) -> None:
    import matplotlib

    backend_before = matplotlib.get_backend()

    write_report(make_report(), make_history(), tmp_path)

    assert matplotlib.get_backend() == backend_before


def test_summarise_mentions_the_figures() -> None:
    text = summarise(make_report())

    assert "120,000 seen" in text
    assert "119,500 trained" in text
    assert "12 dead-letter" in text
    assert "15,234 rows/s" in text
    assert "weighted ensemble 0.912" in text
    assert "equal-weight 0.905" in text
    assert "best member 0.897" in text
    assert "+0.007 vs equal-weight" in text
    assert "+0.015 vs best member" in text
    assert "member 0: weight 0.310" in text
    assert "member 2: weight 0.390, recent accuracy -" in text
    assert "partitions [2,3]" in text
    assert not text.endswith("\n")


def test_summarise_shows_dashes_for_missing_figures() -> None:
    text = summarise(
        {"rows_seen": 10, "ensemble": {"prequential_accuracy": None}, "members": "oops"}
    )

    assert "rows: 10 seen, - trained, - dead-letter" in text
    assert "weighted ensemble -, equal-weight -, best member -" in text
    assert "members:" not in text


def test_a_regression_report_summarises_and_plots_errors(tmp_path):
    report = {
        "rows_seen": 1000,
        "rows_trained": 990,
        "dead_letter": 0,
        "elapsed_s": 2.0,
        "throughput_rows_per_s": 495.0,
        "weights_version": 3,
        "members": [
            {
                "id": 0,
                "partitions": [0],
                "rows": 990,
                "recent_accuracy": None,
                "recent_error": 0.2,
                "weight": 1.0,
            }
        ],
        "ensemble": {
            "prequential_accuracy": None,
            "equal_weight_accuracy": None,
            "best_member_accuracy": None,
            "prequential_error": 0.20,
            "equal_weight_error": 0.25,
            "best_member_error": 0.22,
            "eval_rows": 50,
        },
    }
    text = summarise(report)
    assert "error (RMSE) on 50 eval rows: weighted ensemble 0.200" in text
    assert "+0.050 vs equal-weight" in text  # lower error counts as a gain
    assert "recent error 0.200" in text
    history = [
        {
            "rows": r,
            "ensemble_accuracy": None,
            "ensemble_error": 0.3 - r / 10_000,
            "equal_weight_error": 0.3,
            "members": {"0": {"error": 0.3, "weight": 1.0}},
        }
        for r in (100, 500, 1000)
    ]
    paths = write_report(report, history, tmp_path)
    assert paths.plot_path.stat().st_size > 0


def test_drift_events_are_placed_on_the_stream_axis_and_plotted(tmp_path: Path) -> None:
    history = make_history()
    for point in history:  # member 0 learns a third of the rows seen
        point["members"]["0"]["rows"] = point["rows"] // 3
    events = [
        {"rows": 15_000, "action": "reset"},  # at the point with 45,000 rows seen
        {"rows": 10**9, "action": "reset"},  # past the last point: left out
    ]
    members = make_report()["members"]
    members[0]["drift"] = {"detector": "adwin", "events": events}
    members[1]["drift"] = {"detector": "adwin", "events": [{"rows": 1, "action": "none"}]}
    report = make_report(members=members)

    # Member 1 has no rows in the history: its event has nowhere to go.
    assert drift_marks(report, history) == [(45_000.0, "0", "reset")]
    read_png(write_report(report, history, tmp_path).plot_path)
