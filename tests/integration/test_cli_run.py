"""`online-ensemble run` as a user runs it: a subprocess with its own embedded Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "pipelines.cli", "run"]


def _env() -> dict[str, str]:
    # A clean Ray per run: never join whatever cluster the test process knows about.
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def test_run_with_config_file_and_flag_overrides(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(f"members: 3\nrows: 999999\nport: {free_port()}\nseed: 3\n")
    result = subprocess.run(
        [
            *CLI,
            "--config",
            str(config),
            "--rows",
            "60000",
            "--members",
            "2",
            "--report",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["rows_seen"] == 60_000  # the flag beat the file's 999999
    assert len(report["members"]) == 2  # the flag beat the file's 3
    assert report["config"]["seed"] == 3  # the file's value where no flag was given
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 10_000
    assert "weighted ensemble" in result.stdout
    assert "Traceback" not in result.stderr


def test_sigterm_finishes_the_batch_and_writes_the_report(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            *CLI,
            "--rows",
            "20000000",
            "--port",
            str(free_port()),
            "--report",
            str(out),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 300
        seen = []
        assert process.stderr is not None
        for line in process.stderr:  # blocks until the next line; ends if the process dies
            seen.append(line)
            if "while training" in line or time.monotonic() > deadline:
                break
        assert any("while training" in line for line in seen), "".join(seen)[-3000:]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["stopped_early"] is True
    assert 0 < report["rows_trained"] < 20_000_000
    assert report["rows_trained"] + report["dead_letter"] == report["rows_seen"]
    assert "SIGTERM received" in stderr
    assert "weighted ensemble" in stdout  # the summary is printed after a graceful stop
    # Each member checkpointed exactly where it stopped: --resume continues from there.
    from pipelines.checkpoint import CheckpointStore

    store = CheckpointStore(report["checkpoint_dir"])
    positions = [
        sum(store.latest(f"member-{member['id']}").meta["offsets"].values())
        for member in report["members"]
    ]
    assert sum(positions) == report["rows_seen"]
