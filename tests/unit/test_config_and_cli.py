"""Config validation and the CLI's bad-input paths (none of these start Ray)."""

import re
import subprocess
import sys

import pytest

from actors.errors import ConfigError
from pipelines.cli import build_parser, main
from pipelines.config import SEQUENCE_WINDOW, JobConfig, load_config
from pipelines.job import assign_partitions
from pipelines.sources.synthetic import DEFAULT_ROWS


def test_defaults_are_loopback_and_four_members():
    config = JobConfig()
    assert config.host == "127.0.0.1" and config.members == 4 and config.partition_count == 4


def test_cross_field_errors_repeat_the_values():
    with pytest.raises(ConfigError, match=r"partitions \(2\) must be >= members \(4\)"):
        JobConfig.build(members=4, partitions=2)


def test_yaml_and_toml_files_with_flag_overrides(tmp_path):
    (tmp_path / "job.yaml").write_text("members: 3\nrows: 1000\nbatch-size: 64\n")
    (tmp_path / "job.toml").write_text('members = 2\nsource = "synthetic://hyperplane"\n')
    from_yaml = load_config(tmp_path / "job.yaml", {"rows": 500, "seed": None})
    assert (from_yaml.members, from_yaml.rows, from_yaml.batch_size) == (3, 500, 64)
    assert load_config(tmp_path / "job.toml").members == 2


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("members: [\n", ".yaml", "cannot parse"),
        ("- 1\n- 2\n", ".yaml", "must hold a mapping"),
        ("members = \n", ".toml", "cannot parse"),
        ("bogus: 1\n", ".yaml", "unknown setting"),
        ("members: 0\n", ".yaml", "members"),
    ],
)
def test_bad_config_files(tmp_path, text, suffix, message):
    path = tmp_path / f"job{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_partition_assignment_round_robin():
    assert assign_partitions([0, 1, 2, 3, 4], 2) == {0: [0, 2, 4], 1: [1, 3]}
    with pytest.raises(ValueError, match="cannot feed"):
        assign_partitions([0], 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--source", "foo://bar"], "unknown source scheme"),
        (["run", "--members", "0"], "must be >= 1"),
        (["run", "--config", "/nonexistent/job.yaml"], "cannot read config file"),
        (["run", "--members", "two"], "expected a whole number"),
        (["run", "--replicas", "0"], "must be >= 1"),
        (["run", "--drift-detector", "cusum"], "invalid choice"),
        (["run", "--task", "regression", "--drift-detector", "ddm"], "needs 0/1 errors"),
        (["run", "--port", "70000"], "port"),
        (["run", "--model", "lstm", "--input-window", "1"], "must be >= 2"),
        (["run", "--model", "custom"], "factory='module:function'"),
        (["run", "--best-margin", "-1"], "expected a number > 0 or 'off'"),
        (["run", "--strategy", "rehearse"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_cli_input_is_one_line_nonzero(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(argv))
    assert exited.value.code != 0
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_console_script_reports_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--source", "nope://x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("online-ensemble: error: unknown source scheme")
    assert "Traceback" not in result.stderr


def test_model_task_and_strategy_settings_reach_the_member_config(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "task: multiclass\nn_classes: 4\nmodel: conv1d\nstrategy: replay\n"
        "lr_schedule: decay\n"
        "strategy_options: {replay_buffer: reservoir, replay_size: 1000, replay_ratio: 0.5}\n"
    )
    config = load_config(tmp_path / "job.yaml", {"best_margin": 0.0})
    member = config.member_config()
    assert (member.model.kind, member.model.task, member.model.n_classes) == (
        "conv1d",
        "multiclass",
        4,
    )
    assert member.model.window == 16  # the sequence default
    assert (member.strategy.name, member.strategy.schedule) == ("replay", "decay")
    strategy = member.strategy
    assert (strategy.replay_buffer, strategy.replay_size, strategy.replay_ratio) == (
        "reservoir",
        1000,
        0.5,
    )
    assert isinstance(strategy.replay_size, int)
    assert member.best_margin is None  # 0 (the CLI's "off") turns it off
    assert JobConfig().member_config().best_margin == 0.03


def test_unknown_strategy_options_name_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown strategy option.*replay_size"):
        JobConfig.build(strategy_options={"replay_sise": 10})


def test_the_job_replays_recent_rows_by_default_and_bad_options_are_one_line():
    strategy = JobConfig().strategy_spec()
    assert (strategy.name, strategy.replay_buffer, strategy.replay_size) == (
        "replay",
        "recent",
        512,
    )
    assert strategy.replay_ratio == 3.0
    with pytest.raises(ConfigError, match="strategy option replay_size must be a number"):
        JobConfig.build(strategy_options={"replay_size": "lots"})
    with pytest.raises(ConfigError, match="unknown replay buffer 'ring'; expected one of"):
        JobConfig.build(strategy_options={"replay_buffer": "ring"})


def test_resume_needs_a_folder_with_member_checkpoints(tmp_path):
    from actors.errors import ConfigError
    from pipelines.checkpoint import CheckpointStore
    from pipelines.config import JobConfig
    from pipelines.job import Job

    with pytest.raises(ConfigError, match="nothing to resume"):
        Job(JobConfig(resume=str(tmp_path / "missing"), report=tmp_path))
    store = CheckpointStore(str(tmp_path / "run"))
    for member in range(3):
        store.save(f"member-{member}", {}, {})
    with pytest.raises(ConfigError, match="resume with --members 3"):
        Job(JobConfig(resume=str(tmp_path / "run"), members=2, report=tmp_path))
    assert Job(JobConfig(resume=str(tmp_path / "run"), members=3, report=tmp_path))


def test_drift_settings_reach_the_member_config_and_bad_ones_are_one_line(tmp_path, capsys):
    (tmp_path / "job.yaml").write_text(
        "drift_detector: page-hinkley\ndrift_action: boost-lr\ndrift_cooldown_rows: 500\n"
        "drift_options: {threshold: 30}\n"
    )
    drift = load_config(tmp_path / "job.yaml", {}).member_config().drift
    assert (drift.detector, drift.action, drift.cooldown_rows) == ("page-hinkley", "boost-lr", 500)
    assert drift.params == (("threshold", 30.0),)
    default = JobConfig().member_config().drift  # replay forgets its pre-drift rows
    assert (default.detector, default.action) == ("adwin", "forget")
    assert JobConfig(drift_detector="none").member_config().drift.detector is None
    (tmp_path / "bad.yaml").write_text("drift_detector: adwin\ndrift_options: {delta: 3}\n")
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(["run", "--config", str(tmp_path / "bad.yaml")]))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "adwin needs 0 < delta < 1" in err and len(err.splitlines()) == 1, err


def _run_parser():
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return commands.choices["run"]


def _as_flag_text(value):
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_run_help_states_the_config_defaults():
    """Every "(default X)" in `run --help` is JobConfig's default for that flag's setting
    (or, for settings whose config default is None, the value the job then uses)."""
    resolved = {
        "rows": DEFAULT_ROWS,
        "input_window": SEQUENCE_WINDOW,
        "dead_letter": "REPORT/dead_letter.jsonl",  # JobConfig.dead_letter_path
        "checkpoint_dir": "REPORT/checkpoints",  # JobConfig.checkpoint_root
    }
    checked = []
    for action in _run_parser()._actions:
        quoted = re.search(r"\(default ([^;)\s]+)", action.help or "")
        if quoted is None:
            continue  # no default, or one said in words ("default: members")
        field = JobConfig.model_fields[action.dest]
        expected = field.default if field.default is not None else resolved[action.dest]
        shown = quoted.group(1).removeprefix("./")
        assert shown == _as_flag_text(expected), (action.dest, action.help)
        checked.append(action.dest)
    # The flags a user tunes most must be among those checked, so the regex cannot rot.
    assert {"members", "hidden", "step_rows", "batch_size", "learning_rate"} <= set(checked)
    assert len(checked) >= 25
