"""`online-ensemble` command line. The only module that prints or configures logging."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from actors.errors import ConfigError, OnlineEnsembleError
from actors.specs import DRIFT_ACTIONS
from pipelines.bench.accuracy_streams import KNOWLEDGE, RIVER_LEARNERS
from pipelines.bench.accuracy_streams import STREAMS as ACCURACY_STREAMS
from pipelines.config import SEQUENCE_WINDOW, JobConfig, load_config
from pipelines.sources.synthetic import DEFAULT_ROWS

__all__ = ["main"]

logger = logging.getLogger("pipelines.cli")


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _margin(text: str) -> float:
    if text.strip().lower() == "off":
        return 0.0  # the config's "off" (None would mean "flag not given")
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'off', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'off', got {text!r}")
    return value


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes like 64,64, got {text!r}"
        ) from None
    return sizes


def _member_counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated member counts like 1,2,4, got {text!r}"
        ) from None


def _default(field: str) -> str:
    """`JobConfig`'s default for `field`, spelled as its flag takes it.

    `run`'s help quotes these instead of literals, so it cannot drift from the config.
    """
    value = JobConfig.model_fields[field].default
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="online-ensemble",
        description="Distributed online ensemble learning on Ray: members train on their own "
        "stream partitions, a coordinator weights them, Ray Serve answers predictions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    run = commands.add_parser(
        "run",
        help="train on a stream and serve the weighted ensemble over HTTP",
        description="Start (or join) Ray, one member actor per member, a coordinator and a Serve "
        "app; train until a bounded stream ends (or Ctrl-C/SIGTERM), then write DIR/report.json "
        "and DIR/accuracy.png. Flags override --config.",
    )
    run.add_argument(
        "--config", metavar="FILE", help="YAML or TOML file with the same settings as the flags"
    )
    run.add_argument(
        "--source", metavar="URI", help=f"stream to learn from (default {_default('source')})"
    )
    run.add_argument(
        "--members",
        type=_positive_int,
        metavar="N",
        help=f"ensemble members (default {_default('members')})",
    )
    run.add_argument(
        "--partitions",
        type=_positive_int,
        metavar="N",
        help="partitions of a splittable source (default: members)",
    )
    run.add_argument(
        "--max-members",
        type=_positive_int,
        metavar="N",
        help="largest size `scale` may grow the ensemble to; a synthetic or file source is "
        "split into N partitions (default: members)",
    )
    run.add_argument(
        "--new-member",
        choices=["fresh", "clone-best", "distill"],
        help=f"how members added by scaling start (default {_default('new_member')})",
    )
    run.add_argument(
        "--autoscale-lag-rows",
        type=_positive_int,
        metavar="ROWS",
        help="scale by lag: add a member while the total lag stays above ROWS and grows, "
        "retire one when idle (default: off; bounds --autoscale-min and --max-members)",
    )
    run.add_argument(
        "--autoscale-min",
        type=_positive_int,
        metavar="N",
        help=f"autoscaling never goes below N members (default {_default('autoscale_min')})",
    )
    run.add_argument(
        "--rows",
        type=_positive_int,
        metavar="N",
        help=f"cap on a synthetic stream's rows (default {DEFAULT_ROWS})",
    )
    run.add_argument(
        "--seed",
        type=int,
        help=f"seed of streams, weights and sampling (default {_default('seed')})",
    )
    run.add_argument("--port", type=int, help=f"HTTP port of /predict (default {_default('port')})")
    run.add_argument(
        "--host",
        help=f"address to bind HTTP to (default {_default('host')}; anything else exposes it)",
    )
    run.add_argument(
        "--replicas",
        type=_positive_int,
        metavar="N",
        help=f"Serve replicas answering /predict (default {_default('replicas')}; 2+ ride out a "
        "replica's death)",
    )
    run.add_argument(
        "--report",
        metavar="DIR",
        type=Path,
        help=f"where report.json and accuracy.png go (default ./{_default('report')})",
    )
    run.add_argument(
        "--address",
        help="Ray cluster to join, e.g. 'auto' on a cluster node (default: embedded Ray)",
    )
    run.add_argument(
        "--keep-serving",
        action="store_true",
        default=None,
        help="keep serving after the stream ends, until Ctrl-C",
    )
    run.add_argument(
        "--dead-letter",
        metavar="FILE|kafka://HOST:PORT/TOPIC",
        help="where rejected records go (default REPORT/dead_letter.jsonl)",
    )
    run.add_argument(
        "--follow",
        action="store_true",
        default=None,
        help="file sources: keep watching the directory and learn new files as they land",
    )
    run.add_argument(
        "--min-batch",
        type=_positive_int,
        metavar="ROWS",
        help=f"live streams: rows to gather before a training step (default "
        f"{_default('min_batch')}) ...",
    )
    run.add_argument(
        "--max-wait-ms",
        type=_non_negative_float,
        metavar="MS",
        help=f"... waiting at most this long for them (default {_default('max_wait_ms')})",
    )
    run.add_argument(
        "--max-lag-rows",
        type=_positive_int,
        metavar="ROWS",
        help="past this lag a member samples its input to keep pace (default: never)",
    )
    run.add_argument(
        "--lag-policy",
        choices=["uniform", "newest"],
        help="how to sample past --max-lag-rows: thin uniformly or skip to the newest (default "
        f"{_default('lag_policy')})",
    )
    run.add_argument(
        "--checkpoint-dir",
        metavar="DIR|URI",
        help="where member checkpoints go (default REPORT/checkpoints; each run a new folder)",
    )
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run from its checkpoint folder (REPORT/checkpoints/run-*), "
        "with the same source and --members",
    )
    run.add_argument(
        "--checkpoint-every-rows",
        type=_positive_int,
        metavar="ROWS",
        help="checkpoint, then commit offsets, every ROWS rows read (default "
        f"{_default('checkpoint_every_rows')}) or ...",
    )
    run.add_argument(
        "--checkpoint-interval-s",
        type=_positive_float,
        metavar="S",
        help=f"... every S seconds (default {_default('checkpoint_interval_s')})",
    )
    run.add_argument(
        "--no-checkpoints",
        dest="checkpoints",
        action="store_false",
        default=None,
        help="no checkpoints (then no offset is committed to the source)",
    )
    run.add_argument(
        "--hidden",
        type=_hidden,
        metavar="SIZES",
        help=f"hidden layer sizes, comma-separated (default {_default('hidden')})",
    )
    run.add_argument(
        "--learning-rate",
        type=float,
        help=f"Adam learning rate (default {_default('learning_rate')})",
    )
    run.add_argument(
        "--task",
        choices=["binary", "multiclass", "regression"],
        help=f"label kind: 0/1, a class index, or a number (default {_default('task')})",
    )
    run.add_argument(
        "--classes", dest="n_classes", type=_positive_int, help="classes of a multiclass task"
    )
    run.add_argument(
        "--model",
        choices=["mlp", "lstm", "conv1d", "custom", "file"],
        help=f"member network (default {_default('model')}; lstm/conv1d read windows of "
        "consecutive rows)",
    )
    run.add_argument(
        "--input-window",
        type=_positive_int,
        metavar="ROWS",
        help=f"rows per input window of lstm/conv1d (default {SEQUENCE_WINDOW})",
    )
    run.add_argument(
        "--model-factory",
        metavar="MODULE:FUNCTION",
        help="custom model: a function returning a Keras model (checked against the task)",
    )
    run.add_argument(
        "--model-file",
        metavar="PATH",
        help="file model: a .keras archive, loaded in Keras safe mode (Lambda layers and "
        "pickles refused), checked against the task; training starts from its weights",
    )
    run.add_argument(
        "--drift-detector",
        choices=["none", "adwin", "page-hinkley", "ddm"],
        help=f"drift detection on each member's errors (default {_default('drift_detector')})",
    )
    run.add_argument(
        "--drift-action",
        choices=DRIFT_ACTIONS,
        help=f"the answer to a member's drift (default {_default('drift_action')}; forget: "
        "replay drops its rows from before the change; reset: a fresh network; spawn: add a "
        "challenger member; retire: drop the member if it is at or below chance)",
    )
    run.add_argument(
        "--strategy",
        choices=["finetune", "replay", "head", "distill", "reset"],
        help=f"how members update (default {_default('strategy')})",
    )
    run.add_argument(
        "--lr-schedule",
        choices=["constant", "decay", "warmup"],
        help=f"learning-rate schedule (default {_default('lr_schedule')})",
    )
    run.add_argument(
        "--best-margin",
        type=_margin,
        metavar="MARGIN|off",
        help="serve a member's best snapshot while it is this far below it (default "
        f"{_default('best_margin')})",
    )
    run.add_argument(
        "--batch-size",
        type=_positive_int,
        help=f"rows a member reads, scores and learns at a time (default {_default('batch_size')})",
    )
    run.add_argument(
        "--batch-start",
        type=_positive_int,
        help="rows of a member's first batches, doubling up to --batch-size as it learns and "
        f"after each drift it answers (default {_default('batch_start')})",
    )
    run.add_argument(
        "--step-rows",
        type=_positive_int,
        help="rows per optimizer step: a batch is learned in ceil(batch/step) steps (default "
        f"{_default('step_rows')})",
    )
    run.add_argument(
        "--policy",
        choices=["uniform", "accuracy", "softmax", "hedge", "awe"],
        help=f"weighting policy (default {_default('policy')})",
    )
    run.add_argument(
        "--overall-weights-only",
        dest="weights_by_partition",
        action="store_false",
        default=None,
        help="one set of weights for every row; by default the members are also weighed per "
        "source partition and a request naming its partition is mixed with that partition's",
    )
    run.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress display",
    )
    scale = commands.add_parser(
        "scale",
        help="grow or shrink a running job's ensemble",
        description="Ask a running job (found through its Ray cluster) to scale to N members "
        "while it trains and serves; waits for the step and prints what moved. The same step "
        "is POST /admin/scale on the job's HTTP endpoint, and Job.scale in Python.",
    )
    scale.add_argument(
        "--members", type=_positive_int, metavar="N", required=True, help="the size wanted"
    )
    scale.add_argument(
        "--policy",
        choices=["fresh", "clone-best", "distill"],
        help="how new members start (default: the job's --new-member)",
    )
    scale.add_argument(
        "--retire",
        type=int,
        nargs="+",
        metavar="ID",
        help="members to retire (default: the lowest-weight ones)",
    )
    scale.add_argument(
        "--address",
        default="auto",
        help="Ray cluster the job runs on (default 'auto': the one on this machine)",
    )
    scale.add_argument(
        "--timeout-s",
        type=float,
        default=600.0,
        help="how long to wait for the step (default %(default)s)",
    )
    bench = commands.add_parser(
        "bench",
        help="benchmarks: side-by-side comparisons in one run (see docs/benchmarks.md)",
        description="Run a benchmark; each compares its contenders side by side in one run.",
    )
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=_OneLineParser)
    serve_bench = benches.add_parser(
        "serve",
        help="HTTP latency and throughput: a constant Serve deployment (floor) vs the ensemble",
        description="p50/p99 latency and requests/s of a 1-row request through a trivial Serve "
        "deployment (the floor), the 4-member ensemble, and the same ensemble with its graph "
        "forced onto TensorFlow (instead of the NumPy pass MLP members get), one request to "
        "each in turn, in random order; rows/s of 1,024-row Arrow requests. Starts its own "
        "embedded Ray.",
    )
    serve_bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    serve_bench.add_argument(
        "--port", type=int, default=8000, help="HTTP port to use (default %(default)s)"
    )
    serve_bench.add_argument(
        "--requests",
        type=_positive_int,
        default=1000,
        help="1-row requests per target, one to each target in turn (default %(default)s)",
    )
    train_bench = benches.add_parser(
        "train",
        help="training rows/s: model.fit per chunk, train_on_batch, a bare step, a member actor",
        description="Rows/s of the members' MLP on the default synthetic stream five ways, "
        "each taking one optimizer step per --batch rows: model.fit per 100-row chunk, "
        "train_on_batch, the bare compiled step called once per batch, the same step called "
        "once per --read-rows rows (the limit for the member), and one MemberActor in a local "
        "Ray reading --read-rows at a time (source, validation, steps, publish); reports the "
        "member's ratios to both bare loops and to model.fit. Starts its own embedded Ray.",
    )
    train_bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    train_bench.add_argument(
        "--batch",
        type=_positive_int,
        default=256,
        help="rows per optimizer step, in every contender (default %(default)s)",
    )
    train_bench.add_argument(
        "--read-rows",
        type=_positive_int,
        default=4096,
        help="rows the member reads at a time and learns in --batch-row steps inside one "
        "compiled call, a multiple of --batch; the bench also times the bare step called "
        "once per this many rows (default %(default)s)",
    )
    train_bench.add_argument(
        "--rows",
        type=_positive_int,
        default=1_000_000,
        help="stream rows the bare step and the member train on (default %(default)s)",
    )
    ingest_bench = benches.add_parser(
        "ingest",
        help="source read rows/s (Kafka, Parquet) against training rows/s, 1/2/4 members",
        description="Rows/s that 1, 2 and 4 members read from a Kafka endpoint (librdkafka's "
        "mock cluster, started in this process: Arrow IPC messages, and JSON records for "
        "contrast) and from Parquet, through the members' read path (intake and validation), "
        "side by side with the rows/s the same number of MemberActors train on the same "
        "source; reports read / train per source and member count against the 5x target. "
        "Starts its own embedded Ray.",
    )
    ingest_bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    ingest_bench.add_argument(
        "--rows",
        type=_positive_int,
        default=200_000,
        help="rows of the Kafka Arrow and Parquet streams, at most 320000 (Kafka JSON: at most "
        "48000 of them; default 200000)",
    )
    ingest_bench.add_argument(
        "--members",
        type=_member_counts,
        default=(1, 2, 4),
        metavar="N,N,...",
        help="member counts to measure, each 1..4 (default 1,2,4)",
    )
    drift_bench = benches.add_parser(
        "drift",
        help="rows the ensemble needs to regain 95%% of its accuracy after an abrupt switch, "
        "drift detection off vs on",
        description="Per stream (SEA and a rotating hyperplane, each switching concept "
        "half-way), two real jobs (4 members, coordinator, Serve) on the same rows and seed: "
        "one with drift detection off, one with it on. Prints the ensemble's pre-switch "
        "accuracy, its lowest, the rows it needs to regain 95% of it, and its accuracy over "
        "the quarter of the stream after the switch. "
        "Starts its own embedded Ray.",
    )
    scale_bench = benches.add_parser(
        "scale",
        help="one real job scaled 2 -> 6 -> 3 members under prediction load",
        description="Starts its own embedded Ray and a job on a synthetic stream, keeps a 1-row "
        "prediction client running, scales the ensemble through the sizes, and prints each "
        "step's time, how soon new members are weighted, latency during the steps against "
        "the steady state, failed requests, rows/s per size and whether the counts reconcile.",
    )
    scale_bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    scale_bench.add_argument(
        "--rows", type=_positive_int, default=3_000_000, help="stream rows (default %(default)s)"
    )
    scale_bench.add_argument(
        "--port", type=int, default=8000, help="HTTP port (default %(default)s)"
    )
    drift_bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    drift_bench.add_argument(
        "--rows", type=_positive_int, default=800_000, help="stream rows (default %(default)s)"
    )
    drift_bench.add_argument(
        "--detector",
        choices=["adwin", "page-hinkley", "ddm"],
        default="adwin",
        help="the detector of the run with detection on (default %(default)s)",
    )
    drift_bench.add_argument(
        "--action",
        choices=["forget", "reset", "boost-lr"],
        default="reset",
        help="what members do on a drift in that run (default %(default)s)",
    )
    drift_bench.add_argument(
        "--port", type=int, default=8000, help="HTTP port (default %(default)s)"
    )
    accuracy_bench = benches.add_parser(
        "accuracy",
        help="prequential accuracy and rows/s of the default ensemble against River's "
        "online learners on drifting streams",
        description="On each stream, on the same rows in the same order and seed: the default "
        "ensemble (replayed in this process, no Ray), its best member, the uniform-weight "
        "ensemble, one model trained on every row, and River's adaptive random forest, "
        "Hoeffding adaptive tree and scaled logistic regression, each scored test-then-train "
        "on every row. Needs the bench extra (pip install -e '.[bench]').",
    )
    accuracy_bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    accuracy_bench.add_argument(
        "--rows",
        type=_positive_int,
        default=100_000,
        help="rows per synthetic stream (default %(default)s)",
    )
    accuracy_bench.add_argument(
        "--streams",
        type=_stream_names,
        metavar="NAME,NAME,...",
        help="streams to run (default: all of " + ", ".join(ACCURACY_STREAMS) + ")",
    )
    accuracy_bench.add_argument(
        "--plot", type=Path, metavar="DIR", help="write one accuracy-over-the-stream PNG per stream"
    )
    accuracy_bench.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    accuracy_bench.add_argument(
        "--river",
        type=_river_names,
        default=None,
        metavar="NAME,...|none",
        help=f"River learners to run (default all: {','.join(RIVER_LEARNERS)}; 'none' "
        "skips them, for tuning runs of the ensemble alone)",
    )
    accuracy_bench.add_argument(
        "--knowledge",
        choices=KNOWLEDGE,
        default="none",
        help="an experiment: members of the replayed ensemble also learn the scored shared "
        "sample, or average their weights with their peers' (default none, as in a job)",
    )
    accuracy_bench.add_argument(
        "--publish-rows",
        type=_positive_int,
        default=4096,
        metavar="N",
        help="rows a replayed member learns between two publishes: how fresh the weights, "
        "the shared-sample scores and any --knowledge exchange are (default %(default)s)",
    )
    accuracy_bench.add_argument(
        "--set",
        dest="overrides",
        type=_override,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a job setting from its default for a tuning run, e.g. batch_size=32 "
        "(repeatable; the value is read as JSON, else as text)",
    )
    return parser


def _names_in(
    known: tuple[str, ...] | list[str], what: str, text: str, also: str = ""
) -> list[str]:
    """A comma list of names, each one of `known` (`also`: the other accepted forms)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}(s) {', '.join(unknown) or repr(text)}; expected a comma list of "
            + ", ".join(known)
            + also
        )
    return names


def _stream_names(text: str) -> list[str]:
    return _names_in(list(ACCURACY_STREAMS), "stream", text)


def _river_names(text: str) -> list[str]:
    if text.strip() == "none":
        return []
    return _names_in(RIVER_LEARNERS, "River learner", text, also=", or none")


def _override(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE (e.g. batch_size=32), got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return name.strip().replace("-", "_"), parsed


def _bench_accuracy(args: argparse.Namespace) -> int:
    from pipelines.bench.accuracy_bench import (
        STREAMS,
        format_table,
        run_accuracy_bench,
        write_plots,
    )

    _quiet_runtime_logs()
    with contextlib.redirect_stdout(sys.stderr):
        result = run_accuracy_bench(
            rows=args.rows,
            seed=args.seed,
            streams=args.streams or tuple(STREAMS),
            overrides=dict(args.overrides),
            knowledge=args.knowledge,
            publish_rows=args.publish_rows,
            **({} if args.river is None else {"river": args.river}),
        )
    if args.plot is not None:
        for path in write_plots(result, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


def _bench_scale(args: argparse.Namespace) -> int:
    from pipelines.bench.scale_bench import run_scale_bench

    with contextlib.redirect_stdout(sys.stderr):
        result = run_scale_bench(rows=args.rows, port=args.port)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['requests']:,} requests, {result['failed_requests']} failed; steady p50 "
        f"{result['steady_p50_ms']} ms, p99 {result['steady_p99_ms']} ms"
    )
    for step in result["steps"]:
        print(
            f"to {step['to']} members: step {step['step_s']:.1f}s, {step['moves']} partition "
            "moves, "
            + (
                f"new members weighted {step['new_members_weighted_after_s']}s later, "
                if step["added"]
                else ""
            )
            + f"p99 during the step {step['during_p99_ms']} ms ({step['p99_ratio_to_steady']}x)"
        )
    print(f"rows/s by size: {result['rows_per_s_by_size']}")
    print(f"counts reconcile: {result['counts_reconcile']} ({result['rows_seen']:,} rows)")
    return 0


def _bench_drift(args: argparse.Namespace) -> int:
    from pipelines.bench.drift_bench import run_drift_bench

    with contextlib.redirect_stdout(sys.stderr):
        result = run_drift_bench(
            rows=args.rows, detector=args.detector, action=args.action, port=args.port
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name, stream in result["streams"].items():
        print(f"{name} ({stream['uri']}), {result['rows']:,} rows, {result['members']} members")
        print(f"{'':28}{'detection off':>16}{'detection on':>16}")
        off, on = stream["detection_off"], stream["detection_on"]
        for label, key in (
            ("pre-switch accuracy", "pre_switch_accuracy"),
            ("lowest after the switch", "lowest_accuracy"),
            ("rows to regain 95%", "rows_to_regain"),
            ("accuracy, next quarter", "post_switch_accuracy"),
            ("drift responses", "drift_responses"),
        ):
            print(f"{label:28}{off[key]!s:>16}{on[key]!s:>16}")
    return 0


def _quiet_runtime_logs() -> None:
    """TensorFlow's C++ notices and Serve's INFO lines bury what a user came to see.

    Call before TensorFlow is imported and again after `ray.init`, which sets up Serve's
    logger; warnings and errors still show.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)


def _bench_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipelines.bench.train_bench import result_table, run_train_bench

    # Ray prints worker notices to the driver's stdout; keep stdout for the result alone.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_train_bench(batch=args.batch, read_rows=args.read_rows, rows=args.rows)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        Console().print(result_table(result))
    return 0


def _bench_ingest(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipelines.bench.ingest_bench import result_table, run_ingest_bench

    # Ray prints worker notices to the driver's stdout; keep stdout for the result alone.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_ingest_bench(rows=args.rows, members=args.members)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        Console().print(result_table(result))
    return 0


def _bench(args: argparse.Namespace) -> int:
    _quiet_runtime_logs()
    if args.bench == "train":
        return _bench_train(args)
    if args.bench == "ingest":
        return _bench_ingest(args)
    if args.bench == "drift":
        return _bench_drift(args)
    if args.bench == "scale":
        return _bench_scale(args)
    if args.bench == "accuracy":
        return _bench_accuracy(args)
    from pipelines.bench.serve_bench import run_serve_bench

    # Ray prints worker notices to the driver's stdout; keep stdout for the result alone.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_serve_bench(port=args.port, requests=args.requests)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'':24}{'floor':>12}{'ensemble':>12}")
    for label, key in (
        ("p50 latency (ms)", "p50_ms"),
        ("p99 latency (ms)", "p99_ms"),
        ("requests/s", "requests_per_s"),
    ):
        print(f"{label:24}{result['floor_' + key]:>12.2f}{result['ensemble_' + key]:>12.2f}")
    print(
        f"ensemble adds {result['added_p50_ms']:.2f} ms at p50 (median of the per-request "
        f"differences: {result['paired_added_p50_ms']:.2f} ms); p99 ratio {result['p99_ratio']:.2f}"
    )
    print(
        f"the same ensemble with its graph in TensorFlow: p50 "
        f"{result['ensemble_tensorflow_p50_ms']:.2f} ms, p99 "
        f"{result['ensemble_tensorflow_p99_ms']:.2f} ms (adds "
        f"{result['tensorflow_added_p50_ms']:.2f} ms at p50)"
    )
    print(f"bulk: {result['bulk_rows_per_s']:,.0f} rows/s in 1,024-row Arrow requests")
    print(f"failed requests: {result['failed_requests']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        key: value for key, value in vars(args).items() if key not in ("command", "config")
    }
    config = load_config(args.config, overrides)
    # Open the source's metadata before TensorFlow loads: a bad URI is then one line,
    # quickly, with none of TensorFlow's start-up notices before it.
    from pipelines.sources import open_source

    open_source(config.source_spec())
    # Heavy imports only once the arguments are known good: `--help` and errors stay fast.
    _quiet_runtime_logs()
    from pipelines.job import Job
    from pipelines.progress import ProgressDisplay
    from pipelines.report import summarise

    job = Job(config)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop_requested.is_set():
            raise KeyboardInterrupt  # second signal: stop waiting for a graceful finish
        stop_requested.set()
        logger.warning(
            "%s received: finishing the current batches, then writing the report",
            signal.Signals(signum).name,
        )
        job.request_stop()

    def install_handlers() -> None:
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        _quiet_runtime_logs()  # again: ray.init has set up Serve's logger by now

    install_handlers()
    with job:
        job.start(on_ray_ready=install_handlers)  # ray.init replaces the SIGTERM handler
        print(f"serving on {job.url}/predict while training", file=sys.stderr)
        with ProgressDisplay(enabled=config.progress) as progress:
            report = job.wait(on_status=progress.update)
        print(summarise(report))
        if job.report_paths is not None:
            print(f"report: {job.report_paths.json_path}  plot: {job.report_paths.plot_path}")
        if config.keep_serving and not stop_requested.is_set():
            print(
                f"stream ended; still serving on {job.url}/predict (Ctrl-C to stop)",
                file=sys.stderr,
            )
            stop_requested.wait()
    return 0


def _scale(args: argparse.Namespace) -> int:
    """Queue a scaling step with the job's coordinator and wait for the driver's answer."""
    _quiet_runtime_logs()
    import ray

    from actors.names import COORDINATOR_NAME, NAMESPACE

    if args.address != "auto":
        # Ray retries an unreachable GCS for minutes; a closed port is one line at once.
        host, _, port = args.address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"no Ray cluster at --address {args.address!r} ({error}); give HOST:PORT "
                "of its head node, or 'auto' on one of its nodes"
            ) from None
    try:
        ray.init(
            address=args.address,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError) as error:
        raise ConfigError(f"no Ray cluster at --address {args.address!r} ({error})") from None
    try:
        try:
            coordinator: Any = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
        except ValueError:
            raise ConfigError(
                f"no running online-ensemble job on the Ray cluster at {args.address!r}"
            ) from None
        request = {"members": args.members, "policy": args.policy, "retire": args.retire}
        request_id = int(ray.get(coordinator.request_scale.remote(request)))
        deadline = time.monotonic() + args.timeout_s
        while (result := ray.get(coordinator.scale_result.remote(request_id))) is None:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"scale request {request_id} not done within {args.timeout_s:.0f}s "
                    "(is the job's driver still running?)"
                )
            time.sleep(0.5)  # polling the driver's answer, deadline-bounded
    finally:
        ray.shutdown()
    if not result.get("ok"):
        raise ConfigError(str(result.get("error")))
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "scale":
            return _scale(args)
    except OnlineEnsembleError as error:
        print(f"online-ensemble: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("online-ensemble: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
