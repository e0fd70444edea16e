"""Every member's network in one graph: one compiled call scores all members and mixes them.

Used by Serve to answer requests and by the coordinator to score members on the shared
evaluation sample, so both compute exactly the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from actors.errors import ModelError
from actors.models import build_model
from actors.specs import ModelSpec

__all__ = ["EnsembleModel"]


class EnsembleModel:
    """`n_members` copies of the member architecture behind one `tf.function`.

    Args:
        spec: the members' architecture (all members share it).
        n_features: input width.
        n_members: how many members the graph holds.

    Example:
        >>> ensemble = EnsembleModel(ModelSpec(hidden=(4,)), n_features=3, n_members=2)
        >>> mixed, per_member = ensemble.predict(np.zeros((5, 3), np.float32), np.array([0.5, 0.5]))
        >>> mixed.shape, per_member.shape
        ((5,), (5, 2))
    """

    def __init__(self, spec: ModelSpec, n_features: int, n_members: int):
        self.spec = spec
        self.n_features = int(n_features)
        self.n_members = int(n_members)
        self._members = [
            build_model(spec, self.n_features, name=f"m{i}") for i in range(self.n_members)
        ]
        self._assigners: dict[int, Any] = {}
        self._call = tf.function(
            self._mix,
            input_signature=[
                tf.TensorSpec([None, self.n_features], tf.float32),
                tf.TensorSpec([self.n_members], tf.float32),
            ],
        )

    def _mix(self, x, mixing):
        per_member = tf.concat([model(x, training=False) for model in self._members], axis=1)
        mixed = tf.linalg.matvec(per_member, mixing)
        return mixed, per_member

    def set_member_weights(self, index: int, weights: list[np.ndarray]) -> None:
        """Load one member's snapshot (as returned by `OnlineLearner.get_weights`).

        One compiled call assigns every variable; Keras' `set_weights` walks layers in
        Python and costs several times more, which matters at tens of publishes a second.
        """
        variables = self._members[index].weights
        if len(weights) != len(variables):
            raise ModelError(
                f"snapshot has {len(weights)} arrays, member {index} has {len(variables)}"
            )
        if index not in self._assigners:
            self._assigners[index] = _compiled_assign(variables)
        self._assigners[index]([np.asarray(w, dtype=np.float32) for w in weights])

    def warm_up(self) -> None:
        """Trace the predict graph and every member's assign graph now, not on first use.

        Tracing costs hundreds of milliseconds; paid on the first publish, it would stall
        the coordinator exactly while members learn fastest.
        """
        for index, member in enumerate(self._members):
            self.set_member_weights(index, member.get_weights())
        self.predict(
            np.zeros((1, self.n_features), np.float32), np.zeros(self.n_members, np.float32)
        )

    def predict(self, x: np.ndarray, mixing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mixed probability (n,) and each member's probability (n, n_members)."""
        mixed, per_member = self._call(
            np.asarray(x, dtype=np.float32), np.asarray(mixing, dtype=np.float32)
        )
        return np.asarray(mixed), np.asarray(per_member)


def _compiled_assign(variables: list[Any]) -> Any:
    """One graph call that assigns `values[i]` to `variables[i]` for all i."""

    def assign(values):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)

    return tf.function(assign)
