"""Small trained members for tests of the ensemble graph and the Serve deployment.

Each member is an `OnlineLearner` (as in a member actor) that learned a few batches, so
normaliser statistics and weights differ from member to member.
"""

from __future__ import annotations

import numpy as np

from actors.learner import OnlineLearner
from actors.specs import ModelSpec
from actors.windows import windows_of


def random_rows(n: int, n_features: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(np.float32)


def model_inputs(spec: ModelSpec, rows: np.ndarray) -> np.ndarray:
    """What the network reads: the rows, or every window of them for a sequence model."""
    return windows_of(rows, spec.window) if spec.is_sequence else rows


def labels_for(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
    """A learnable label of the task: from the sum of every input value."""
    score = x.reshape(len(x), -1).sum(axis=1)
    if spec.task == "regression":
        return score.astype(np.float32)
    if spec.task == "multiclass":
        cuts = np.quantile(score, np.arange(1, spec.n_classes) / spec.n_classes)
        return np.digitize(score, cuts).astype(np.float32)
    return (score > 0).astype(np.float32)


def trained_learners(
    spec: ModelSpec, n_features: int, members: int, batches: int = 3
) -> list[OnlineLearner]:
    """`members` learners of `spec`, seeds 0.., each after `batches` batches of 32 inputs."""
    learners = []
    for seed in range(members):
        learner = OnlineLearner(n_features, spec, seed=seed)
        for batch in range(batches):
            rows = random_rows(32 + spec.window - 1, n_features, seed=100 * seed + batch)
            x = model_inputs(spec, rows)
            learner.learn_many(x, labels_for(spec, x))
        learners.append(learner)
    return learners


def own_outputs(learners: list[OnlineLearner], x: np.ndarray) -> np.ndarray:
    """Each learner's own output, stacked on axis 1: (n, M) or (n, M, classes)."""
    return np.stack([learner.predict_proba_many(x) for learner in learners], axis=1)
