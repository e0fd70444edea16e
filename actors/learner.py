"""The learner core each member holds: a Keras network and one compiled test-then-train step.

Pure logic, no Ray. The verbs follow river's: `learn_many` learns from a batch (after
testing on it), `predict_proba_many` / `predict_many` predict.

Why one step does both: the prequential prediction of a batch is the model's output
*before* it learns from that batch. The forward pass that training differentiates is
computed with exactly those pre-update weights (called with ``training=False``, so a
dropout layer in a custom model is off in both), so its output *is* the honest test
prediction. One graph call per batch gives both, instead of a predict call followed by
a train call.

Update strategies (`StrategySpec.name`) change what one step trains on:

``finetune``  the new rows; the learning rate follows the schedule
``replay``    the new rows plus ``replay_ratio`` times as many old ones: by default from
              the newest ``replay_size`` rows (`RecentRows`), or from a reservoir
              sample of the whole past (`ReplayReservoir`)
``head``      the new rows, but only the last ``head_layers`` weight layers move
``distill``   the new rows, plus a penalty for moving the outputs away from an anchor
              snapshot's on the same rows (learning without forgetting, Li & Hoiem 2016)
``reset``     the new rows; when accuracy falls (`ResetMonitor`), the network is
              re-initialised and fitted on the recent rows, and the old one is discarded

Only the new rows are ever scored: the prequential figures mean the same thing under
every strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from actors.compiled import FixedSignatureFunction
from actors.errors import CheckpointError, ModelError
from actors.models import RunningStandardize, build_model, compiled_copy
from actors.specs import ModelSpec, StrategySpec
from actors.strategies import ReplayMemory, ResetMonitor, learning_rate_schedule, replay_memory

__all__ = ["BatchOutcome", "OnlineLearner"]


@dataclass(frozen=True)
class BatchOutcome:
    """What one test-then-train step measured, before the model learned the batch.

    Attributes:
        rows: rows scored and learned.
        correct: rows predicted right (classification; 0 for regression).
        loss: the task loss on the new rows.
        squared_error: sum of squared errors (regression; 0 for classification).
        scores: per row, 1.0/0.0 for right/wrong (classification) or the squared error.
    """

    rows: int
    correct: int
    loss: float
    squared_error: float = 0.0
    scores: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32), compare=False)


class OnlineLearner:
    """A network trained online with a compiled, fixed-signature test-then-train step.

    Args:
        n_features: features per row.
        spec: architecture, task and optimiser settings.
        seed: seeds weight initialisation (and the replay memory's sampling).
        strategy: how the network is updated (default: ``finetune``, constant rate).

    Example:
        >>> learner = OnlineLearner(n_features=3, seed=0)
        >>> x = np.random.default_rng(0).random((64, 3), dtype=np.float32)
        >>> outcome = learner.learn_many(x, (x.sum(axis=1) > 1.5).astype(np.float32))
        >>> outcome.rows
        64
    """

    def __init__(
        self,
        n_features: int,
        spec: ModelSpec | None = None,
        seed: int = 0,
        *,
        strategy: StrategySpec | None = None,
    ):
        self.n_features = int(n_features)
        self.spec = spec if spec is not None else ModelSpec()
        self.strategy = strategy if strategy is not None else StrategySpec()
        self.seed = int(seed)
        self.input_shape = self.spec.input_shape(self.n_features)
        self.regression = self.spec.task == "regression"
        keras.utils.set_random_seed(self.seed)
        self.model = build_model(self.spec, self.n_features)
        self._standardize = next(
            layer for layer in self.model.layers if isinstance(layer, RunningStandardize)
        )
        self._train_variables = self._trainable(self.model)
        # A multiplier on the schedule, read inside the compiled step: a drift response
        # raises the rate for a while without retracing (see `set_rate_multiplier`).
        self._rate_multiplier = tf.Variable(1.0, trainable=False, name="rate_multiplier")
        self._optimizer = keras.optimizers.Adam(
            learning_rate=_Multiplied(
                learning_rate_schedule(self.spec.learning_rate, self.strategy),
                self._rate_multiplier,
            )
        )
        self._optimizer.build(self._train_variables)
        self._loss = _task_loss(self.spec)
        self._resets = 0
        self._rows = 0
        self._replay: ReplayMemory | None = None
        self._monitor: ResetMonitor | None = None
        self._anchor: keras.Model | None = None
        self._anchor_rows = 0
        # Fixed signatures: the batch dimension is None, so no batch size retraces.
        x_spec = tf.TensorSpec([None, *self.input_shape], tf.float32)
        y_spec = tf.TensorSpec([None], tf.float32)
        name = self.strategy.name
        step: Callable[..., Any]
        if name == "replay":
            self._replay = replay_memory(self.strategy, self.input_shape, seed)
            step, signature = self._replay_step, [x_spec, y_spec] * 2
        elif name == "distill":
            self._anchor = build_model(self.spec, self.n_features, name="anchor")
            self._copy_to_anchor = compiled_copy(self.model.weights, self._anchor.weights)
            # No penalty until the first anchor is taken: pulling a young network toward
            # its random initial outputs would only slow it down.
            self._anchor_on = tf.Variable(0.0, trainable=False, name="anchor_on")
            step, signature = self._distill_step, [x_spec, y_spec]
        else:
            step, signature = self._plain_step, [x_spec, y_spec]
        self._step = FixedSignatureFunction(self._in_steps(step), signature)
        if name == "reset":
            self._monitor = ResetMonitor(
                self.strategy.reset_window,
                self.strategy.reset_drop,
                self.regression,
                self.input_shape,
            )
        self._predict = FixedSignatureFunction(self._forward, [x_spec])
        # Every weight read in one graph call: Keras' get_weights reads variable by
        # variable, one eager op each (~0.8 ms for the default MLP against ~0.15 ms), and
        # a member snapshots its weights several times a second.
        self._read_weights = FixedSignatureFunction(
            lambda: [tf.identity(v) for v in self.model.weights], []
        )

    def _trainable(self, model: keras.Model) -> list:
        if self.strategy.name != "head":
            return list(model.trainable_variables)
        layers = [layer for layer in _leaf_layers(model) if layer.trainable_weights]
        head = layers[-self.strategy.head_layers :]
        return [v for layer in head for v in layer.trainable_weights]

    # --- compiled steps -------------------------------------------------------------

    def _in_steps(self, step):
        """`step` applied to consecutive slices of `step_rows` rows of a batch, in order,
        inside one graph call: ``ceil(n / step_rows)`` optimizer steps per batch.

        Why: on a stream the number of optimizer steps per row, not the batch a member
        reads, is what limits how fast a network learns (`docs/benchmarks.md`, bench
        accuracy). Slicing in the graph keeps the member's read, Arrow and bookkeeping
        cost per batch while learning like a `step_rows`-row loop: 4 slices measured about
        2x one step's cost, against 4x for 4 Python calls. Each slice is scored before it is
        learned, by the network that learned the slices before it: test-then-train at
        slice granularity. Extra inputs (a replay step's old rows) are sliced in as many
        parts as the batch.
        """
        rows = self.strategy.step_rows

        def stepped(x, y, *extra):
            n = tf.shape(x)[0]
            slices = tf.maximum((n + rows - 1) // rows, 1)
            extra_rows = [(tf.shape(e)[0] + slices - 1) // slices for e in extra]
            scores = tf.TensorArray(tf.float32, size=slices, infer_shape=False)
            loss_sum = tf.constant(0.0)
            for i in tf.range(slices):
                part = [x[i * rows : (i + 1) * rows], y[i * rows : (i + 1) * rows]]
                for e, e_rows in zip(extra, extra_rows, strict=True):
                    part.append(e[i * e_rows : (i + 1) * e_rows])
                part_scores, part_loss = step(*part)
                scores = scores.write(i, part_scores)
                loss_sum += tf.cast(part_loss, tf.float32) * tf.cast(
                    tf.shape(part[1])[0], tf.float32
                )
            return scores.concat(), loss_sum / tf.cast(n, tf.float32)

        return stepped

    def _forward(self, x):
        return self.model(x, training=False)

    def _score(self, outputs, y):
        """Per-row scores: 1/0 hits for classification, squared error for regression."""
        if self.regression:
            return tf.square(outputs[:, 0] - y)
        if self.spec.task == "multiclass":
            predicted = tf.cast(tf.argmax(outputs, axis=1), tf.float32)
        else:
            predicted = tf.cast(outputs[:, 0] > 0.5, tf.float32)
        return tf.cast(tf.equal(predicted, y), tf.float32)

    def _apply(self, tape, loss, x):
        gradients = tape.gradient(loss, self._train_variables)
        self._optimizer.apply_gradients(zip(gradients, self._train_variables, strict=True))
        # Statistics take in the batch only after it was predicted and learned from.
        self._standardize.update_statistics(x)

    def _plain_step(self, x, y):
        with tf.GradientTape() as tape:
            outputs = self._forward(x)
            loss = self._loss(y, outputs)
        self._apply(tape, loss, x)
        return self._score(outputs, y), loss

    def _replay_step(self, x, y, x_old, y_old):
        n = tf.shape(x)[0]
        with tf.GradientTape() as tape:
            outputs_all = self._forward(tf.concat([x, x_old], axis=0))
            loss = self._loss(tf.concat([y, y_old], axis=0), outputs_all)
        self._apply(tape, loss, x)
        outputs = outputs_all[:n]
        return self._score(outputs, y), self._loss(y, outputs)

    def _distill_step(self, x, y):
        assert self._anchor is not None
        anchored = self._anchor(x, training=False)
        with tf.GradientTape() as tape:
            outputs = self._forward(x)
            task_loss = self._loss(y, outputs)
            penalty = self.strategy.distill_weight * self._anchor_on
            loss = task_loss + penalty * _distance(self.spec, anchored, outputs)
        self._apply(tape, loss, x)
        return self._score(outputs, y), task_loss

    # --- public API -----------------------------------------------------------------

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            expected = ", ".join(str(d) for d in ("n", *self.input_shape))
            raise ModelError(f"expected input of shape ({expected}), got {x.shape}")
        return x

    def learn_many(self, x: np.ndarray, y: np.ndarray) -> BatchOutcome:
        """Predict the batch, score it, then learn from it; returns the pre-update score."""
        x = self._check(x)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ModelError(f"got {x.shape[0]} rows but {y.shape[0]} labels")
        if x.shape[0] == 0:
            return BatchOutcome(rows=0, correct=0, loss=float("nan"))
        if self._replay is not None:
            old_x, old_y = self._replay.sample(round(self.strategy.replay_ratio * x.shape[0]))
            scores_t, loss = self._step(x, y, old_x, old_y)
            self._replay.add(x, y)
        else:
            scores_t, loss = self._step(x, y)
        scores = np.asarray(scores_t)
        self._rows += x.shape[0]
        if self._anchor is not None and self._rows - self._anchor_rows >= self.strategy.anchor_rows:
            self._copy_to_anchor()
            self._anchor_on.assign(1.0)
            self._anchor_rows = self._rows
        if self._monitor is not None:
            refit = self._monitor.observe(x, y, scores)
            if refit is not None:
                self._reset(*refit)
        if self.regression:
            return BatchOutcome(
                rows=int(x.shape[0]),
                correct=0,
                loss=float(loss),
                squared_error=float(scores.sum()),
                scores=scores,
            )
        return BatchOutcome(
            rows=int(x.shape[0]), correct=int(scores.sum()), loss=float(loss), scores=scores
        )

    def _reset(self, x: np.ndarray, y: np.ndarray) -> None:
        """Discard the network: fresh initial weights and optimizer state, fitted on (x, y).

        Variables are assigned in place, never replaced, so the compiled steps stay valid.
        The running input statistics are kept: they describe the inputs, not the concept.
        """
        self._resets += 1
        keras.utils.set_random_seed(self.seed + 7919 * self._resets)
        fresh = build_model(self.spec, self.n_features, name="fresh")
        for variable, value in zip(
            self.model.trainable_variables, fresh.trainable_variables, strict=True
        ):
            variable.assign(value)
        for variable in self._optimizer.variables:
            # Moments and the step counter restart (so does the schedule); a constant
            # learning rate is also held as an optimizer variable and must stay.
            if not variable.path.endswith("learning_rate"):
                variable.assign(tf.zeros_like(variable))
        self._fit_on(x, y, seed=self.seed + self._resets)

    def _fit_on(self, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        """`reset_epochs` shuffled passes of 32-row steps over (x, y)."""
        batch = 32
        order = np.random.default_rng(seed)
        # A replay step also takes old rows; a fit on one window has none to mix in.
        none_old = (
            (np.empty((0, *self.input_shape), np.float32), np.empty((0,), np.float32))
            if self._replay is not None
            else ()
        )
        for _ in range(self.strategy.reset_epochs):
            shuffled = order.permutation(len(y))
            for start in range(0, len(y), batch):
                pick = shuffled[start : start + batch]
                self._step(x[pick], y[pick], *none_old)

    def pretrain(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit the current network on (x, y) before the stream (a new member's `distill`
        start: the ensemble's answers on recent rows). Counts as no stream row."""
        self._fit_on(self._check(x), np.asarray(y, dtype=np.float32).reshape(-1), seed=self.seed)

    @property
    def resets(self) -> int:
        """How many times the network was discarded (``reset`` strategy or drift response)."""
        return self._resets

    def reset_network(self, x: np.ndarray, y: np.ndarray) -> None:
        """Discard the network now and fit a fresh one on (x, y) (a drift response)."""
        self._reset(self._check(x), np.asarray(y, dtype=np.float32).reshape(-1))

    def forget_replay(self, keep_newest: int) -> int:
        """Drop the replay memory's rows from before a concept change, keeping the newest
        `keep_newest` (a drift response); returns the rows dropped (0 with no memory)."""
        return 0 if self._replay is None else self._replay.forget(keep_newest)

    def set_rate_multiplier(self, multiplier: float) -> None:
        """Scale the learning rate (its schedule) by `multiplier` from the next step on."""
        if not multiplier > 0:
            raise ModelError(f"the learning-rate multiplier must be > 0, got {multiplier}")
        self._rate_multiplier.assign(float(multiplier))

    @property
    def rate_multiplier(self) -> float:
        return float(self._rate_multiplier.numpy())

    def predict_proba_many(self, x: np.ndarray) -> np.ndarray:
        """Classification: the positive-class probability (binary, shape (n,)) or every
        class's (multiclass, (n, n_classes)). Regression: the predicted value (n,)."""
        outputs = np.asarray(self._predict(self._check(x)))
        return outputs if self.spec.task == "multiclass" else outputs[:, 0]

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        """Predicted class for each row (classification) or predicted value (regression)."""
        outputs = self.predict_proba_many(x)
        if self.regression:
            return outputs
        if self.spec.task == "multiclass":
            return outputs.argmax(axis=1).astype(np.int64)
        return (outputs > 0.5).astype(np.int64)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything a restart needs as plain arrays: weights, optimizer, replay memory.

        Keys: ``weight/I`` (network, normaliser included), ``optimizer/I`` (Adam's step
        count, moments and rate), ``reservoir/x|y|seen`` for ``replay``, and the counters.
        The distill anchor and the reset monitor's block restart empty after a restore,
        and the replay memory's sampling generator is reseeded (its held rows are kept).
        """
        arrays = {f"weight/{i}": w for i, w in enumerate(self.get_weights())}
        for i, variable in enumerate(self._optimizer.variables):
            arrays[f"optimizer/{i}"] = np.asarray(variable.numpy())
        if self._replay is not None:
            arrays.update(self._replay.state())
        arrays["learner/counters"] = np.array([self._resets, self._rows], np.int64)
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore `state_arrays` output into this learner (same spec and strategy).

        Raises:
            CheckpointError: if the arrays do not fit this network or optimizer.
        """
        weights = [arrays[f"weight/{i}"] for i in range(len(self.model.weights))]
        optimizer = [arrays[f"optimizer/{i}"] for i in range(len(self._optimizer.variables))]
        try:
            self.model.set_weights(weights)
            for variable, value in zip(self._optimizer.variables, optimizer, strict=True):
                variable.assign(value)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint does not fit this member's network ({exc}); was it written "
                "by a job with another model, task or strategy?"
            ) from exc
        if self._replay is not None and "reservoir/seen" in arrays:
            self._replay.load_state(arrays)
        resets, rows = (int(v) for v in arrays["learner/counters"])
        self._resets, self._rows = resets, rows
        self._anchor_rows = rows  # the anchor restarts: its first refresh is anchor_rows away

    def get_weights(self) -> list[np.ndarray]:
        """Every weight of the network, normaliser statistics included (a snapshot)."""
        return [np.array(w) for w in self._read_weights()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        self.model.set_weights(weights)


class _Multiplied(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate (constant or schedule) times a variable multiplier."""

    def __init__(self, base: float | keras.optimizers.schedules.LearningRateSchedule, multiplier):
        self.base = base
        self.multiplier = multiplier

    def __call__(self, step):
        rate = self.base(step) if callable(self.base) else self.base
        return tf.cast(rate, tf.float32) * self.multiplier

    def get_config(self) -> dict:
        return {"multiplier": float(self.multiplier.numpy())}


def _task_loss(spec: ModelSpec) -> keras.losses.Loss:
    if spec.task == "regression":
        return _SqueezedMSE()
    if spec.task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy()
    return _SqueezedBCE()


class _SqueezedBCE(keras.losses.BinaryCrossentropy):
    """Binary cross-entropy of (n,) labels against (n, 1) outputs, without broadcasting."""

    def call(self, y_true, y_pred):
        return super().call(y_true, y_pred[:, 0])


class _SqueezedMSE(keras.losses.MeanSquaredError):
    """Mean squared error of (n,) targets against (n, 1) outputs, without broadcasting."""

    def call(self, y_true, y_pred):
        return super().call(y_true, y_pred[:, 0])


def _distance(spec: ModelSpec, anchored, outputs):
    """How far the outputs moved from the anchor's: cross-entropy to its soft targets
    for classification, mean squared difference for regression."""
    if spec.task == "regression":
        return tf.reduce_mean(tf.square(outputs - anchored))
    if spec.task == "multiclass":
        return tf.reduce_mean(keras.losses.categorical_crossentropy(anchored, outputs))
    return tf.reduce_mean(keras.losses.binary_crossentropy(anchored, outputs))


def _leaf_layers(model: keras.Model) -> list:
    """Every non-container layer in order, descending into nested models (custom bodies)."""
    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(_leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves
