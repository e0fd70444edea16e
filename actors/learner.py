"""The learner core each member holds: a Keras network and one compiled test-then-train step.

Pure logic, no Ray. The verbs follow river's: `learn_many` learns from a batch (after
testing on it), `predict_proba_many` predicts.

Why one step does both: the prequential prediction of a batch is the model's output
*before* it learns from that batch. The forward pass that training differentiates is
computed with exactly those pre-update weights (the network has no dropout or batch
norm), so its output *is* the honest test prediction. One graph call per batch gives
both, instead of a predict call followed by a train call.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from actors.errors import ModelError
from actors.models import RunningStandardize, build_model
from actors.specs import ModelSpec

__all__ = ["BatchOutcome", "OnlineLearner"]


@dataclass(frozen=True)
class BatchOutcome:
    """What one test-then-train step measured, before the model learned the batch."""

    rows: int
    correct: int
    loss: float


class OnlineLearner:
    """A binary classifier trained online with a compiled, fixed-signature step.

    Args:
        n_features: input width.
        spec: architecture and optimiser settings.
        seed: seeds weight initialisation.

    Example:
        >>> learner = OnlineLearner(n_features=3, seed=0)
        >>> x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
        >>> outcome = learner.learn_many(x, (x.sum(axis=1) > 1.5).astype(np.float32))
        >>> outcome.rows
        64
    """

    def __init__(self, n_features: int, spec: ModelSpec | None = None, seed: int = 0):
        self.n_features = int(n_features)
        self.spec = spec if spec is not None else ModelSpec()
        self.seed = int(seed)
        keras.utils.set_random_seed(self.seed)
        self.model = build_model(self.spec, self.n_features)
        self._standardize = next(
            layer for layer in self.model.layers if isinstance(layer, RunningStandardize)
        )
        self._optimizer = keras.optimizers.Adam(learning_rate=self.spec.learning_rate)
        self._optimizer.build(self.model.trainable_variables)
        self._loss = keras.losses.BinaryCrossentropy()
        # Fixed signatures: the batch dimension is None, so no batch size retraces.
        x_spec = tf.TensorSpec([None, self.n_features], tf.float32)
        y_spec = tf.TensorSpec([None], tf.float32)
        self._step = tf.function(self._test_then_train, input_signature=[x_spec, y_spec])
        self._predict = tf.function(self._forward, input_signature=[x_spec])

    def _forward(self, x):
        return self.model(x, training=False)[:, 0]

    def _test_then_train(self, x, y):
        with tf.GradientTape() as tape:
            probability = self._forward(x)
            loss = self._loss(y, probability)
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        self._optimizer.apply_gradients(zip(gradients, variables, strict=True))
        # Statistics take in the batch only after it was predicted and learned from.
        self._standardize.update_statistics(x)
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.cast(probability > 0.5, tf.float32), y), tf.int32)
        )
        return correct, loss

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ModelError(f"expected input of shape (n, {self.n_features}), got {x.shape}")
        return x

    def learn_many(self, x: np.ndarray, y: np.ndarray) -> BatchOutcome:
        """Predict the batch, score it, then learn from it; returns the pre-update score."""
        x = self._check(x)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ModelError(f"got {x.shape[0]} rows but {y.shape[0]} labels")
        if x.shape[0] == 0:
            return BatchOutcome(rows=0, correct=0, loss=float("nan"))
        correct, loss = self._step(x, y)
        return BatchOutcome(rows=int(x.shape[0]), correct=int(correct), loss=float(loss))

    def predict_proba_many(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row."""
        return np.asarray(self._predict(self._check(x)))

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        """Predicted class (0 or 1) for each row."""
        return (self.predict_proba_many(x) > 0.5).astype(np.int64)

    def get_weights(self) -> list[np.ndarray]:
        """Every weight of the network, normaliser statistics included (a snapshot)."""
        return [np.array(w, copy=True) for w in self.model.get_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.model.set_weights(weights)
