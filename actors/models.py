"""Model factory: the Keras network each member trains, built from plain configuration.

Architecture comes from configuration (or a user's `.keras` archive, JSON plus weights,
loaded in Keras safe mode), never from pickled code, so a snapshot only carries arrays
(`model.get_weights()`), and Serve rebuilds the same network to load it. The first layer
standardises inputs with running statistics that are part of the model's weights, so
training and serving preprocess identically by construction.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from actors.compiled import FixedSignatureFunction
from actors.errors import ModelError
from actors.specs import ModelSpec

__all__ = [
    "STANDARDIZE_EPSILON",
    "RunningStandardize",
    "build_model",
    "compiled_assign",
    "compiled_copy",
]


# The standardisation's variance floor; `actors.dense_forward` computes the same layer.
STANDARDIZE_EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="online_ensemble")
class RunningStandardize(keras.layers.Layer):
    """Standardises inputs with a running mean and variance held as non-trainable weights.

    Statistics are merged batch by batch (Chan et al.'s parallel update). The row count
    is capped at `horizon` before each merge, so once the cap is reached every new batch
    carries a fixed share of the statistics: an exponential forgetting that follows a
    drifting input distribution instead of freezing on the first million rows.
    """

    def __init__(self, horizon: int = 50_000, epsilon: float = STANDARDIZE_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.horizon = int(horizon)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")
        self.mean = self.add_weight(
            shape=(width,), initializer="zeros", trainable=False, name="mean"
        )
        self.m2 = self.add_weight(shape=(width,), initializer="zeros", trainable=False, name="m2")

    def call(self, inputs):
        variance = tf.where(self.count > 1.0, self.m2 / tf.maximum(self.count - 1.0, 1.0), 1.0)
        standardised = (inputs - self.mean) / tf.sqrt(variance + self.epsilon)
        # A NaN input is a feature a prediction request left out (training data never
        # holds NaN: validation dead-letters it). Imputing the running mean is 0 here.
        return tf.where(tf.math.is_nan(inputs), tf.zeros_like(standardised), standardised)

    def update_statistics(self, batch):
        """Merge one batch into the running statistics (call after predicting on it).

        For windows of a sequence model, (n, window, width), only the newest row of each
        window is merged: consecutive windows share all other rows, so every row of the
        stream counts once, exactly as in a row-wise model.
        """
        if batch.shape.rank == 3:
            batch = batch[:, -1, :]
        n_batch = tf.cast(tf.shape(batch)[0], tf.float32)
        mean_batch = tf.reduce_mean(batch, axis=0)
        m2_batch = tf.reduce_sum(tf.square(batch - mean_batch), axis=0)
        n_old = tf.minimum(self.count, float(self.horizon))
        m2_old = self.m2 * tf.math.divide_no_nan(n_old, self.count)
        n_new = n_old + n_batch
        delta = mean_batch - self.mean
        self.mean.assign(self.mean + delta * n_batch / n_new)
        self.m2.assign(m2_old + m2_batch + tf.square(delta) * n_old * n_batch / n_new)
        self.count.assign(n_new)

    def get_config(self):
        return {**super().get_config(), "horizon": self.horizon, "epsilon": self.epsilon}


_OUTPUT_ACTIVATION = {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}


def build_model(spec: ModelSpec, n_features: int, *, name: str = "member") -> keras.Model:
    """Build a member's network: standardise -> body -> the task's output layer.

    Bodies: ``mlp`` (dense layers on one row), ``lstm`` (an LSTM over the window, then
    dense layers), ``conv1d`` (up to two convolutions over the window, flattened, then
    dense layers), ``custom`` (the user's model from `module:function`) or ``file`` (the
    user's model from a ``.keras`` file), both checked against the task.

    Args:
        spec: architecture, task and optimiser settings.
        n_features: input width (features per row).
        name: Keras model name (unique names keep an ensemble graph readable).

    Returns:
        An uncompiled `keras.Model` mapping ``(n, *spec.input_shape(n_features))`` to
        ``(n, spec.output_units)``: probabilities for classification, values for regression.

    Raises:
        ModelError: if `n_features` < 1, or a user's model cannot be loaded (a file
            that is not a Keras archive, a Lambda layer) or does not fit the task.
    """
    if n_features < 1:
        raise ModelError(f"a model needs at least one input feature, got {n_features}")
    inputs = keras.Input(shape=spec.input_shape(n_features), name=f"{name}_x")
    hidden = RunningStandardize(spec.normaliser_horizon, name=f"{name}_standardize")(inputs)
    if spec.kind in ("custom", "file"):
        return keras.Model(inputs, _user_body(spec, n_features)(hidden), name=name)
    if spec.kind == "lstm":
        hidden = keras.layers.LSTM(spec.units, name=f"{name}_lstm")(hidden)
    elif spec.kind == "conv1d":
        # Two convolutions when the window leaves room for the second ("valid" padding
        # shortens the sequence by kernel_size - 1 each time), then every position flat:
        # a forecaster needs to know *where* in the window a pattern sits.
        for i in range(2):
            if i and hidden.shape[1] < spec.kernel_size:
                break
            conv = keras.layers.Conv1D(
                spec.filters, spec.kernel_size, activation=spec.activation, name=f"{name}_conv{i}"
            )
            hidden = conv(hidden)
        hidden = keras.layers.Flatten(name=f"{name}_flatten")(hidden)
    for i, units in enumerate(spec.hidden):
        hidden = keras.layers.Dense(
            int(units), activation=spec.activation, name=f"{name}_dense{i}"
        )(hidden)
    outputs = keras.layers.Dense(
        spec.output_units, activation=_OUTPUT_ACTIVATION[spec.task], name=f"{name}_out"
    )(hidden)
    return keras.Model(inputs, outputs, name=name)


def _user_body(spec: ModelSpec, n_features: int) -> keras.Model:
    """The user's model (from a factory or a file), checked against the task."""
    if spec.kind == "file":
        assert spec.path is not None  # ModelSpec guarantees it for kind="file"
        return _checked(load_model_file(spec.path), spec.path, spec, n_features)
    assert spec.factory is not None  # ModelSpec guarantees it for kind="custom"
    module_name, function_name = spec.factory.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ModelError(f"cannot load model factory {spec.factory!r}: {error}") from None
    model = factory()
    if not isinstance(model, keras.Model):
        raise ModelError(
            f"model factory {spec.factory!r} returned {type(model).__name__}, "
            "expected a keras.Model"
        )
    return _checked(model, spec.factory, spec, n_features)


def load_model_file(path: str) -> keras.Model:
    """Load a user's ``.keras`` archive in Keras safe mode; nothing in it runs as code.

    Safe mode refuses Lambda layers holding Python bytecode and any other object it
    would have to unpickle. A file that is not a zip archive (a pickle, an HDF5 file
    renamed ``.keras``) is refused before Keras opens it: Keras' HDF5 loader is the legacy
    path where unsafe deserialisation lived.

    Raises:
        ModelError: for a missing file, one that is not a Keras v3 archive, or one that
            safe mode refuses; the message names the file and the reason.
    """
    if not os.path.isfile(path):
        raise ModelError(f"model file {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"model file {path!r} is not a Keras v3 archive (.keras, a zip); pickles and "
            "HDF5 files are refused, loading them can run code"
        )
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, KeyError, ... here
        reason = " ".join(str(error).split())
        raise ModelError(f"model file {path!r} refused in Keras safe mode: {reason}") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"model file {path!r} holds a {type(model).__name__}, not a model")
    return model


def _checked(model: keras.Model, origin: str, spec: ModelSpec, n_features: int) -> keras.Model:
    """`model` if its input and output shapes and output activation fit the task."""
    expected_in = (None, *spec.input_shape(n_features))
    got_in = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else None
    if got_in != expected_in:
        raise ModelError(
            f"model from {origin!r} takes input shape {got_in}, the stream needs "
            f"{expected_in} ({n_features} features"
            + (f", window {spec.window})" if spec.is_sequence else ")")
        )
    got_out = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else None
    if got_out != (None, spec.output_units):
        raise ModelError(
            f"model from {origin!r} has output shape {got_out}, a {spec.task} task "
            f"needs {(None, spec.output_units)}"
        )
    sample = np.random.default_rng(0).normal(size=(8, *spec.input_shape(n_features)))
    probe = np.asarray(model(sample.astype("float32")))
    if spec.task == "binary" and not ((probe >= 0) & (probe <= 1)).all():
        raise ModelError(
            f"model from {origin!r} must end in a sigmoid for a binary task "
            "(its outputs are not probabilities)"
        )
    if spec.task == "multiclass" and not np.allclose(probe.sum(axis=1), 1.0, atol=1e-4):
        raise ModelError(
            f"model from {origin!r} must end in a softmax for a multiclass task "
            "(its outputs do not sum to 1)"
        )
    return model


def compiled_assign(variables: list[Any]) -> Any:
    """One graph call that assigns ``values[i]`` to ``variables[i]`` for all i.

    Keras' ``set_weights`` walks layers in Python and costs several times more; this
    matters where snapshots are loaded many times a second.
    """

    def assign(values):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)

    return tf.function(assign)


def compiled_copy(sources: list[Any], targets: list[Any]) -> Any:
    """One graph call that copies ``sources[i]``'s value into ``targets[i]`` for all i.

    Why: copying one network's weights into another of the same architecture through
    NumPy (``get_weights`` then an assign) reads every variable with its own eager op and
    converts every array back: ~1.9 ms for the default MLP, against ~0.2 ms in one graph.

    Raises:
        ValueError: if the two lists differ in length or in a variable's shape.
    """
    if len(sources) != len(targets):
        raise ValueError(f"copying {len(sources)} variables into {len(targets)}")
    for source, target in zip(sources, targets, strict=True):
        if tuple(source.shape) != tuple(target.shape):
            raise ValueError(
                f"variable {source.path} has shape {tuple(source.shape)}, "
                f"its target {target.path} {tuple(target.shape)}"
            )

    def copy() -> None:
        for source, target in zip(sources, targets, strict=True):
            target.assign(source)

    return FixedSignatureFunction(copy, [])
