"""Job configuration: one validated object, loaded from YAML/TOML and overridden by flags.

Every field is described; errors say what was expected and what was received, and the
CLI prints them as one line.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import tomllib
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from actors.errors import ConfigError
from actors.specs import (
    CheckpointSpec,
    DriftSpec,
    IngestSpec,
    MemberConfig,
    ModelSpec,
    StrategySpec,
)
from pipelines.sources.base import SourceSpec

__all__ = ["DEFAULT_SOURCE", "SEQUENCE_WINDOW", "JobConfig", "load_config"]

DEFAULT_SOURCE = "synthetic://hyperplane"
SEQUENCE_WINDOW = 16
"""Rows per input window of an lstm/conv1d member when `input_window` is not set."""


class JobConfig(BaseModel):
    """Everything `online-ensemble run` needs. Flags and config files set the same fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        DEFAULT_SOURCE,
        description="stream URI: synthetic://hyperplane, a path, file://, s3://, ...",
    )
    members: int = Field(4, ge=1, le=256, description="ensemble members, one Ray actor each")
    partitions: int | None = Field(
        None,
        ge=1,
        description="partitions to split a splittable source into (default: one per member)",
    )
    rows: int | None = Field(None, ge=1, description="cap on the synthetic stream's total rows")
    seed: int = Field(0, description="seeds synthetic streams, weight initialisation and sampling")
    host: str = Field(
        "127.0.0.1", description="address Serve binds to; loopback unless you mean otherwise"
    )
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the Serve endpoint")
    report: Path = Field(Path("report"), description="directory for report.json and accuracy.png")
    address: str | None = Field(
        None, description="Ray cluster to join (e.g. 'auto'); default: embedded Ray"
    )
    keep_serving: bool = Field(
        False, description="keep the HTTP endpoint up after a bounded stream ends"
    )
    dead_letter: str | None = Field(
        None,
        description="where rejected records go: a JSON-lines file or kafka://host:port/topic "
        "(default: REPORT/dead_letter.jsonl)",
    )
    follow: bool = Field(
        False, description="file sources: keep watching the directory for new files (live)"
    )
    min_batch: int = Field(
        64, ge=1, description="live streams: rows to gather before a training step ..."
    )
    max_wait_ms: float = Field(100.0, ge=0, description="... waiting at most this long for them")
    max_lag_rows: int | None = Field(
        None,
        ge=1,
        description="past this lag (rows available, not read) a member samples its input to "
        "keep pace; default: never sample, learn every row",
    )
    lag_policy: Literal["uniform", "newest"] = Field(
        "uniform",
        description="how to sample past max_lag_rows: thin uniformly, or skip to the newest rows",
    )
    checkpoints: bool = Field(
        True, description="members checkpoint their state, then commit their source offsets"
    )
    checkpoint_dir: str | None = Field(
        None,
        description="where checkpoints go (path or pyarrow.fs URI); each run writes a new "
        "run-* folder in it (default: REPORT/checkpoints)",
    )
    resume: str | None = Field(
        None,
        description="continue a stopped run from its checkpoint folder (a run-* folder under "
        "checkpoint_dir), with the same source and members",
    )
    checkpoint_every_rows: int = Field(
        50_000, ge=1, description="checkpoint after at most this many rows read ..."
    )
    checkpoint_interval_s: float = Field(10.0, gt=0, description="... or this many seconds")
    checkpoint_keep: int = Field(2, ge=1, description="checkpoints retained per member")
    member_max_restarts: int = Field(
        3, ge=0, description="times Ray restarts a crashed member; it resumes from its checkpoint"
    )
    coordinator_max_restarts: int = Field(
        3,
        ge=0,
        description="times Ray restarts a crashed coordinator; it continues from its checkpoint",
    )
    learn_log: str | None = Field(
        None,
        description="JSON-lines audit file of the offsets every member learned (off by default)",
    )
    progress: bool = Field(True, description="show progress while training")
    impute_missing: bool = Field(
        False,
        description="answer requests with missing features, imputing each member's running mean",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="HTTP requests slower than this get 408"
    )
    replicas: int = Field(
        1,
        ge=1,
        description="Serve replicas answering /predict; with 2+ a dying replica drops no request",
    )
    max_queued_requests: int = Field(
        1000,
        ge=1,
        description="requests waiting for a replica beyond this get 503 with Retry-After",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    max_request_rows: int = Field(10_000, ge=1, description="requests with more rows get 413")

    task: Literal["binary", "multiclass", "regression"] = Field(
        "binary", description="what the label is: 0/1, a class index 0..n_classes-1, or a number"
    )
    n_classes: int = Field(2, ge=2, description="classes of a multiclass task")
    model: Literal["mlp", "lstm", "conv1d", "custom", "file"] = Field(
        "mlp",
        description="member network: mlp on rows, lstm/conv1d on windows of rows, custom "
        "(model_factory) or file (model_file)",
    )
    input_window: int | None = Field(
        None,
        ge=1,
        description=f"rows per input window of lstm/conv1d (default {SEQUENCE_WINDOW}; 1 for mlp); "
        "a custom model with a (window, features) input sets it too",
    )
    model_factory: str | None = Field(
        None, description="custom model: 'module:function' returning a Keras model"
    )
    model_file: str | None = Field(
        None,
        description="file model: a .keras archive, loaded in Keras safe mode (no Lambda "
        "layers, no pickles); its weights are where training starts",
    )
    hidden: tuple[int, ...] = Field(
        (64, 64), description="hidden layer sizes (mlp), or dense sizes after lstm/conv1d"
    )
    learning_rate: float = Field(0.02, gt=0, description="Adam learning rate")
    strategy: Literal["finetune", "replay", "head", "distill", "reset"] = Field(
        "replay",
        description="how members update (see actors/learner.py); replay's defaults: the "
        "newest 512 rows, 3 replayed per new row",
    )
    lr_schedule: Literal["constant", "decay", "warmup"] = Field(
        "constant", description="learning-rate schedule over training steps"
    )
    strategy_options: dict[str, float | str] = Field(
        default_factory=dict,
        description="the strategy's own settings, e.g. {replay_buffer: reservoir, "
        "replay_size: 4096, replay_ratio: 1} (see actors/specs.py StrategySpec)",
    )
    best_margin: float | None = Field(
        0.03,
        ge=0,
        description="serve a member's best snapshot while its current network is this far "
        "below it (accuracy points; relative error for regression); 0 or null turns it off",
    )
    batch_size: int = Field(
        128, ge=1, le=65536, description="rows a member reads, scores and learns at a time"
    )
    # Chosen by `bench accuracy` (docs/benchmarks.md, "A batch that grows"): every
    # stream gains 0.02 to 2.5 points, a long stream's throughput is unchanged.
    batch_start: int = Field(
        8,
        ge=1,
        le=65536,
        description="rows of a member's first batches: they double up to batch_size as it "
        "learns (each at most 1/4 of the rows learned) and start small again after it "
        "answers a drift; batch_size or more keeps every batch batch_size",
    )
    step_rows: int = Field(
        8,
        ge=1,
        description="rows per optimizer step: a batch is learned in ceil(batch_size / "
        "step_rows) steps in one compiled call (more steps per row learn faster)",
    )
    eval_fraction: float = Field(
        0.05, ge=0, lt=1, description="share of rows forwarded to the shared evaluation sample"
    )
    window: int = Field(2000, ge=10, description="rows that count as recent accuracy")
    policy: Literal["uniform", "accuracy", "softmax", "hedge", "awe"] = Field(
        "accuracy", description="weighting policy (see actors/weighting.py)"
    )
    weight_floor: float = Field(
        0.0, ge=0, lt=1, description="minimum weight of an above-chance member"
    )
    weight_cap: float = Field(1.0, gt=0, le=1, description="maximum weight of any member")
    weights_by_partition: bool = Field(
        True,
        description="also weigh members per source partition, from their scores on that "
        "partition's shared rows alone; a request naming its partition is mixed with them",
    )
    temperature: float = Field(
        0.05, gt=0, description="softmax policy: the accuracy gap worth a factor e"
    )
    hedge_eta: float = Field(
        2.0, gt=0, description="hedge policy: learning rate on the recent 0/1 loss"
    )
    publish_interval_s: float = Field(
        0.25, gt=0, description="longest time between member snapshots"
    )
    publish_every_rows: int = Field(
        16384, ge=1, description="most rows a member learns between snapshots"
    )
    history_interval_s: float = Field(
        0.2, gt=0, description="how often the coordinator records a history point (report, plot)"
    )
    member_cpus: float | None = Field(
        None,
        gt=0,
        description="CPUs reserved per member (default: cluster CPUs / members, at most 1)",
    )
    # Chosen by `bench accuracy` (docs/benchmarks.md, "Forgetting replayed rows from
    # before a drift"): ADWIN with `forget` gains ~0.55 points on both Agrawal streams and
    # leaves the streams without a detected switch unchanged.
    drift_detector: Literal["none", "adwin", "page-hinkley", "ddm"] = Field(
        "adwin",
        description="drift detection on each member's own errors (ddm: classification only)",
    )
    drift_action: Literal["forget", "reset", "boost-lr", "spawn", "retire", "none"] = Field(
        "forget",
        description="the answer to a member's drift: replay forgets its rows from before "
        "the change (forget), a fresh network (reset), a raised learning rate for a while, "
        "a challenger member beside it (spawn), retiring it if at or below chance, or only "
        "recording the event",
    )
    drift_cooldown_rows: int = Field(
        2_000, ge=0, description="rows after a drift response in which detections are not acted on"
    )
    drift_options: dict[str, float] = Field(
        default_factory=dict,
        description="the detector's own settings, e.g. {delta: 0.002} for adwin (actors/drift.py)",
    )
    max_members: int | None = Field(
        None,
        ge=1,
        le=256,
        description="largest size `scale` may grow the ensemble to: a synthetic or file "
        "source is split into this many partitions, and each member reserves cluster CPUs / "
        "this many (default: members)",
    )
    new_member: Literal["fresh", "clone-best", "distill"] = Field(
        "fresh",
        description="how a member added by scaling starts: fresh weights, a copy of the "
        "highest-weight member's, or fitted on the ensemble's answers over recent rows",
    )
    autoscale_lag_rows: int | None = Field(
        None,
        ge=1,
        description="scale by lag: add a member while the total lag stays above this and "
        "grows, retire one after autoscale_idle_s without lag (None: off)",
    )
    autoscale_min: int = Field(1, ge=1, description="autoscaling never goes below this size")
    autoscale_idle_s: float = Field(
        30.0, gt=0, description="seconds without lag before autoscaling retires a member"
    )
    autoscale_cooldown_s: float = Field(
        30.0, ge=0, description="seconds between two autoscaling steps"
    )
    placement: Literal["spread", "pack"] = Field(
        "spread",
        description="spread members over the cluster's nodes (one node's loss takes few), "
        "or pack them where Ray finds room first",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> JobConfig:
        if self.max_members is not None and self.max_members < self.members:
            raise ValueError(
                f"max_members ({self.max_members}) must be >= members ({self.members})"
            )
        if self.autoscale_lag_rows is not None and self.autoscale_min > self.scale_limit:
            raise ValueError(
                f"autoscale_min ({self.autoscale_min}) must be <= max_members ({self.scale_limit})"
            )
        if self.partitions is not None and self.partitions < self.members:
            raise ValueError(
                f"partitions ({self.partitions}) must be >= members ({self.members}): "
                "every member needs one"
            )
        if self.weight_floor * self.members >= 1:
            raise ValueError(
                f"weight_floor ({self.weight_floor}) times members ({self.members}) must be < 1"
            )
        if self.members > 1 and self.weight_cap * self.members <= 1:
            raise ValueError(
                f"weight_cap ({self.weight_cap}) times members ({self.members}) must be > 1"
            )
        # Build the member specs now, so a bad combination (an lstm with window 1, a
        # custom model without a factory) fails here as one line, not inside an actor.
        self.member_config()
        if self.weight_floor > self.weight_cap:
            raise ValueError(
                f"weight_floor ({self.weight_floor}) must be <= weight_cap ({self.weight_cap})"
            )
        return self

    def policy_params(self) -> dict[str, float]:
        """The chosen policy's own parameters."""
        own = {"softmax": {"temperature": self.temperature}, "hedge": {"eta": self.hedge_eta}}
        return own.get(self.policy, {})

    @property
    def scale_limit(self) -> int:
        """The most members this job may scale to."""
        return self.max_members if self.max_members is not None else self.members

    @property
    def partition_count(self) -> int:
        """Partitions of a splittable source: enough for every member it may grow to."""
        return self.partitions if self.partitions is not None else self.scale_limit

    @property
    def dead_letter_path(self) -> str:
        """Where rejected records go: a file path or a ``kafka://`` topic URI."""
        if self.dead_letter is not None:
            return self.dead_letter
        return str(self.report / "dead_letter.jsonl")

    def member_config(self, checkpoint_uri: str | None = None) -> MemberConfig:
        """The members' settings; `checkpoint_uri` is this run's checkpoint folder."""
        return MemberConfig(
            model=self.model_spec(),
            strategy=self.strategy_spec(),
            best_margin=self.best_margin or None,
            batch_size=self.batch_size,
            batch_start=self.batch_start,
            eval_fraction=self.eval_fraction,
            window=self.window,
            publish_interval_s=self.publish_interval_s,
            publish_every_rows=self.publish_every_rows,
            seed=self.seed,
            ingest=IngestSpec(
                min_batch=self.min_batch,
                max_wait_ms=self.max_wait_ms,
                max_lag_rows=self.max_lag_rows,
                lag_policy=self.lag_policy,
            ),
            checkpoint=CheckpointSpec(
                uri=checkpoint_uri,
                every_rows=self.checkpoint_every_rows,
                interval_s=self.checkpoint_interval_s,
                keep=self.checkpoint_keep,
            ),
            drift=DriftSpec(
                detector=None if self.drift_detector == "none" else self.drift_detector,
                action=self.drift_action,
                cooldown_rows=self.drift_cooldown_rows,
                params=tuple(sorted(self.drift_options.items())),
            ),
            learn_log=self.learn_log,
        )

    def source_spec(self) -> SourceSpec:
        """The `SourceSpec` every member opens its partitions from."""
        return SourceSpec(
            uri=self.source,
            partitions=self.partition_count,
            rows=self.rows,
            seed=self.seed,
            follow=self.follow,
        )

    @property
    def checkpoint_root(self) -> str | None:
        """Folder holding every run's checkpoints (None: checkpoints are off)."""
        if not self.checkpoints:
            return None
        return self.checkpoint_dir or str(self.report / "checkpoints")

    def model_spec(self) -> ModelSpec:
        window = self.input_window
        if window is None:
            window = SEQUENCE_WINDOW if self.model in ("lstm", "conv1d") else 1
        return ModelSpec(
            kind=self.model,
            hidden=self.hidden,
            learning_rate=self.learning_rate,
            task=self.task,
            n_classes=self.n_classes,
            window=window,
            factory=self.model_factory,
            path=self.model_file,
        )

    def strategy_spec(self) -> StrategySpec:
        known = {f.name for f in fields(StrategySpec)} - {"name", "step_rows", "schedule"}
        unknown = sorted(set(self.strategy_options) - known)
        if unknown:
            raise ConfigError(
                f"unknown strategy option(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(known))}"
            )
        options = {
            name: _option_value(name, value, StrategySpec.__dataclass_fields__[name].default)
            for name, value in self.strategy_options.items()
        }
        return StrategySpec(
            name=self.strategy, step_rows=self.step_rows, schedule=self.lr_schedule, **options
        )

    @classmethod
    def build(cls, **values: Any) -> JobConfig:
        """Validate `values`; raises ConfigError with a one-line message on failure."""
        try:
            return cls(**values)
        except ValidationError as error:
            raise ConfigError(_one_line(error)) from None


def _one_line(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = (
                f"unknown setting; known settings: {', '.join(sorted(JobConfig.model_fields))}"
            )
        received = item.get("input")
        shown = (
            f" (got {received!r})"
            if item["type"] not in ("extra_forbidden",) and not isinstance(received, dict)
            else ""
        )
        problems.append(f"{where}: {message}{shown}")
    return "invalid configuration: " + "; ".join(problems)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> JobConfig:
    """Read a YAML or TOML file (by extension) and apply `overrides` (flags) on top.

    Raises:
        ConfigError: unreadable file, bad syntax, not a mapping, or invalid values.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"cannot read config file {str(path)!r}: {error.strerror or error}"
            ) from None
        try:
            if path.suffix.lower() == ".toml":
                loaded: Any = tomllib.loads(text)
            else:
                loaded = yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
            first = str(error).strip().splitlines()[0]
            raise ConfigError(f"cannot parse config file {str(path)!r}: {first}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {str(path)!r} must hold a mapping of settings, "
                f"got {type(loaded).__name__}"
            )
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return JobConfig.build(**values)


def _option_value(name: str, value: float | str, default: Any) -> Any:
    """A strategy option as its `StrategySpec` field's type (the default's)."""
    try:
        if isinstance(default, str):
            return str(value)
        return int(value) if isinstance(default, int) else float(value)
    except ValueError:
        kind = "a word" if isinstance(default, str) else "a number"
        raise ConfigError(f"strategy option {name} must be {kind}, got {value!r}") from None
