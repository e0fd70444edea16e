"""Weighting policies on multiclass and regression members (binary: test_weighting.py)."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from actors.errors import ConfigError
from actors.weighting import POLICIES, WeightingPolicy, make_policy

WEIGHING = sorted(set(POLICIES) - {"uniform"})
EVERYONE = np.ones(3, dtype=bool)


def multiclass_rows(
    accuracies: Sequence[float],
    rows: int = 1000,
    *,
    shares: Sequence[float] = (0.5, 0.3, 0.2),
    confidence: float = 0.8,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with exactly `shares` of each class and (rows, members, classes)
    probabilities; member j's argmax is right on exactly ``accuracies[j] * rows`` rows,
    with `confidence` on its chosen class and the rest split evenly."""
    rng = np.random.default_rng(seed)
    classes = len(shares)
    counts = np.round(np.asarray(shares) * rows).astype(int)
    labels = rng.permutation(np.repeat(np.arange(classes), counts)).astype(np.float64)
    rest = (1.0 - confidence) / (classes - 1)
    probabilities = np.full((rows, len(accuracies), classes), rest)
    for j, accuracy in enumerate(accuracies):
        right = np.zeros(rows, dtype=bool)
        right[rng.permutation(rows)[: round(accuracy * rows)]] = True
        shift = rng.integers(1, classes, rows)
        chosen = np.where(right, labels, (labels + shift) % classes).astype(int)
        probabilities[np.arange(rows), j, chosen] = confidence
    return probabilities, labels


def regression_rows(
    noise: Sequence[float], rows: int = 1000, *, scale: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and (rows, members) predictions: the target plus Gaussian noise of
    standard deviation ``noise[j]`` (times `scale`, like the targets)."""
    rng = np.random.default_rng(seed)
    targets = scale * (3.0 + 2.0 * rng.standard_normal(rows))
    errors = rng.standard_normal((rows, len(noise))) * np.asarray(noise)
    return targets[:, None] + scale * errors, targets


def prior_predictor(probabilities: np.ndarray, labels: np.ndarray, member: int) -> None:
    """Make `member` answer the window's class shares on every row (it learned only those)."""
    shares = np.bincount(labels.astype(int), minlength=probabilities.shape[2]) / labels.size
    probabilities[:, member, :] = shares


def observed(
    name: str, data: tuple[np.ndarray, np.ndarray], task: str, **params
) -> WeightingPolicy:
    outputs, labels = data
    policy = make_policy(name, outputs.shape[1], task=task, **params)
    policy.observe(outputs, labels, np.ones(outputs.shape[1], dtype=bool))
    return policy


# --- multiclass -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", WEIGHING)
def test_multiclass_better_argmax_gets_more_and_the_prior_predictor_nothing(name):
    probabilities, labels = multiclass_rows([0.9, 0.7, 0.5])
    prior_predictor(probabilities, labels, 2)  # argmax: the majority class, right 50%
    policy = observed(name, (probabilities, labels), "multiclass")
    w = policy.weights(EVERYONE)
    assert w[0] > w[1] > 0.0
    assert w[2] == 0.0
    assert w.sum() == pytest.approx(1.0)


def test_multiclass_uniform_ignores_scores():
    probabilities, labels = multiclass_rows([0.9, 0.7, 0.5])
    prior_predictor(probabilities, labels, 2)
    policy = observed("uniform", (probabilities, labels), "multiclass")
    np.testing.assert_allclose(policy.weights(EVERYONE), [1 / 3] * 3)
    assert policy.member_scores() == pytest.approx([0.9, 0.7, 0.5])


def test_multiclass_accuracy_is_argmax_and_chance_the_majority_share():
    probabilities, labels = multiclass_rows([0.9, 0.7, 0.5])
    probabilities[:, 0, :] = np.where(probabilities[:, 0, :] == 0.8, 0.45, 0.275)
    policy = observed("accuracy", (probabilities, labels), "multiclass")
    # Member 0 gives its argmax only 0.45 now: still right 90% of the time.
    assert policy.member_scores() == pytest.approx([0.9, 0.7, 0.5])
    np.testing.assert_allclose(policy.weights(EVERYONE), [0.4 / 0.6, 0.2 / 0.6, 0.0])


def test_multiclass_awe_uses_the_true_class_probability_against_the_prior():
    probabilities, labels = multiclass_rows([0.9, 0.7, 0.5])
    prior_predictor(probabilities, labels, 2)
    policy = observed("awe", (probabilities, labels), "multiclass")
    # MSE: right (1 - 0.8)^2, wrong (1 - 0.1)^2. MSE_r = sum_c p(c) (1 - p(c))^2 = 0.4.
    mse = [0.9 * 0.04 + 0.1 * 0.81, 0.7 * 0.04 + 0.3 * 0.81, 0.4]
    assert policy.member_scores() == pytest.approx(mse)
    gains = np.array([0.4 - mse[0], 0.4 - mse[1], 0.0])
    np.testing.assert_allclose(policy.weights(EVERYONE), gains / gains.sum())


def test_multiclass_non_finite_row_is_a_confident_wrong_answer():
    probabilities, labels = multiclass_rows([1.0, 1.0, 1.0], 100)
    probabilities[:10, 1, 0] = np.nan
    awe = observed("awe", (probabilities, labels), "multiclass")
    assert awe.member_scores()[1] == pytest.approx(0.9 * 0.04 + 0.1 * 1.0)
    accuracy = observed("accuracy", (probabilities, labels), "multiclass")
    assert accuracy.member_scores() == pytest.approx([1.0, 0.9, 1.0])


def test_multiclass_checks_shapes_and_labels():
    policy = make_policy("accuracy", 2, task="multiclass")
    scored = np.ones(2, dtype=bool)
    with pytest.raises(ValueError, match=r"shape \(rows, 2, classes\), got \(5, 2\)"):
        policy.observe(np.zeros((5, 2)), np.zeros(5), scored)
    for bad in (3.0, 1.5, -1.0, np.nan):
        with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
            policy.observe(np.zeros((2, 2, 3)), np.array([0.0, bad]), scored)
    assert policy.member_scores() == [None, None]


# --- regression ----------------------------------------------------------------------------


def _figures(data: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, float]:
    predictions, targets = data
    return np.mean(np.square(predictions - targets[:, None]), axis=0), float(np.var(targets))


def test_regression_accuracy_weighs_by_skill_and_awe_by_variance_minus_mse():
    data = regression_rows([0.5, 1.0, 3.0])
    mse, var = _figures(data)
    skill = 1.0 - mse / var
    assert skill[2] < 0.0 < skill[1] < skill[0]
    accuracy = observed("accuracy", data, "regression")
    assert accuracy.member_scores() == pytest.approx(skill.tolist(), rel=1e-12)
    np.testing.assert_allclose(accuracy.weights(EVERYONE), [*skill[:2] / skill[:2].sum(), 0.0])
    awe = observed("awe", data, "regression")
    assert awe.member_scores() == pytest.approx(mse.tolist(), rel=1e-12)
    gains = var - mse[:2]
    np.testing.assert_allclose(awe.weights(EVERYONE), [*gains / gains.sum(), 0.0], rtol=1e-12)


def test_regression_softmax_and_hedge_ratios():
    data = regression_rows([0.5, 1.0, 3.0], rows=400)
    mse, var = _figures(data)
    softmax = observed("softmax", data, "regression", temperature=0.1, window=400)
    w = softmax.weights(EVERYONE)
    assert w[2] == 0.0
    assert w[0] / w[1] == pytest.approx(math.exp((mse[1] - mse[0]) / var / 0.1), rel=1e-9)
    hedge = observed("hedge", data, "regression", eta=0.5, window=400)
    assert hedge.member_scores() == pytest.approx((mse / var).tolist(), rel=1e-12)
    w = hedge.weights(EVERYONE)
    factor = math.exp(0.5 * math.sqrt(400) * (mse[1] - mse[0]) / var)
    assert w[2] == 0.0 and w[0] / w[1] == pytest.approx(factor, rel=1e-9)


@pytest.mark.parametrize("name", WEIGHING)
def test_regression_lower_error_gets_more_and_the_mean_predictor_nothing(name):
    predictions, targets = regression_rows([0.5, 1.0, 0.0])
    predictions[:, 2] = targets.mean()  # skill 0, MSE = var(y): no better than the mean
    policy = observed(name, (predictions, targets), "regression")
    w = policy.weights(EVERYONE)
    assert w[0] > w[1] > 0.0
    assert w[2] == 0.0
    uniform = observed("uniform", (predictions, targets), "regression")
    np.testing.assert_allclose(uniform.weights(EVERYONE), [1 / 3] * 3)


@pytest.mark.parametrize("name", WEIGHING)
def test_regression_weights_do_not_depend_on_the_targets_units(name):
    unit = observed(name, regression_rows([0.5, 1.0, 3.0]), "regression").weights(EVERYONE)
    tiny = observed(name, regression_rows([0.5, 1.0, 3.0], scale=1e-7), "regression")
    np.testing.assert_allclose(tiny.weights(EVERYONE), unit, rtol=1e-9)


@pytest.mark.parametrize("name", WEIGHING)
def test_regression_constant_target_leaves_nobody_above_chance(name):
    predictions, _ = regression_rows([0.5, 1.0, 3.0])
    policy = observed(name, (predictions, np.full(1000, 2.5)), "regression")
    np.testing.assert_allclose(policy.weights(EVERYONE), [1 / 3] * 3)


def test_regression_non_finite_prediction_earns_nothing():
    predictions, targets = regression_rows([0.5, 1.0, 1.0])
    predictions[7, 1] = np.nan
    predictions[8, 2] = np.inf
    policy = observed("awe", (predictions, targets), "regression")
    assert policy.member_scores()[1:] == [math.inf, math.inf]
    np.testing.assert_allclose(policy.weights(EVERYONE), [1.0, 0.0, 0.0])
    policy = observed("hedge", (predictions, targets), "regression")
    np.testing.assert_allclose(policy.weights(EVERYONE), [1.0, 0.0, 0.0])


def test_regression_member_accuracies_are_skills():
    data = regression_rows([0.5, 1.0, 3.0])
    mse, var = _figures(data)
    policy = observed("awe", data, "regression")
    assert policy.member_accuracies() == pytest.approx((1.0 - mse / var).tolist(), rel=1e-12)
    assert make_policy("awe", 2, task="regression").member_accuracies() == [None, None]


def test_regression_rejects_non_finite_targets():
    policy = make_policy("accuracy", 2, task="regression")
    with pytest.raises(ValueError, match="finite regression targets"):
        policy.observe(np.zeros((3, 2)), np.array([0.0, np.inf, 1.0]), np.ones(2, dtype=bool))


# --- binary: at chance within rounding ----------------------------------------------------


@pytest.mark.parametrize("name", WEIGHING)
def test_binary_member_exactly_at_chance_gets_nothing_despite_rounding(name):
    # 7 of 12 labels are 0: 1 - 5/12 is one bit below 7/12 in floating point.
    labels = np.array([1.0] * 5 + [0.0] * 7)
    good = np.where(labels > 0.5, 0.9, 0.1)
    always_negative = np.full(12, 0.1)
    policy = make_policy(name, 2, min_rows=12)
    policy.observe(np.stack([good, always_negative], axis=1), labels, np.ones(2, dtype=bool))
    np.testing.assert_allclose(policy.weights(np.ones(2, dtype=bool)), [1.0, 0.0])


# --- task setting, state, and the contract on every task ------------------------------------


def test_task_is_validated_and_shown_when_not_binary():
    with pytest.raises(ConfigError, match=r"task \('ordinal'\) must be one of binary"):
        make_policy("accuracy", 2, task="ordinal")
    assert "task" not in repr(make_policy("hedge", 2))
    assert repr(make_policy("hedge", 2, task="regression", eta=1.0)).endswith(
        "eta=1.0, task='regression')"
    )


def task_data(task: str, rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if task == "multiclass":
        return multiclass_rows([0.9, 0.7, 0.5], rows, seed=seed)
    if task == "regression":
        return regression_rows([0.5, 1.0, 3.0], rows, seed=seed)
    raise AssertionError(task)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
@pytest.mark.parametrize("name", sorted(POLICIES))
class TestPolicyContractOnTasks:
    def test_state_round_trips_through_npz_without_pickle(self, name, task, tmp_path):
        policy = make_policy(name, 3, window=200, floor=0.05, cap=0.8, min_rows=20, task=task)
        outputs, labels = task_data(task)
        policy.observe(outputs, labels, np.array([True, True, False]))
        state: dict[str, Any] = policy.state()
        np.savez(tmp_path / "policy.npz", **state)
        with np.load(tmp_path / "policy.npz", allow_pickle=False) as loaded:
            restored = type(policy).from_state(loaded)
        assert restored.task == task and repr(restored) == repr(policy)
        assert np.array_equal(restored.weights(EVERYONE), policy.weights(EVERYONE))
        assert restored.member_scores() == policy.member_scores()
        more = task_data(task, 50, seed=1)
        policy.observe(*more, EVERYONE)
        restored.observe(*more, EVERYONE)
        assert np.array_equal(restored.weights(EVERYONE), policy.weights(EVERYONE))

    def test_inputs_are_not_mutated_and_pickle_round_trips(self, name, task):
        outputs, labels = task_data(task)
        for array in (outputs, labels):
            array.flags.writeable = False
        policy = make_policy(name, 3, min_rows=20, task=task)
        policy.observe(outputs, labels, EVERYONE)
        restored = pickle.loads(pickle.dumps(policy))
        assert np.array_equal(restored.weights(EVERYONE), policy.weights(EVERYONE))

    def test_weights_are_a_distribution_over_the_eligible(self, name, task):
        policy = make_policy(name, 3, min_rows=20, floor=0.02, cap=0.9, task=task)
        policy.observe(*task_data(task), EVERYONE)
        for eligible in ([True, True, True], [False, True, True], [False, False, True]):
            w = policy.weights(np.array(eligible))
            assert np.all(np.isfinite(w)) and np.all(w >= 0.0) and w.sum() == pytest.approx(1.0)
            assert np.all(w[~np.array(eligible)] == 0.0)
