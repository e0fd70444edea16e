"""`online-ensemble bench train`: argument errors and output, without Ray or training."""

from __future__ import annotations

import json
import sys

import pytest

from actors.errors import ConfigError
from pipelines.bench import train_bench
from pipelines.cli import main


def canned_result() -> dict:
    rates = {"fit_per_chunk": 1_000.0, "train_on_batch": 100_000.0, "bare_step": 200_000.0}
    rates["bare_step_read"] = 400_000.0
    rates["member_actor"] = 300_000.0
    ratios = {
        "member_actor/bare_step": 1.5,
        "member_actor/bare_step_read": 0.75,
        "member_actor/fit_per_chunk": 300.0,
        "bare_step/fit_per_chunk": 200.0,
        "bare_step_read/bare_step": 2.0,
    }
    return {
        "batch": 256,
        "read_rows": 4096,
        "chunk_rows": 100,
        "source": "synthetic://hyperplane",
        "rows": 1_000_000,
        "rows_per_s": rates,
        "ratios": ratios,
        "targets": dict(train_bench.TARGETS),
        "targets_met": {
            "member_actor/bare_step": True,
            "member_actor/bare_step_read": False,
            "member_actor/fit_per_chunk": True,
        },
        "rows_timed": {name: 1000 for name in train_bench.CONTENDERS},
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch", "0"], "must be >= 1"),
        (["--batch", "many"], "expected a whole number"),
        (["--rows", "-5"], "must be >= 1"),
        (["--rounds", "3"], "unrecognized arguments"),
        (["--rows", "1000"], "rows (1000) must be at least 163840"),
        (["--read-rows", "0"], "must be >= 1"),
        (["--batch", "256", "--read-rows", "1000"], "read_rows (1000) must be a multiple of"),
        (["--batch", "512", "--read-rows", "256"], "read_rows (256) must be a multiple of"),
        (["--batch", "100000", "--read-rows", "100000", "--rows", "9000000"], "batch_size"),
    ],
)
def test_bad_arguments_are_one_line_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(["bench", "train", *argv]))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seconds": 0.0}, "seconds"),
        ({"niceness": 20}, "niceness"),
        ({"batch": 512, "read_rows": 512, "rows": 512 * 39}, r"must be at least 20480 \(40 reads"),
    ],
)
def test_run_train_bench_checks_arguments_before_starting_anything(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        train_bench.run_train_bench(**kwargs)


def test_json_mode_prints_only_the_result(monkeypatch, capsys):
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        print("a stray worker notice")  # must not reach stdout in --json mode
        return canned_result()

    monkeypatch.setattr(train_bench, "run_train_bench", fake_run)
    argv = ["bench", "train", "--json", "--batch", "128", "--read-rows", "1024", "--rows", "50000"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == canned_result()
    assert "stray" in captured.err
    assert calls == [{"batch": 128, "read_rows": 1024, "rows": 50_000}]


def test_table_mode_names_every_contender_and_the_targets(monkeypatch, capsys):
    monkeypatch.setattr(train_bench, "run_train_bench", lambda **_: canned_result())
    assert main(["bench", "train"]) == 0
    out = capsys.readouterr().out
    for text in ("model.fit per 100-row chunk", "train_on_batch", "bare learn_many", "4096"):
        assert text in out
    assert "300,000" in out
    words = " ".join(out.split())
    assert "member_actor/bare_step 1.50 (target >= 0.8: met)" in words
    assert "member_actor/bare_step_read 0.75 (target >= 0.8: not met)" in words
