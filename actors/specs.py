"""Plain configuration of members and their networks: no TensorFlow here.

Kept apart from the modules that build networks so that the CLI and config validation
load in a fraction of a second, and so that specs pickle cheaply into every actor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from actors.errors import ConfigError, ModelError

__all__ = ["MemberConfig", "ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build a member's network.

    Args:
        kind: architecture family; ``mlp`` for tabular rows.
        hidden: units of each hidden layer.
        activation: hidden-layer activation.
        learning_rate: Adam learning rate.
        normaliser_horizon: rows after which the running mean/variance stop growing
            their memory, so they keep tracking a drifting input distribution.
    """

    kind: Literal["mlp"] = "mlp"
    hidden: tuple[int, ...] = field(default=(32, 32))
    activation: str = "relu"
    learning_rate: float = 0.02
    normaliser_horizon: int = 50_000

    def __post_init__(self) -> None:
        if self.kind != "mlp":
            raise ModelError(f"unknown model kind {self.kind!r}; expected 'mlp'")
        if not self.hidden or any(int(u) < 1 for u in self.hidden):
            raise ModelError(f"hidden layer sizes must be positive integers, got {self.hidden}")
        if not self.learning_rate > 0:
            raise ModelError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.normaliser_horizon < 1:
            raise ModelError(f"normaliser_horizon must be >= 1, got {self.normaliser_horizon}")


@dataclass(frozen=True)
class MemberConfig:
    """Settings of one member.

    Args:
        model: the network to train.
        batch_size: rows per training step.
        eval_fraction: share of good rows forwarded to the shared evaluation sample.
        window: rows that count as the member's recent (own, prequential) accuracy.
        publish_interval_s: longest time between two snapshots a member publishes.
        publish_every_rows: most rows learned between two snapshots; with the interval,
            whichever comes first. Serve answers with published snapshots only, so this
            bounds how stale a served member can be.
        seed: seeds the network and the evaluation sampling.
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int = 128
    eval_fraction: float = 0.05
    window: int = 2000
    publish_interval_s: float = 0.25
    publish_every_rows: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.publish_every_rows < 1:
            raise ConfigError(f"publish_every_rows must be >= 1, got {self.publish_every_rows}")
        if self.publish_interval_s <= 0:
            raise ConfigError(f"publish_interval_s must be > 0, got {self.publish_interval_s}")
