"""Model factory: the Keras network each member trains, built from plain configuration.

Architecture comes from configuration, never from pickled code, so a snapshot only
carries arrays (`model.get_weights()`), and Serve rebuilds the same network to load it.
The first layer standardises inputs with running statistics that are part of the
model's weights, so training and serving preprocess identically by construction.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from actors.errors import ModelError
from actors.specs import ModelSpec

__all__ = ["RunningStandardize", "build_model"]


@keras.saving.register_keras_serializable(package="online_ensemble")
class RunningStandardize(keras.layers.Layer):
    """Standardises inputs with a running mean and variance held as non-trainable weights.

    Statistics are merged batch by batch (Chan et al.'s parallel update). The row count
    is capped at `horizon` before each merge, so once the cap is reached every new batch
    carries a fixed share of the statistics: an exponential forgetting that follows a
    drifting input distribution instead of freezing on the first million rows.
    """

    def __init__(self, horizon: int = 50_000, epsilon: float = 1e-6, **kwargs):
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
        """Merge one batch into the running statistics (call after predicting on it)."""
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


def build_model(spec: ModelSpec, n_features: int, *, name: str = "member") -> keras.Model:
    """Build the network for binary classification: standardise -> MLP -> sigmoid.

    Args:
        spec: architecture and optimiser settings.
        n_features: input width.
        name: Keras model name (unique names keep an ensemble graph readable).

    Returns:
        An uncompiled `keras.Model` mapping (n, n_features) to (n, 1) probabilities.

    Raises:
        ModelError: if `n_features` < 1.
    """
    if n_features < 1:
        raise ModelError(f"a model needs at least one input feature, got {n_features}")
    inputs = keras.Input(shape=(n_features,), name=f"{name}_x")
    hidden = RunningStandardize(spec.normaliser_horizon, name=f"{name}_standardize")(inputs)
    for i, units in enumerate(spec.hidden):
        hidden = keras.layers.Dense(
            int(units), activation=spec.activation, name=f"{name}_dense{i}"
        )(hidden)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=f"{name}_out")(hidden)
    return keras.Model(inputs, outputs, name=name)
