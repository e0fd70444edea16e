"""`pipelines.progress`: throttled log lines off a terminal, a live table on one."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from rich.console import Console

from pipelines.progress import ProgressDisplay, format_status_line, render_status

LOGGER = "pipelines.progress"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_status(rows: int = 120_000, **overrides: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "rows_seen": rows,
        "throughput_rows_per_s": 15_234.4,
        "elapsed_s": 7.88,
        "dead_letter": 3,
        "weights_version": 57,
        "ensemble": {"prequential_accuracy": 0.9123, "equal_weight_accuracy": 0.9},
        "members": [
            {"id": 0, "rows": 30_000, "recent_accuracy": 0.901, "weight": 0.31},
            {"id": 1, "rows": 30_001, "recent_accuracy": 0.893, "weight": 0.30},
            {"id": 2, "rows": 29_999, "recent_accuracy": 0.88, "weight": 0.29},
            {"id": 3, "rows": 30_000, "recent_accuracy": None, "weight": 0.10},
        ],
    }
    status.update(overrides)
    return status


def make_console() -> Console:
    # A terminal without colour: the live redraw codes stay, style codes do not split the text.
    return Console(file=io.StringIO(), force_terminal=True, color_system=None, width=120)


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_status_line_shows_the_figures() -> None:
    assert format_status_line(make_status()) == (
        "rows=120000 rows/s=15234 ensemble_acc=0.912 weights=[0.31 0.30 0.29 0.10] "
        "version=57 dead_letter=3 elapsed=7.9s"
    )


@pytest.mark.parametrize(
    "status",
    [
        pytest.param({}, id="empty"),
        pytest.param(
            {
                "rows_seen": None,
                "ensemble": None,
                "members": [{"id": None, "weight": None}, "not-a-member", {}],
            },
            id="nones",
        ),
        pytest.param(
            {"rows_seen": "many", "throughput_rows_per_s": float("nan"), "members": 7},
            id="wrong-types",
        ),
    ],
)
def test_missing_or_bad_fields_show_dashes_in_both_modes(
    caplog: pytest.LogCaptureFixture, status: dict[str, Any]
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    console = make_console()

    with ProgressDisplay(interactive=False, clock=FakeClock()) as plain:
        plain.update(status)
    with ProgressDisplay(interactive=True, console=console, clock=FakeClock()) as live:
        live.update(status)

    (line,) = log_lines(caplog)
    assert line.startswith("rows=- rows/s=- ensemble_acc=- weights=[")
    assert "version=- dead_letter=- elapsed=-s" in line
    assert "rows -" in console.file.getvalue()  # type: ignore[attr-defined]


def test_plain_mode_logs_at_most_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    display = ProgressDisplay(interactive=False, interval_s=2.0, clock=clock)

    with display:
        for step in range(20):  # 20 updates over 9.5 s: lines at 0, 2, 4, 6 and 8 s
            display.update(make_status(rows=step * 1_000))
            clock.advance(0.5)
        lines_while_running = log_lines(caplog)

    assert [line.split()[0] for line in lines_while_running] == [
        "rows=0",
        "rows=4000",
        "rows=8000",
        "rows=12000",
        "rows=16000",
    ]
    # Leaving the block logs the last status, which the interval held back.
    assert log_lines(caplog)[-1].startswith("rows=19000 ")
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == LOGGER)


def test_plain_mode_does_not_repeat_a_status_already_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    with ProgressDisplay(interactive=False, clock=FakeClock()) as display:
        display.update(make_status())

    assert len(log_lines(caplog)) == 1


def test_disabled_display_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    console = make_console()

    for interactive in (False, True):
        with ProgressDisplay(
            enabled=False, interactive=interactive, console=console, clock=FakeClock()
        ) as display:
            display.update(make_status())

    assert log_lines(caplog) == []
    assert console.file.getvalue() == ""  # type: ignore[attr-defined]


def test_interactive_mode_renders_member_rows() -> None:
    console = make_console()

    with ProgressDisplay(interactive=True, console=console, clock=FakeClock()) as display:
        display.update(make_status())

    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "rows 120,000" in output
    assert "rows/s 15,234" in output
    assert "ensemble accuracy 0.912" in output
    for member_id in range(4):
        assert f"member {member_id}" in output
    assert "30,001" in output
    assert "0.893" in output
    assert "0.310" in output
    assert "recent accuracy" in output


def test_interactive_mode_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    with ProgressDisplay(interactive=True, console=make_console(), clock=FakeClock()) as display:
        display.update(make_status())

    assert log_lines(caplog) == []


def test_interactive_mode_throttles_redraws_and_shows_the_last_status_on_exit() -> None:
    console = make_console()
    clock = FakeClock()

    with ProgressDisplay(interactive=True, console=console, clock=clock) as display:
        display.update(make_status(rows=1_000))
        display.update(make_status(rows=2_000))  # same instant: held back
        assert "2,000" not in console.file.getvalue()  # type: ignore[attr-defined]

    assert "rows 2,000" in console.file.getvalue()  # type: ignore[attr-defined]


def test_interactive_is_decided_by_the_console_when_not_given() -> None:
    assert ProgressDisplay(console=make_console()).is_interactive
    plain_console = Console(file=io.StringIO(), force_terminal=False)
    assert not ProgressDisplay(console=plain_console).is_interactive


@pytest.mark.parametrize("interval_s", [-1.0, float("nan")])
def test_bad_interval_is_rejected(interval_s: float) -> None:
    with pytest.raises(ValueError, match="interval_s must be a number of seconds >= 0"):
        ProgressDisplay(interval_s=interval_s)


def test_regression_status_shows_errors_not_accuracies():
    status = {
        "rows_seen": 5000,
        "ensemble": {"prequential_accuracy": None, "prequential_error": 0.0612},
        "members": [{"id": 0, "rows": 2500, "recent_accuracy": None, "recent_error": 0.07}],
    }
    assert "ensemble_rmse=0.061" in format_status_line(status)
    console = Console(width=120, record=True)
    console.print(render_status(status))
    text = console.export_text()
    assert "ensemble error (RMSE) 0.061" in text and "0.070" in text
