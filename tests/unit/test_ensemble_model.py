"""The ensemble graph mixes exactly what each member's own network outputs, for every task.

The graph loads the snapshots of trained `OnlineLearner`s with `set_member_weights`; its
mix must equal the weighted mean of the learners' own outputs on the same inputs, on
both forward paths (NumPy for MLPs, TensorFlow for everything).
"""

import numpy as np
import pytest

from actors.dense_forward import ACTIVATIONS
from actors.ensemble_model import EnsembleModel
from actors.errors import ModelError
from actors.learner import OnlineLearner
from actors.specs import ModelSpec
from tests.unit.trained_members import model_inputs, own_outputs, random_rows, trained_learners

N_FEATURES = 3
MIXING = np.array([0.2, 0.5, 0.3], np.float32)
HALVES = np.array([0.5, 0.5], np.float32)

SPECS = {
    "binary-mlp": ModelSpec(hidden=(8,)),
    "regression-mlp": ModelSpec(hidden=(8,), task="regression"),
    "multiclass-mlp": ModelSpec(hidden=(8,), task="multiclass", n_classes=4),
    "regression-lstm": ModelSpec(kind="lstm", window=5, units=4, hidden=(4,), task="regression"),
    "multiclass-conv1d": ModelSpec(
        kind="conv1d",
        window=6,
        filters=4,
        kernel_size=3,
        hidden=(4,),
        task="multiclass",
        n_classes=3,
    ),
    "binary-conv1d": ModelSpec(kind="conv1d", window=4, filters=4, kernel_size=2, hidden=(4,)),
}


@pytest.mark.parametrize("forward", ["auto", "tensorflow"])
@pytest.mark.parametrize("name", list(SPECS))
def test_the_mix_is_the_weighted_mean_of_each_members_own_output(name, forward):
    spec = SPECS[name]
    learners = trained_learners(spec, N_FEATURES, len(MIXING))
    ensemble = EnsembleModel(spec, N_FEATURES, len(learners), forward=forward)
    assert ensemble.forward == (
        "numpy" if forward == "auto" and spec.kind == "mlp" else "tensorflow"
    )
    for i, learner in enumerate(learners):
        ensemble.set_member_weights(i, learner.get_weights())
    x = model_inputs(spec, random_rows(17 + spec.window - 1, N_FEATURES, seed=999))

    mixed, per_member = ensemble.predict(x, MIXING)

    own = own_outputs(learners, x)
    if spec.task == "multiclass":
        assert mixed.shape == (17, spec.n_classes)
        assert per_member.shape == (17, len(learners), spec.n_classes)
        np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-5)
    else:
        assert mixed.shape == (17,) and per_member.shape == (17, len(learners))
    np.testing.assert_allclose(per_member, own, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mixed, np.tensordot(MIXING, own, axes=([0], [1])), atol=1e-5)


def test_input_shape_follows_the_spec_and_a_wrong_shape_says_what_it_needs():
    spec = SPECS["regression-lstm"]
    ensemble = EnsembleModel(spec, N_FEATURES, 2)
    assert ensemble.input_shape == (5, N_FEATURES)
    ensemble.warm_up()
    mixed, per_member = ensemble.predict(np.zeros((4, 5, N_FEATURES), np.float32), HALVES)
    assert mixed.shape == (4,) and per_member.shape == (4, 2)
    with pytest.raises(ModelError, match=r"\(n, 5, 3\) \(windows of 5 rows of 3 features\)"):
        ensemble.predict(np.zeros((4, N_FEATURES), np.float32), HALVES)  # rows, not windows


# Every activation on the binary task, and each other task's output layer once.
AGREEMENT_CASES = [(a, "binary") for a in ACTIVATIONS] + [
    ("relu", "multiclass"),
    ("tanh", "regression"),
]


@pytest.mark.parametrize(("activation", "task"), AGREEMENT_CASES)
def test_numpy_and_tensorflow_forward_agree_on_every_supported_activation(activation, task):
    spec = ModelSpec(hidden=(6, 5), activation=activation, task=task, n_classes=3)
    learners = trained_learners(spec, N_FEATURES, len(MIXING), batches=1)
    numpy_path = EnsembleModel(spec, N_FEATURES, len(learners), forward="numpy")
    tf_path = EnsembleModel(spec, N_FEATURES, len(learners), forward="tensorflow")
    for i, learner in enumerate(learners):
        numpy_path.set_member_weights(i, learner.get_weights())
        tf_path.set_member_weights(i, learner.get_weights())
    # Ordinary rows, rows far out (saturated sigmoids, softmax of large logits), and a
    # left-out feature (NaN: imputed as the running mean by both paths).
    x = np.concatenate(
        [
            random_rows(9, N_FEATURES, seed=5),
            1e4 * random_rows(3, N_FEATURES, seed=6),
            np.array([[np.nan, 0.3, -1.0]], np.float32),
        ]
    )

    for got, expected in zip(
        numpy_path.predict(x, MIXING), tf_path.predict(x, MIXING), strict=True
    ):
        assert got.dtype == np.float32 and np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_numpy_forward_of_an_untrained_normaliser_uses_unit_variance_like_the_layer():
    spec = ModelSpec(hidden=(4,))
    fresh = OnlineLearner(N_FEATURES, spec, seed=3)  # count 0: nothing learned yet
    numpy_path = EnsembleModel(spec, N_FEATURES, 1, forward="numpy")
    numpy_path.set_member_weights(0, fresh.get_weights())
    x = random_rows(5, N_FEATURES, seed=8)

    _, per_member = numpy_path.predict(x, np.ones(1, np.float32))

    np.testing.assert_allclose(per_member[:, 0], fresh.predict_proba_many(x), atol=1e-6)


def test_numpy_forward_refuses_a_snapshot_of_another_shape_and_other_architectures():
    spec = ModelSpec(hidden=(4,))
    ensemble = EnsembleModel(spec, N_FEATURES, 2)
    weights = OnlineLearner(N_FEATURES, ModelSpec(hidden=(5,)), seed=0).get_weights()
    with pytest.raises(ModelError, match="needs"):
        ensemble.set_member_weights(0, weights)
    # A (1, k) kernel would broadcast into (n, k) without the exact shape check.
    good = OnlineLearner(N_FEATURES, spec, seed=0).get_weights()
    with pytest.raises(ModelError, match="shapes"):
        ensemble.set_member_weights(0, [*good[:3], good[3][:1], *good[4:]])
    with pytest.raises(ModelError, match="NumPy forward pass takes mlp"):
        EnsembleModel(SPECS["regression-lstm"], N_FEATURES, 2, forward="numpy")
    with pytest.raises(ModelError, match="NumPy forward pass takes mlp"):
        EnsembleModel(ModelSpec(hidden=(4,), activation="gelu"), N_FEATURES, 2, forward="numpy")
    assert EnsembleModel(ModelSpec(hidden=(4,), activation="gelu"), N_FEATURES, 2).forward == (
        "tensorflow"
    )
