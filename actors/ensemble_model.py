"""Every member's network in one graph: one compiled call scores all members and mixes them.

Used by Serve to answer requests and by the coordinator to score members on the shared
evaluation sample, so both compute exactly the same thing.

What the call returns depends on the task (`ModelSpec.task`), for n inputs (rows, or
windows of rows for a sequence model) and M members:

============  ==========================  ===========================================
task          mixed                       per_member
============  ==========================  ===========================================
binary        (n,) positive-class prob.   (n, M)
regression    (n,) value                  (n, M)
multiclass    (n, C) class probabilities  (n, M, C)
============  ==========================  ===========================================

The mix is the weighted mean of the members' outputs: of probabilities for
classification (so a multiclass mix still sums to 1 when the weights do), of values for
regression.

Two ways to compute it, the same figures either way: MLP members go through a NumPy
forward pass (`actors.dense_forward`; a 1-row request is then tens of microseconds, not a
millisecond of TensorFlow dispatch), every other architecture through one `tf.function`
over all members' Keras networks.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import tensorflow as tf

from actors.compiled import FixedSignatureFunction
from actors.dense_forward import DenseEnsembleForward, supports
from actors.errors import ModelError
from actors.models import build_model, compiled_assign
from actors.specs import ModelSpec
from actors.weighting import mix_outputs

__all__ = ["EnsembleModel", "Forward"]


Forward = Literal["auto", "numpy", "tensorflow"]


class EnsembleModel:
    """`n_members` copies of the member architecture behind one call.

    Args:
        spec: the members' architecture and task (all members share it).
        n_features: features per row.
        n_members: how many members the graph holds.
        forward: ``auto`` (NumPy for MLPs it supports, else TensorFlow), or force one;
            ``numpy`` raises `ModelError` for an architecture it does not support.

    Example:
        >>> ensemble = EnsembleModel(ModelSpec(hidden=(4,)), n_features=3, n_members=2)
        >>> mixed, per_member = ensemble.predict(np.zeros((5, 3), np.float32), np.array([0.5, 0.5]))
        >>> mixed.shape, per_member.shape
        ((5,), (5, 2))
    """

    def __init__(self, spec: ModelSpec, n_features: int, n_members: int, forward: Forward = "auto"):
        self.spec = spec
        self.n_features = int(n_features)
        self.n_members = int(n_members)
        self.input_shape = spec.input_shape(self.n_features)
        self._dense: DenseEnsembleForward | None = None
        if forward == "numpy" or (forward == "auto" and supports(spec)):
            self._dense = DenseEnsembleForward(spec, self.n_features, self.n_members)
            self.forward: Forward = "numpy"
            return
        if forward not in ("auto", "tensorflow"):
            raise ModelError(f"forward must be auto, numpy or tensorflow, got {forward!r}")
        self.forward = "tensorflow"
        self._members = [
            build_model(spec, self.n_features, name=f"m{i}") for i in range(self.n_members)
        ]
        self._assigners: dict[int, Any] = {}
        self._call = FixedSignatureFunction(
            self._mix,
            [
                tf.TensorSpec([None, *self.input_shape], tf.float32),
                tf.TensorSpec([self.n_members], tf.float32),
            ],
        )

    def _mix(self, x, mixing):
        outputs = [model(x, training=False) for model in self._members]  # each (n, units)
        if self.spec.task == "multiclass":
            per_member = tf.stack(outputs, axis=1)  # (n, M, C)
            mixed = tf.einsum("nmc,m->nc", per_member, mixing)
        else:
            per_member = tf.concat(outputs, axis=1)  # (n, M): one unit per member
            mixed = tf.linalg.matvec(per_member, mixing)
        return mixed, per_member

    def set_member_weights(self, index: int, weights: list[np.ndarray]) -> None:
        """Load one member's snapshot (as returned by `OnlineLearner.get_weights`).

        One compiled call assigns every variable; Keras' `set_weights` walks layers in
        Python and costs several times more, which matters at tens of publishes a second.

        Raises:
            ModelError: if the snapshot's arrays do not fit the architecture.
        """
        if self._dense is not None:
            self._dense.set_member(index, weights)
            return
        variables = self._members[index].weights
        if len(weights) != len(variables):
            raise ModelError(
                f"snapshot has {len(weights)} arrays, member {index} has {len(variables)}"
            )
        if index not in self._assigners:
            self._assigners[index] = compiled_assign(variables)
        self._assigners[index]([np.asarray(w, dtype=np.float32) for w in weights])

    def warm_up(self) -> None:
        """Trace the predict graph and every member's assign graph now, not on first use.

        Tracing costs hundreds of milliseconds; paid on the first publish, it would stall
        the coordinator exactly while members learn fastest. (The NumPy path has nothing
        to trace.)
        """
        if self._dense is not None:
            return
        for index, member in enumerate(self._members):
            self.set_member_weights(index, member.get_weights())
        self.predict(
            np.zeros((1, *self.input_shape), np.float32), np.zeros(self.n_members, np.float32)
        )

    def predict(self, x: np.ndarray, mixing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The weighted mix and every member's own output (shapes by task: module docstring).

        Args:
            x: (n, *spec.input_shape(n_features)): rows, or windows of rows for a
                sequence model.
            mixing: (n_members,) mixing weights (they should sum to 1).

        Returns:
            (mixed, per_member): (n,) and (n, M) for binary and regression; (n, C) and
            (n, M, C) for multiclass.

        Raises:
            ModelError: if `x` is not (n, *input_shape).
        """
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            what = (
                f"windows of {self.spec.window} rows of {self.n_features} features"
                if self.spec.is_sequence
                else f"rows of {self.n_features} features"
            )
            raise ModelError(
                f"the ensemble takes inputs of shape (n, {', '.join(map(str, self.input_shape))})"
                f" ({what}), got {x.shape}"
            )
        mixing = np.asarray(mixing, dtype=np.float32)
        if self._dense is not None:
            outputs = self._dense(x)  # (M, n, units)
            if self.spec.task == "multiclass":
                per_member = outputs.transpose(1, 0, 2)  # (n, M, C)
            else:
                per_member = outputs[:, :, 0].T  # (n, M)
            return mix_outputs(per_member, mixing), per_member
        mixed, per_member = self._call(x, mixing)
        return np.asarray(mixed), np.asarray(per_member)
