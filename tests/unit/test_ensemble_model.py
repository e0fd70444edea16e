"""The ensemble graph mixes exactly what each member's own network outputs, for every task.

The graph loads the snapshots of trained `OnlineLearner`s with `set_member_weights`; its
mix must equal the weighted mean of the learners' own outputs on the same inputs.
"""

import numpy as np
import pytest

from actors.ensemble_model import EnsembleModel
from actors.errors import ModelError
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


@pytest.mark.parametrize("name", list(SPECS))
def test_the_mix_is_the_weighted_mean_of_each_members_own_output(name):
    spec = SPECS[name]
    learners = trained_learners(spec, N_FEATURES, len(MIXING))
    ensemble = EnsembleModel(spec, N_FEATURES, len(learners))
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
