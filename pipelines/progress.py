"""Live progress of a running job: a table in a terminal, a log line elsewhere.

`ProgressDisplay` takes the coordinator's status dict as often as the job likes to
pass it. On a terminal it redraws a `rich` table in place on stderr; otherwise
(CI, a log file, a Ray job's captured output) it logs one plain line per
`interval_s` through the `pipelines.progress` logger, so logs stay small however
often `update` is called. A missing or None field is shown as "-": progress
display never stops a job.

Example::

    with ProgressDisplay() as progress:
        while job.running():
            progress.update(coordinator.status())
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["ProgressDisplay", "format_status_line", "render_status"]

logger = logging.getLogger(__name__)

# A terminal redraw costs far more than an update; four frames a second reads as live.
_INTERACTIVE_REFRESH_S = 0.25
_MISSING = "-"


class ProgressDisplay:
    """Shows a job's status: a live table on a terminal, throttled log lines otherwise.

    Use it as a context manager (or call `start` and `stop`), and pass each new
    status to `update`. The status dict has `rows_seen`, `throughput_rows_per_s`,
    `elapsed_s`, `dead_letter`, `weights_version`, `ensemble` (with
    `prequential_accuracy`) and `members` (each with `id`, `rows`,
    `recent_accuracy`, `weight`); any of them may be missing or None.

    Args:
        enabled: when False, `update` does nothing at all.
        interactive: True for the live table, False for log lines, None to decide
            from the console: a terminal gets the table.
        interval_s: in log-line mode, the least time between two lines.
        clock: monotonic time source in seconds; injectable for tests.
        console: where the live table is drawn; defaults to a console on stderr.

    Raises:
        ValueError: `interval_s` is negative or not a number.

    Example::

        >>> import io
        >>> from rich.console import Console
        >>> console = Console(file=io.StringIO(), force_terminal=True, width=100)
        >>> with ProgressDisplay(interactive=True, console=console) as progress:
        ...     progress.update({"rows_seen": 1000, "members": [{"id": 0, "rows": 1000}]})
        >>> "member" in console.file.getvalue()
        True
    """

    def __init__(
        self,
        enabled: bool = True,
        interactive: bool | None = None,
        interval_s: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        console: Console | None = None,
    ) -> None:
        if not isinstance(interval_s, (int, float)) or not interval_s >= 0:
            raise ValueError(
                f"interval_s must be a number of seconds >= 0, got {interval_s!r}; "
                "use 0 to log every update"
            )
        self.enabled = enabled
        self.interactive = interactive
        self.interval_s = float(interval_s)
        self.clock = clock
        self.console = console if console is not None else Console(stderr=True)
        self._interactive = interactive if interactive is not None else _is_terminal(console)
        self._live: Live | None = None
        self._latest: Mapping[str, Any] | None = None
        self._last_emit: float | None = None
        self._latest_emitted = True

    @property
    def is_interactive(self) -> bool:
        """Whether this display draws the live table (resolved from `interactive`)."""
        return self._interactive

    def __enter__(self) -> ProgressDisplay:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start drawing the live table (interactive mode only; a no-op otherwise)."""
        if not self.enabled or not self._interactive or self._live is not None:
            return
        # No refresh thread: `update` redraws, throttled by the injectable clock.
        self._live = Live(
            render_status(self._latest) if self._latest is not None else "",
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start(refresh=self._latest is not None)

    def stop(self) -> None:
        """Show the last status once more and stop; the table stays on screen.

        In log-line mode, logs the last status if the interval held it back.
        """
        if not self.enabled:
            return
        if self._live is not None:
            live, self._live = self._live, None
            if self._latest is not None:
                live.update(render_status(self._latest))
            live.stop()  # draws the last frame
        elif not self._interactive and self._latest is not None and not self._latest_emitted:
            self._emit(self.clock())

    def update(self, status: Mapping[str, Any]) -> None:
        """Take a new status; redraw or log it if enough time has passed.

        Args:
            status: the coordinator's status dict; missing or None fields show "-".
        """
        if not self.enabled:
            return
        self._latest = status if isinstance(status, Mapping) else {}
        self._latest_emitted = False
        now = self.clock()
        interval = _INTERACTIVE_REFRESH_S if self._interactive else self.interval_s
        if self._last_emit is not None and now - self._last_emit < interval:
            return
        self._emit(now)

    def _emit(self, now: float) -> None:
        status = self._latest or {}
        if self._interactive:
            if self._live is None:
                return  # not started: the latest status is drawn by `start`
            self._live.update(render_status(status), refresh=True)
        else:
            logger.info("%s", format_status_line(status))
        self._last_emit = now
        self._latest_emitted = True


def format_status_line(status: Mapping[str, Any]) -> str:
    """One plain log line for a status dict.

    Args:
        status: the coordinator's status dict; missing or None fields show "-".

    Returns:
        e.g. ``rows=120000 rows/s=15234 ensemble_acc=0.912 weights=[0.31 0.30 0.29 0.10]
        version=57 dead_letter=0 elapsed=7.9s``.
    """
    ensemble = _mapping(status.get("ensemble"))
    weights = " ".join(_fmt_float(m.get("weight"), 2) for m in _members(status))
    metric, _ = _metric(ensemble)
    short = "rmse" if metric == "error" else "acc"
    return (
        f"rows={_fmt_int(status.get('rows_seen'))} "
        f"rows/s={_fmt_int(status.get('throughput_rows_per_s'))} "
        f"ensemble_{short}={_fmt_float(ensemble.get(f'prequential_{metric}'), 3)} "
        f"weights=[{weights}] "
        f"version={_fmt_int(status.get('weights_version'))} "
        f"dead_letter={_fmt_int(status.get('dead_letter'))} "
        f"elapsed={_fmt_float(status.get('elapsed_s'), 1)}s"
    )


def render_status(status: Mapping[str, Any]) -> Group:
    """The live view of a status dict: a headline and a table with one row per member.

    Args:
        status: the coordinator's status dict; missing or None fields show "-".

    Returns:
        A `rich` renderable.
    """
    ensemble = _mapping(status.get("ensemble"))
    metric, label = _metric(ensemble)
    headline = Text.assemble(
        ("rows ", "dim"),
        (_fmt_int(status.get("rows_seen"), grouped=True), "bold"),
        ("  rows/s ", "dim"),
        (_fmt_int(status.get("throughput_rows_per_s"), grouped=True), "bold"),
        (f"  ensemble {label} ", "dim"),
        (_fmt_float(ensemble.get(f"prequential_{metric}"), 3), "bold green"),
        ("  elapsed ", "dim"),
        (_fmt_float(status.get("elapsed_s"), 1) + " s", ""),
        ("  dead-letter ", "dim"),
        (_fmt_int(status.get("dead_letter"), grouped=True), ""),
        ("  weights v", "dim"),
        (_fmt_int(status.get("weights_version")), ""),
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("member", justify="left")
    table.add_column("rows", justify="right")
    table.add_column(f"recent {label}", justify="right")
    table.add_column("weight", justify="right")
    for member in _members(status):
        member_id = member.get("id")
        table.add_row(
            f"member {_MISSING if member_id is None else member_id}",
            _fmt_int(member.get("rows"), grouped=True),
            _fmt_float(member.get(f"recent_{metric}"), 3),
            _fmt_float(member.get("weight"), 3),
        )
    return Group(headline, table)


def _metric(ensemble: Mapping[str, Any]) -> tuple[str, str]:
    """The status key suffix and its label: RMSE for regression, else accuracy."""
    if "prequential_error" in ensemble:
        return "error", "error (RMSE)"
    return "accuracy", "accuracy"


def _is_terminal(console: Console | None) -> bool:
    if console is not None:
        return console.is_terminal
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _members(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    members = status.get("members")
    if isinstance(members, str) or not isinstance(members, Sequence):
        return []
    return [m for m in members if isinstance(m, Mapping)]


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt_int(value: Any, *, grouped: bool = False) -> str:
    number = _as_float(value)
    if number is None:
        return _MISSING
    return f"{number:,.0f}" if grouped else f"{number:.0f}"


def _fmt_float(value: Any, digits: int) -> str:
    number = _as_float(value)
    return _MISSING if number is None else f"{number:.{digits}f}"
