"""Plain configuration of members and their networks: no TensorFlow here.

Kept apart from the modules that build networks so that the CLI and config validation
load in a fraction of a second, and so that specs pickle cheaply into every actor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from actors.errors import ConfigError, ModelError

__all__ = [
    "LAG_POLICIES",
    "MODEL_KINDS",
    "REPLAY_BUFFERS",
    "SCHEDULES",
    "STRATEGIES",
    "TASKS",
    "CheckpointSpec",
    "IngestSpec",
    "MemberConfig",
    "ModelSpec",
    "StrategySpec",
]

TaskKind = Literal["binary", "multiclass", "regression"]
ModelKind = Literal["mlp", "lstm", "conv1d", "custom", "file"]
StrategyName = Literal["finetune", "replay", "head", "distill", "reset"]
ScheduleName = Literal["constant", "decay", "warmup"]
ReplayBuffer = Literal["recent", "reservoir"]
LagPolicy = Literal["uniform", "newest"]

TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")
MODEL_KINDS: tuple[str, ...] = ("mlp", "lstm", "conv1d", "custom", "file")
STRATEGIES: tuple[str, ...] = ("finetune", "replay", "head", "distill", "reset")
REPLAY_BUFFERS: tuple[str, ...] = ("recent", "reservoir")
SCHEDULES: tuple[str, ...] = ("constant", "decay", "warmup")
LAG_POLICIES: tuple[str, ...] = ("uniform", "newest")

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ModelSpec:
    """How to build a member's network, outputs included.

    Args:
        kind: ``mlp`` for tabular rows; ``lstm`` or ``conv1d`` over sliding windows of
            `window` consecutive rows of a partition; ``custom``: the Keras model that
            `factory` returns; ``file``: the Keras model saved in `path` (a ``.keras``
            archive, loaded in Keras safe mode; its weights are the starting point).
        hidden: units of each hidden layer (mlp), or of the dense layers after the
            recurrent or convolutional block (lstm, conv1d).
        activation: hidden-layer activation.
        learning_rate: Adam learning rate (the start of the schedule, see `StrategySpec`).
        normaliser_horizon: rows after which the running mean/variance stop growing
            their memory, so they keep tracking a drifting input distribution.
        task: ``binary`` (one sigmoid unit), ``multiclass`` (`n_classes` softmax units)
            or ``regression`` (one linear unit, mean squared error).
        n_classes: classes of a multiclass task (labels 0 .. n_classes - 1).
        window: rows per input window of a sequence model; 1 for row-wise models.
        units: LSTM units.
        filters: Conv1D filters per convolution.
        kernel_size: Conv1D kernel width in rows.
        factory: ``module:function`` for ``custom``; the function takes no argument and
            returns a Keras model with input shape ``(n_features,)`` (or
            ``(window, n_features)`` when `window` > 1) and the task's output units.
        path: the ``.keras`` file for ``file``, with the same input and output shapes.
            Every member and replica loads it, so on a cluster it must be on every node
            (or on storage they share).
    """

    kind: ModelKind = "mlp"
    hidden: tuple[int, ...] = field(default=(64, 64))
    activation: str = "relu"
    learning_rate: float = 0.02
    normaliser_horizon: int = 50_000
    task: TaskKind = "binary"
    n_classes: int = 2
    window: int = 1
    units: int = 32
    filters: int = 32
    kernel_size: int = 5
    factory: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ModelError(
                f"unknown model kind {self.kind!r}; expected one of {', '.join(MODEL_KINDS)}"
            )
        if self.task not in TASKS:
            raise ModelError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.task == "multiclass" and self.n_classes < 2:
            raise ModelError(f"a multiclass task needs n_classes >= 2, got {self.n_classes}")
        if any(int(u) < 1 for u in self.hidden):
            raise ModelError(f"hidden layer sizes must be positive integers, got {self.hidden}")
        if self.kind == "mlp" and not self.hidden:
            raise ModelError("an mlp needs at least one hidden layer")
        if not self.learning_rate > 0:
            raise ModelError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.normaliser_horizon < 1:
            raise ModelError(f"normaliser_horizon must be >= 1, got {self.normaliser_horizon}")
        if self.window < 1:
            raise ModelError(f"window must be >= 1 row, got {self.window}")
        if self.kind in ("lstm", "conv1d") and self.window < 2:
            raise ModelError(
                f"{self.kind} members read windows of rows: window (input_window) must be "
                f">= 2, got {self.window}"
            )
        if self.kind == "mlp" and self.window != 1:
            raise ModelError(f"an mlp reads single rows: window must be 1, got {self.window}")
        if self.kind == "conv1d" and not 1 <= self.kernel_size <= self.window:
            raise ModelError(
                f"conv1d kernel_size must be in [1, window={self.window}], got {self.kernel_size}"
            )
        if self.units < 1 or self.filters < 1:
            raise ModelError(f"units and filters must be >= 1, got {self.units}, {self.filters}")
        if self.kind == "custom":
            if not self.factory or not _FACTORY.match(self.factory):
                raise ModelError(
                    f"a custom model needs factory='module:function', got {self.factory!r}"
                )
        elif self.factory is not None:
            raise ModelError(f"factory is only used with kind='custom', not {self.kind!r}")
        if self.kind == "file":
            if not self.path or not self.path.endswith(".keras"):
                raise ModelError(
                    f"a file model needs path='....keras' (a Keras v3 archive), got "
                    f"{self.path!r}: HDF5 and pickled models are refused, loading them can "
                    "run code"
                )
        elif self.path is not None:
            raise ModelError(f"path is only used with kind='file', not {self.kind!r}")

    @property
    def output_units(self) -> int:
        return self.n_classes if self.task == "multiclass" else 1

    @property
    def is_sequence(self) -> bool:
        """Whether the network reads windows of consecutive rows instead of single rows."""
        return self.window > 1

    def input_shape(self, n_features: int) -> tuple[int, ...]:
        """Shape of one network input: ``(n_features,)`` or ``(window, n_features)``."""
        return (self.window, n_features) if self.is_sequence else (n_features,)


@dataclass(frozen=True)
class StrategySpec:
    """How a member updates its network as rows arrive (see `actors.strategies`).

    Args:
        name: ``finetune`` (new rows only; the default here, while a job's default is
            ``replay``, `JobConfig.strategy`), ``replay`` (new rows plus old ones from a
            replay memory, `replay_buffer`), ``head`` (train only the last `head_layers`
            weight layers), ``distill`` (penalise moving away from an anchor snapshot's outputs),
            ``reset`` (refit a fresh network on the recent rows when accuracy drops).
        step_rows: rows per optimizer step. A batch is learned in consecutive slices of
            this many rows, ``ceil(batch / step_rows)`` steps in one compiled call, each
            slice scored before it is learned (`OnlineLearner._in_steps`).
        schedule: learning-rate schedule over training steps: ``constant``, ``decay``
            (inverse-time: ``lr / (1 + decay_rate * step / decay_steps)``) or ``warmup``
            (the full rate for `warmup_steps`, then ``lr * after_warmup_factor``).
        decay_steps, decay_rate: the ``decay`` schedule.
        warmup_steps, after_warmup_factor: the ``warmup`` schedule.
        replay_buffer: where ``replay``'s old rows come from: ``recent``, the newest
            `replay_size` rows (more passes over a sliding window: more steps per row,
            and it follows drift), or ``reservoir``, a uniform sample of the whole past
            (keeps fitting old concepts: forgets less, but replays labels a concept
            change made wrong).
        replay_size: rows the replay memory holds.
        replay_ratio: replayed rows per new row in each step.
        head_layers: trainable weight layers, counted from the output, for ``head``.
        distill_weight: weight of the distillation penalty against the task loss.
        anchor_rows: rows between two refreshes of the distillation anchor.
        reset_window: rows over which ``reset`` watches accuracy; the refit uses them.
        reset_drop: accuracy drop (classification; relative error rise for regression)
            below the best recent level that triggers a reset.
        reset_epochs: passes over the recent rows when refitting after a reset.
    """

    name: StrategyName = "finetune"
    step_rows: int = 8
    schedule: ScheduleName = "constant"
    decay_steps: int = 1000
    decay_rate: float = 1.0
    warmup_steps: int = 2000
    after_warmup_factor: float = 0.2
    # Chosen by `bench accuracy` (docs/benchmarks.md, "Recent-row replay"): the newest 512
    # rows, three replayed per new row.
    replay_buffer: ReplayBuffer = "recent"
    replay_size: int = 512
    replay_ratio: float = 3.0
    head_layers: int = 1
    distill_weight: float = 1.0
    anchor_rows: int = 20_000
    reset_window: int = 512
    reset_drop: float = 0.15
    reset_epochs: int = 10

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ConfigError(
                f"unknown update strategy {self.name!r}; expected one of {', '.join(STRATEGIES)}"
            )
        if self.replay_buffer not in REPLAY_BUFFERS:
            raise ConfigError(
                f"unknown replay buffer {self.replay_buffer!r}; "
                f"expected one of {', '.join(REPLAY_BUFFERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown learning-rate schedule {self.schedule!r}; "
                f"expected one of {', '.join(SCHEDULES)}"
            )
        checks = {
            "step_rows": self.step_rows >= 1,
            "decay_steps": self.decay_steps >= 1,
            "decay_rate": self.decay_rate >= 0,
            "warmup_steps": self.warmup_steps >= 0,
            "after_warmup_factor": self.after_warmup_factor > 0,
            "replay_size": self.replay_size >= 1,
            "replay_ratio": self.replay_ratio > 0,
            "head_layers": self.head_layers >= 1,
            "distill_weight": self.distill_weight >= 0,
            "anchor_rows": self.anchor_rows >= 1,
            "reset_window": self.reset_window >= 10,
            "reset_drop": self.reset_drop > 0,
            "reset_epochs": self.reset_epochs >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)}" for name in bad)
            raise ConfigError(f"invalid strategy setting(s): {values}")


@dataclass(frozen=True)
class IngestSpec:
    """How a member reads its partitions: gathering on slow streams, keeping pace on fast.

    Args:
        min_batch: on a live partition, rows to gather before a training step ...
        max_wait_ms: ... waiting at most this long for them (then train on what came).
        max_lag_rows: when a partition's lag (rows available but not read) exceeds this,
            the member samples its input so that it keeps pace; None never samples (every
            row is learned, however far behind the member falls).
        lag_policy: how it samples: ``uniform`` keeps each row with probability
            ``max_lag_rows / lag`` (reading more rows per step, so a member that trains at
            T rows/s on a stream of S rows/s settles at a lag near ``max_lag_rows * S / T``);
            ``newest`` skips the oldest rows past the bound and learns the newest ones.
            Skipped rows are counted as ``rows_sampled``, never silently dropped.
        max_read_factor: ``uniform`` reads at most this many times `batch_size` rows per
            step, which bounds the memory of one read.
    """

    min_batch: int = 64
    max_wait_ms: float = 100.0
    max_lag_rows: int | None = None
    lag_policy: LagPolicy = "uniform"
    max_read_factor: int = 16

    def __post_init__(self) -> None:
        if self.min_batch < 1:
            raise ConfigError(f"min_batch must be >= 1, got {self.min_batch}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_lag_rows is not None and self.max_lag_rows < 1:
            raise ConfigError(
                f"max_lag_rows must be >= 1 (or None: never sample), got {self.max_lag_rows}"
            )
        if self.lag_policy not in LAG_POLICIES:
            raise ConfigError(
                f"lag_policy must be one of {', '.join(LAG_POLICIES)}, got {self.lag_policy!r}"
            )
        if self.max_read_factor < 1:
            raise ConfigError(f"max_read_factor must be >= 1, got {self.max_read_factor}")


@dataclass(frozen=True)
class CheckpointSpec:
    """Where and how often a member checkpoints its state (offsets are committed after).

    Args:
        uri: directory (local path or `pyarrow.fs` URI) of this job's checkpoints; None
            turns checkpoints off, and then no offset is ever committed to the source.
        every_rows: checkpoint after at most this many rows read ...
        interval_s: ... or this many seconds, whichever comes first.
        keep: how many checkpoints of each member to retain (the newest ones).
    """

    uri: str | None = None
    every_rows: int = 50_000
    interval_s: float = 10.0
    keep: int = 2

    def __post_init__(self) -> None:
        if self.uri is not None and not self.uri.strip():
            raise ConfigError(
                "checkpoint uri is empty; give a directory, or None for no checkpoints"
            )
        if self.every_rows < 1:
            raise ConfigError(f"checkpoint every_rows must be >= 1, got {self.every_rows}")
        if self.interval_s <= 0:
            raise ConfigError(f"checkpoint interval_s must be > 0, got {self.interval_s}")
        if self.keep < 1:
            raise ConfigError(f"checkpoint keep must be >= 1, got {self.keep}")


DRIFT_ACTIONS: tuple[str, ...] = ("forget", "reset", "boost-lr", "spawn", "retire", "none")


@dataclass(frozen=True)
class DriftSpec:
    """Drift detection on a member's own error stream, and what the member does then.

    Args:
        detector: ``adwin``, ``page-hinkley`` or ``ddm`` (classification only), or None
            for no detection (see `actors.drift`).
        action: ``forget`` (the ``replay`` memory drops its rows from before the change:
            ADWIN locates it, and its window's rows stay; other detectors keep only the
            batch that showed it; a job's default), ``reset`` (a fresh network fitted on
            the batch that showed the drift, then learning on from there), ``boost-lr``
            (the learning rate times `boost_factor` for `boost_rows` rows), ``spawn``
            (the job adds a fresh challenger member that learns from the post-drift rows,
            beside this one),
            ``retire`` (the job retires this member if its weight is then 0, i.e. it is at
            or below chance), or ``none`` (record the event only). The member itself
            carries out forget, reset and boost-lr; spawn and retire are scaling steps the job's
            driver takes when it sees the event (`actors.membership.drift_scaling`).
        cooldown_rows: rows learned after an action in which further detections are
            recorded as suppressed, not acted on (no flapping while the member adapts).
        boost_factor: learning-rate multiplier of ``boost-lr``.
        boost_rows: rows the boost lasts.
        params: the detector's own settings, e.g. ``(("delta", 0.002),)`` for ADWIN.
    """

    detector: str | None = None
    action: str = "reset"
    cooldown_rows: int = 2_000
    boost_factor: float = 3.0
    boost_rows: int = 5_000
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        from actors.drift import make_detector  # drift imports errors only; no cycle

        if self.detector is not None:
            make_detector(self.detector, **dict(self.params))  # checks name and settings
        elif self.params:
            raise ConfigError("drift detector settings were given but no detector")
        if self.action not in DRIFT_ACTIONS:
            raise ConfigError(
                f"unknown drift action {self.action!r}; expected one of {', '.join(DRIFT_ACTIONS)}"
            )
        if self.cooldown_rows < 0 or self.boost_rows < 1 or not self.boost_factor > 0:
            raise ConfigError(
                "drift needs cooldown_rows >= 0, boost_rows >= 1 and boost_factor > 0; got "
                f"{self.cooldown_rows}, {self.boost_rows}, {self.boost_factor}"
            )


@dataclass(frozen=True)
class MemberConfig:
    """Settings of one member.

    Args:
        model: the network to train.
        strategy: how the network is updated.
        batch_size: rows per training step.
        batch_start: rows of a member's first batches, which grow to `batch_size` with the
            rows it learns and start small again after it answers a drift
            (`actors.batch_schedule`); None: every batch is `batch_size` (a job's default
            is 8, `JobConfig.batch_start`).
        eval_fraction: share of good rows forwarded to the shared evaluation sample.
        eval_max_rows: most sampled rows a member holds for its next publish; past it the
            oldest go (they were learned anyway, only not scored). Bounds the member's
            memory and the burst it sends after the coordinator was away.
        window: rows that count as the member's recent (own, prequential) accuracy.
        publish_interval_s: longest time between two snapshots a member publishes.
        publish_every_rows: most rows learned between two snapshots; with the interval,
            whichever comes first. Serve answers with published snapshots only, so this
            bounds how stale a served member can be.
        best_margin: serve the member's best snapshot while the current network's recent
            accuracy is more than this below the best's on the same rows (for regression:
            its error more than this fraction above); None turns best-snapshot serving off.
        best_check_every: score the best snapshot on every n-th batch (it costs a
            forward pass on that batch).
        seed: seeds the network and the evaluation sampling.
        ingest: how the member reads (slow-stream gathering, keeping pace when behind).
        checkpoint: where and how often the member checkpoints before committing offsets.
        drift: drift detection on the member's errors and its response.
        learn_log: optional JSON-lines file where the member appends the offset range of
            every batch it learns (an audit trail: which offsets were learned how often).
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    strategy: StrategySpec = field(default_factory=StrategySpec)
    batch_size: int = 128
    batch_start: int | None = None
    eval_fraction: float = 0.05
    eval_max_rows: int = 1024
    window: int = 2000
    publish_interval_s: float = 0.25
    publish_every_rows: int = 16384
    best_margin: float | None = 0.03
    best_check_every: int = 8
    seed: int = 0
    ingest: IngestSpec = field(default_factory=IngestSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    drift: DriftSpec = field(default_factory=DriftSpec)
    learn_log: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_start is not None and self.batch_start < 1:
            raise ConfigError(f"batch_start must be >= 1 (or None), got {self.batch_start}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.eval_max_rows < 1:
            raise ConfigError(f"eval_max_rows must be >= 1, got {self.eval_max_rows}")
        if self.publish_every_rows < 1:
            raise ConfigError(f"publish_every_rows must be >= 1, got {self.publish_every_rows}")
        if self.publish_interval_s <= 0:
            raise ConfigError(f"publish_interval_s must be > 0, got {self.publish_interval_s}")
        if self.best_margin is not None and self.best_margin <= 0:
            raise ConfigError(f"best_margin must be > 0 (or None: off), got {self.best_margin}")
        if self.best_check_every < 1:
            raise ConfigError(f"best_check_every must be >= 1, got {self.best_check_every}")
        if self.drift.detector == "ddm" and self.model.task == "regression":
            raise ConfigError(
                "the ddm drift detector needs 0/1 errors (classification); a regression "
                "member can use adwin or page-hinkley"
            )
