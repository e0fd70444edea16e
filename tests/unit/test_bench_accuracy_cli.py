"""`online-ensemble bench accuracy`: argument errors and what it prints, without the run."""

from __future__ import annotations

import json
import sys

import pytest

from pipelines.bench import accuracy_bench
from pipelines.cli import main


def canned_result() -> dict:
    figures = {
        "uri": "synthetic://sea",
        "task": "binary",
        "rows": 1000,
        "drift_rows": [500],
        "accuracy": {"ensemble": 0.9, "river_arf": 0.88},
        "rows_per_s": {"ensemble": 50_000, "river_arf": 1_200},
        "accuracy_after_drift": {"ensemble": [0.85], "river_arf": [0.8]},
        "rows_to_regain": {"ensemble": [300], "river_arf": [None]},
        "curves": {"ensemble": [(500, 0.9), (1000, 0.9)], "river_arf": [(1000, 0.88)]},
    }
    return {"rows": 1000, "seed": 0, "overrides": {}, "streams": {"sea": figures}}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--streams", "sine"], "unknown stream(s) sine"),
        (["--streams", ","], "expected a comma list of sea"),
        (["--rows", "0"], "must be >= 1"),
        (["--set", "batch_size"], "expected FIELD=VALUE"),
        (["--knowledge", "gossip"], "invalid choice: 'gossip'"),
        (["--publish-rows", "0"], "must be >= 1"),
        (["--river", "river_svm"], "unknown River learner(s) river_svm"),
        (["--set", "batch_sise=32"], "unknown job setting(s) batch_sise"),
        (["--set", "batch_size=0", "--streams", "sea"], "batch_size"),
    ],
)
def test_bad_arguments_are_one_line_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(["bench", "accuracy", *argv]))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_table_json_and_plots(monkeypatch, capsys, tmp_path):
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        print("a stray notice")  # must not reach stdout
        return canned_result()

    monkeypatch.setattr(accuracy_bench, "run_accuracy_bench", fake_run)
    assert main(["bench", "accuracy", "--streams", "sea", "--rows", "1000"]) == 0
    out = capsys.readouterr().out
    assert calls[-1] == {
        "rows": 1000,
        "seed": 0,
        "streams": ["sea"],
        "overrides": {},
        "knowledge": "none",
        "publish_rows": 4096,
    }
    assert "| sea | ensemble | 0.9000 | 0.8500 | 300 | 50,000 |" in out
    assert "| sea | river_arf | 0.8800 | 0.8000 | never | 1,200 |" in out
    argv = ["--json", "--plot", str(tmp_path), "--set", "batch_size=32", "--set", "policy=awe"]
    assert main(["bench", "accuracy", *argv]) == 0
    assert calls[-1]["overrides"] == {"batch_size": 32, "policy": "awe"}
    assert "river" not in calls[-1]  # every River learner by default
    assert json.loads(capsys.readouterr().out)["streams"]["sea"]["accuracy"]["ensemble"] == 0.9
    argv = ["--river", "none", "--knowledge", "peer-average", "--publish-rows", "512"]
    assert main(["bench", "accuracy", *argv]) == 0
    assert calls[-1]["river"] == [] and calls[-1]["knowledge"] == "peer-average"
    assert calls[-1]["publish_rows"] == 512
    assert (tmp_path / "accuracy_sea.png").stat().st_size > 0
