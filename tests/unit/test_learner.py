import numpy as np
import pytest

from actors.errors import ModelError
from actors.learner import OnlineLearner
from actors.specs import ModelSpec


def _concept(rng, n, d=5):
    x = rng.random((n, d), dtype=np.float32)
    return x, (x @ np.arange(1, d + 1) > np.arange(1, d + 1).sum() / 2).astype(np.float32)


def test_learns_a_linear_concept_test_then_train():
    rng = np.random.default_rng(0)
    learner = OnlineLearner(5, ModelSpec(hidden=(16,)), seed=0)
    accuracy = []
    for _ in range(150):
        x, y = _concept(rng, 128)
        outcome = learner.learn_many(x, y)
        accuracy.append(outcome.correct / outcome.rows)
    assert np.mean(accuracy[:5]) < 0.8
    assert np.mean(accuracy[-20:]) > 0.93


def test_reported_score_is_the_pre_update_prediction():
    rng = np.random.default_rng(1)
    learner = OnlineLearner(5, seed=3)
    x, y = _concept(rng, 200)
    before = learner.predict_many(x)
    outcome = learner.learn_many(x, y)
    assert outcome.correct == int((before == y).sum())
    after = learner.predict_many(x)
    assert not np.array_equal(learner.predict_proba_many(x), before)  # it did learn
    assert after.shape == before.shape


def test_same_seed_same_result_and_no_retracing():
    rng = np.random.default_rng(2)
    batches = [_concept(rng, n) for n in (64, 7, 256, 1)]
    a, b = OnlineLearner(5, seed=11), OnlineLearner(5, seed=11)
    for x, y in batches:
        assert a.learn_many(x, y) == b.learn_many(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a._step.experimental_get_tracing_count() == 1


def test_input_is_not_mutated_and_snapshot_round_trips():
    rng = np.random.default_rng(4)
    x, y = _concept(rng, 50)
    x_copy, y_copy = x.copy(), y.copy()
    learner = OnlineLearner(5, seed=0)
    learner.learn_many(x, y)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)
    clone = OnlineLearner(5, seed=99)
    clone.set_weights(learner.get_weights())
    np.testing.assert_allclose(
        clone.predict_proba_many(x), learner.predict_proba_many(x), rtol=1e-6
    )


def test_normaliser_statistics_live_in_the_weights():
    learner = OnlineLearner(2, seed=0)
    x = np.array([[10.0, -4.0], [12.0, -6.0]], dtype=np.float32)
    learner.learn_many(x, np.array([0.0, 1.0], dtype=np.float32))
    count, mean, m2 = learner.get_weights()[:3]
    assert count == 2
    np.testing.assert_allclose(mean, [11.0, -5.0])
    np.testing.assert_allclose(m2, [2.0, 2.0])


def test_wrong_width_is_a_clear_error():
    learner = OnlineLearner(3, seed=0)
    with pytest.raises(ModelError, match=r"shape \(n, 3\)"):
        learner.learn_many(np.zeros((4, 2), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ModelError, match="4 rows but 3 labels"):
        learner.learn_many(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))


@pytest.mark.parametrize("bad", [{"hidden": ()}, {"hidden": (0,)}, {"learning_rate": 0.0}])
def test_bad_model_spec(bad):
    with pytest.raises(ModelError):
        ModelSpec(**bad)


def test_a_missing_feature_is_imputed_with_the_running_mean():
    rng = np.random.default_rng(5)
    learner = OnlineLearner(5, seed=0)
    for _ in range(20):
        x, y = _concept(rng, 64)
        learner.learn_many(x * 3 + 1, y)
    mean = learner.get_weights()[1]
    row = rng.random((1, 5), dtype=np.float32)
    with_nan, with_mean = row.copy(), row.copy()
    with_nan[0, 2] = np.nan
    with_mean[0, 2] = mean[2]
    np.testing.assert_allclose(
        learner.predict_proba_many(with_nan), learner.predict_proba_many(with_mean), rtol=1e-5
    )
