"""`online-ensemble bench ingest`: argument errors and output, without Ray or Kafka."""

from __future__ import annotations

import json
import sys

import pytest

from actors.errors import ConfigError
from pipelines.bench import ingest_bench
from pipelines.cli import main


def canned_result() -> dict:
    def entry(read: float, train: float) -> dict:
        ratio = read / train
        return {
            "read_rows_per_s": read,
            "train_rows_per_s": train,
            "ratio": ratio,
            "meets_5x": ratio >= 5,
            "rows": 200_000,
        }

    return {
        "rows": 200_000,
        "batch": 128,
        "members": [1, 2],
        "target_ratio": 5.0,
        "judged_sources": ["kafka", "parquet"],
        "sources": {
            "kafka": {"1": entry(900_000.0, 60_000.0), "2": entry(1_500_000.0, 90_000.0)},
            "parquet": {"1": entry(2_000_000.0, 60_000.0), "2": entry(3_000_000.0, 90_000.0)},
            "kafka_json": {"1": entry(150_000.0, 60_000.0), "2": entry(250_000.0, 90_000.0)},
        },
        "targets_met": {"kafka": True, "parquet": True, "kafka_json": False},
        "source_details": {
            "kafka": {"format": "Arrow IPC, 128 rows per message", "rows": 200_000},
            "parquet": {"format": "Parquet", "rows": 200_000},
            "kafka_json": {"format": "JSON, one record per message", "rows": 48_000},
        },
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rows", "0"], "must be >= 1"),
        (["--rows", "many"], "expected a whole number"),
        (["--members", "1,two"], "expected comma-separated member counts"),
        (["--batch", "128"], "unrecognized arguments"),
        (["--rows", "100"], "rows (100) must be in 512..320000"),
        (["--rows", "400000"], "rows (400000) must be in 512..320000"),
        (["--members", "1,8"], "members (1,8) must be distinct counts in 1..4"),
        (["--members", "2,2"], "members (2,2) must be distinct counts in 1..4"),
    ],
)
def test_bad_arguments_are_one_line_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(["bench", "ingest", *argv]))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert captured.out == ""


def test_run_ingest_bench_checks_arguments_before_starting_anything():
    with pytest.raises(ConfigError, match="members"):
        ingest_bench.run_ingest_bench(rows=10_000, members=())


def test_json_mode_prints_only_the_result(monkeypatch, capsys):
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        print("a stray worker notice")  # must not reach stdout in --json mode
        return canned_result()

    monkeypatch.setattr(ingest_bench, "run_ingest_bench", fake_run)
    assert main(["bench", "ingest", "--json", "--rows", "50000", "--members", "4,1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == canned_result()
    assert "stray" in captured.err
    assert calls == [{"rows": 50_000, "members": (4, 1)}]


def test_defaults_are_the_issue_s_member_counts(monkeypatch):
    calls = []
    monkeypatch.setattr(ingest_bench, "run_ingest_bench", lambda **kw: calls.append(kw) or {})
    monkeypatch.setattr(ingest_bench, "result_table", lambda result: "")
    assert main(["bench", "ingest"]) == 0
    assert calls == [{"rows": 200_000, "members": (1, 2, 4)}]


def test_table_mode_shows_every_source_ratio_and_verdict(monkeypatch, capsys):
    monkeypatch.setattr(ingest_bench, "run_ingest_bench", lambda **_: canned_result())
    assert main(["bench", "ingest"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("900,000", "60,000", "15.0", "2.5", "kafka_json: not met", "kafka: met"):
        assert text in out, text
    assert "shown for contrast" in out
