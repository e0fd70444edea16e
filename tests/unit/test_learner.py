import numpy as np
import pytest

from actors.errors import ModelError
from actors.learner import OnlineLearner
from actors.specs import ModelSpec, StrategySpec


def _concept(rng, n, d=5):
    x = rng.random((n, d), dtype=np.float32)
    return x, (x @ np.arange(1, d + 1) > np.arange(1, d + 1).sum() / 2).astype(np.float32)


def test_learns_a_linear_concept_test_then_train():
    rng = np.random.default_rng(0)
    # One step per batch, so the first batch's score is the untrained network's.
    learner = OnlineLearner(
        5, ModelSpec(hidden=(16,)), seed=0, strategy=StrategySpec(step_rows=128)
    )
    accuracy = []
    for _ in range(150):
        x, y = _concept(rng, 128)
        outcome = learner.learn_many(x, y)
        accuracy.append(outcome.correct / outcome.rows)
    assert accuracy[0] < 0.65  # starts near chance ...
    assert np.mean(accuracy[-20:]) > 0.93  # ... and learns the concept


def test_reported_score_is_the_pre_update_prediction():
    """With one optimizer step per batch, the batch's score is the prediction before it."""

    rng = np.random.default_rng(1)
    learner = OnlineLearner(5, seed=3, strategy=StrategySpec(step_rows=200))
    x, y = _concept(rng, 200)
    before = learner.predict_proba_many(x)
    outcome = learner.learn_many(x, y)
    assert outcome.correct == int(((before > 0.5) == y).sum())
    assert not np.allclose(learner.predict_proba_many(x), before)  # it did learn


def test_a_batch_is_learned_in_slices_of_step_rows_each_scored_before_it_is_learned():
    """One call on 200 rows with step_rows=32 is seven 32-row test-then-train steps (the
    last of 8 rows): the same scores, optimizer steps and weights as seven calls."""

    rng = np.random.default_rng(1)
    x, y = _concept(rng, 200)
    sliced = OnlineLearner(5, seed=3, strategy=StrategySpec(step_rows=32))
    stepwise = OnlineLearner(5, seed=3, strategy=StrategySpec(step_rows=32))
    first_slice_before = sliced.predict_many(x[:32])
    outcome = sliced.learn_many(x, y)
    stepwise_scores = np.concatenate(
        [stepwise.learn_many(x[i : i + 32], y[i : i + 32]).scores for i in range(0, 200, 32)]
    )
    np.testing.assert_array_equal(outcome.scores[:32], first_slice_before == y[:32])
    np.testing.assert_array_equal(outcome.scores, stepwise_scores)
    assert int(sliced._optimizer.iterations.numpy()) == 7
    for a, b in zip(sliced.get_weights(), stepwise.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_same_seed_same_result_and_no_retracing():
    rng = np.random.default_rng(2)
    batches = [_concept(rng, n) for n in (64, 7, 256, 1)]
    a, b = OnlineLearner(5, seed=11), OnlineLearner(5, seed=11)
    for x, y in batches:
        assert a.learn_many(x, y) == b.learn_many(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a._step.tracing_count() == 1


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


def test_multiclass_learns_and_reports_per_class_probabilities():
    rng = np.random.default_rng(6)
    learner = OnlineLearner(4, ModelSpec(task="multiclass", n_classes=3), seed=0)
    accuracy = []
    for _ in range(120):
        x = rng.random((128, 4), dtype=np.float32)
        y = np.digitize(x.sum(axis=1), [1.7, 2.3]).astype(np.float32)
        outcome = learner.learn_many(x, y)
        accuracy.append(outcome.correct / outcome.rows)
    assert np.mean(accuracy[-20:]) > 0.9
    probabilities = learner.predict_proba_many(x[:5])
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(learner.predict_many(x[:5]), probabilities.argmax(axis=1))


def test_regression_learns_and_scores_squared_error():
    rng = np.random.default_rng(7)
    learner = OnlineLearner(3, ModelSpec(task="regression"), seed=0)
    for _ in range(150):
        x = rng.random((128, 3), dtype=np.float32)
        outcome = learner.learn_many(x, 2 * x[:, 0] - x[:, 1])
    assert outcome.correct == 0
    assert outcome.squared_error == pytest.approx(float(outcome.scores.sum()), rel=1e-5)
    assert outcome.squared_error / outcome.rows < 0.01
    prediction = learner.predict_many(x[:4])
    np.testing.assert_allclose(prediction, 2 * x[:4, 0] - x[:4, 1], atol=0.2)


@pytest.mark.parametrize("kind", ["lstm", "conv1d"])
def test_sequence_models_take_windows(kind):
    learner = OnlineLearner(2, ModelSpec(kind=kind, window=8, task="regression"), seed=0)
    windows = np.random.default_rng(0).random((16, 8, 2), dtype=np.float32)
    assert learner.learn_many(windows, windows[:, -1, 0]).rows == 16
    assert learner.predict_many(windows).shape == (16,)
    with pytest.raises(ModelError, match=r"shape \(n, 8, 2\)"):
        learner.learn_many(windows[:, :4], windows[:, -1, 0])


def test_a_custom_model_is_wrapped_with_the_normaliser():
    spec = ModelSpec(kind="custom", factory="tests.unit.model_factories:binary_3")
    learner = OnlineLearner(3, spec, seed=0)
    x = np.random.default_rng(0).random((64, 3), dtype=np.float32) * 10
    learner.learn_many(x, (x[:, 0] > 5).astype(np.float32))
    count, mean = learner.get_weights()[:2]
    assert count == 64
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize(
    ("factory", "spec_extra", "message"),
    [
        ("wrong_width", {}, r"input shape \(None, 5\), the stream needs \(None, 3\)"),
        ("three_outputs", {}, r"output shape \(None, 3\), a binary task needs \(None, 1\)"),
        ("linear_output", {}, "must end in a sigmoid"),
        ("binary_3", {"task": "multiclass", "n_classes": 3}, r"a multiclass task needs"),
        ("not_a_model", {}, "returned str, expected a keras.Model"),
        ("missing", {}, "cannot load model factory"),
    ],
)
def test_a_custom_model_that_does_not_fit_the_task_is_refused(factory, spec_extra, message):
    spec = ModelSpec(kind="custom", factory=f"tests.unit.model_factories:{factory}", **spec_extra)
    with pytest.raises(ModelError, match=message):
        OnlineLearner(3, spec, seed=0)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"kind": "lstm"}, r"window \(input_window\) must be >= 2"),
        ({"window": 4}, "an mlp reads single rows"),
        ({"kind": "custom"}, "factory='module:function'"),
        ({"factory": "a:b"}, "only used with kind='custom'"),
        ({"task": "multiclass", "n_classes": 1}, "n_classes >= 2"),
        ({"kind": "conv1d", "window": 4, "kernel_size": 5}, "kernel_size"),
    ],
)
def test_bad_model_kinds_and_tasks(bad, message):
    with pytest.raises(ModelError, match=message):
        ModelSpec(**bad)


@pytest.mark.parametrize("strategy", ["finetune", "replay"])
def test_pretraining_on_the_ensembles_answers_gives_a_new_member_a_head_start(strategy):
    """A `distill` start: fitted on recent rows labelled by the ensemble before its
    first stream row (replay included: its step takes old rows too, none here)."""

    rng = np.random.default_rng(1)
    x, answers = _concept(rng, 2_000)
    fresh = OnlineLearner(5, ModelSpec(hidden=(16,)), seed=4, strategy=StrategySpec(strategy))
    started = OnlineLearner(5, ModelSpec(hidden=(16,)), seed=4, strategy=StrategySpec(strategy))
    started.pretrain(x, answers)
    test_x, test_y = _concept(rng, 1_000)
    fresh_accuracy = (fresh.predict_many(test_x) == test_y).mean()
    started_accuracy = (started.predict_many(test_x) == test_y).mean()
    assert started_accuracy > 0.85 > fresh_accuracy
    assert started.resets == 0  # a start, not a reset
