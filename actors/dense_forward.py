"""The MLP ensemble's forward pass in NumPy: every member at once, no TensorFlow call.

Why hand-written: a Serve replica answers mostly 1-row requests, and for those a
TensorFlow call is almost all dispatch overhead (about 1.3 ms for four 32x32 members in
an idle process, 3 ms inside a busy replica) against tens of microseconds of arithmetic.
The members of an MLP ensemble share one architecture, so their weights stack into
(members, in, out) arrays and one batched matmul per layer scores them all.

It computes exactly what `actors.models.build_model` builds for ``kind="mlp"``: the
running standardisation (NaN, a feature the request left out, becomes the running
mean), the dense layers, then the task's output activation; `EnsembleModel` checks the
two agree (`tests/unit/test_ensemble_model.py`). Other kinds (LSTM, Conv1D, users'
models) and activations outside `ACTIVATIONS` stay on TensorFlow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from actors.errors import ModelError
from actors.models import STANDARDIZE_EPSILON
from actors.specs import ModelSpec

__all__ = ["ACTIVATIONS", "DenseEnsembleForward", "supports"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(-log(1 + e^-z)) never overflows, where 1 / (1 + e^-z) does for very negative z.
    return np.exp(-np.logaddexp(np.float32(0), -z))


def _softmax(z: np.ndarray) -> np.ndarray:
    shifted = np.exp(z - z.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _elu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


# Keras' definitions of the hidden activations this path reproduces (default arguments).
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "linear": lambda z: z,
    "elu": _elu,
    "softplus": lambda z: np.logaddexp(np.float32(0), z),
    "silu": lambda z: z * _sigmoid(z),
    "swish": lambda z: z * _sigmoid(z),
}

_OUTPUT = {"binary": _sigmoid, "multiclass": _softmax, "regression": lambda z: z}

# RunningStandardize's epsilon (its default; build_model does not change it).
_EPSILON = np.float32(STANDARDIZE_EPSILON)


def supports(spec: ModelSpec) -> bool:
    """Whether `spec` builds a network this path computes exactly."""
    return spec.kind == "mlp" and spec.activation in ACTIVATIONS


class DenseEnsembleForward:
    """Stacked weights of `n_members` MLPs and the vectorised forward pass over them.

    Args:
        spec: the members' architecture (`supports(spec)` must hold).
        n_features: features per row.
        n_members: how many members it holds.

    Raises:
        ModelError: if `spec` is not an MLP with a supported activation.
    """

    def __init__(self, spec: ModelSpec, n_features: int, n_members: int):
        if not supports(spec):
            raise ModelError(
                f"the NumPy forward pass takes mlp models with one of the activations "
                f"{', '.join(ACTIVATIONS)}; got kind {spec.kind!r}, activation {spec.activation!r}"
            )
        self.spec = spec
        widths = [int(n_features), *map(int, spec.hidden), spec.output_units]
        self._layer_shapes = list(itertools.pairwise(widths))
        m = int(n_members)
        self._mean = np.zeros((m, 1, n_features), np.float32)
        self._scale = np.ones((m, 1, n_features), np.float32)
        self._kernels = [np.zeros((m, a, b), np.float32) for a, b in self._layer_shapes]
        self._biases = [np.zeros((m, 1, b), np.float32) for _, b in self._layer_shapes]
        self._hidden = ACTIVATIONS[spec.activation]
        self._output = _OUTPUT[spec.task]

    def snapshot_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of one member's snapshot arrays: count, mean, m2, then kernel and bias
        per layer (the order of `model.get_weights()`)."""
        n_features = self._layer_shapes[0][0]
        shapes: list[tuple[int, ...]] = [(), (n_features,), (n_features,)]
        for a, b in self._layer_shapes:
            shapes += [(a, b), (b,)]
        return shapes

    def set_member(self, index: int, weights: Sequence[np.ndarray]) -> None:
        """Load member `index` from its snapshot (the arrays of `model.get_weights()`).

        Raises:
            ModelError: if the arrays' count or shapes do not fit the architecture (checked
                exactly: NumPy would broadcast a (1, k) kernel into (n, k) silently).
        """
        arrays = [np.asarray(w, np.float32) for w in weights]
        got = [a.shape for a in arrays]
        if got != self.snapshot_shapes():
            raise ModelError(
                f"snapshot arrays have shapes {got}, member {index} needs {self.snapshot_shapes()}"
            )
        count, mean, m2, *layers = arrays
        # RunningStandardize.call: unit variance until two rows have been seen.
        variance = m2 / max(float(count) - 1.0, 1.0) if count > 1 else np.ones_like(m2)
        self._mean[index, 0] = mean
        self._scale[index, 0] = 1.0 / np.sqrt(variance + _EPSILON)
        for layer, (kernel, bias) in enumerate(zip(layers[::2], layers[1::2], strict=True)):
            self._kernels[layer][index] = kernel
            self._biases[layer][index, 0] = bias

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Every member's output on rows `x` (n, features): (members, n, units)."""
        missing = np.isnan(x)
        hidden = (x[None] - self._mean) * self._scale  # (M, n, F)
        if missing.any():
            hidden = np.where(missing[None], np.float32(0), hidden)
        last = len(self._kernels) - 1
        for layer, (kernel, bias) in enumerate(zip(self._kernels, self._biases, strict=True)):
            z = np.matmul(hidden, kernel) + bias
            hidden = self._output(z) if layer == last else self._hidden(z)
        return hidden
