"""Weighting policies: what each one claims, the shared rules, and a contract over all."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from actors.errors import ConfigError
from actors.weighting import (
    POLICIES,
    SIGNIFICANCE_Z,
    RecentAccuracy,
    WeightingPolicy,
    make_policy,
)

WEIGHING = sorted(set(POLICIES) - {"uniform"})
"""The policies that weigh members by their scores (all but uniform)."""


def scored_rows(
    accuracies: Sequence[float],
    rows: int = 1000,
    *,
    confidence: float | Sequence[float] = 0.9,
    positive_rate: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (rows, members) probabilities; member j is right on exactly
    ``accuracies[j] * rows`` rows, giving the true class probability ``confidence[j]``
    where right and ``1 - confidence[j]`` where wrong."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(rows) < round(positive_rate * rows)).astype(np.float64)
    rng.shuffle(labels)
    confidences = np.broadcast_to(np.asarray(confidence, dtype=float), (len(accuracies),))
    probabilities = np.empty((rows, len(accuracies)))
    for j, (accuracy, sure) in enumerate(zip(accuracies, confidences, strict=True)):
        correct = np.zeros(rows, dtype=bool)
        correct[rng.permutation(rows)[: round(accuracy * rows)]] = True
        says_positive = (labels == 1.0) == correct
        probabilities[:, j] = np.where(says_positive, sure, 1.0 - sure)
    return probabilities, labels


def fed(name: str, accuracies: Sequence[float], rows: int = 1000, **params) -> WeightingPolicy:
    """A policy that has seen every member scored on `rows` rows at `accuracies`."""
    policy = make_policy(name, len(accuracies), **params)
    policy.observe(*scored_rows(accuracies, rows), scored=everyone(len(accuracies)))
    return policy


def everyone(n: int) -> np.ndarray:
    return np.ones(n, dtype=bool)


# --- mixing_weights (the stateless accuracy/uniform form) --------------------------------


def test_recent_accuracy_window_and_cumulative():
    recent = RecentAccuracy(4)
    assert recent.value() is None
    recent.add(np.array([True, True, True, True]))
    recent.add(np.array([False, False]))
    assert recent.value() == 0.5
    assert recent.cumulative() == pytest.approx(4 / 6)
    with pytest.raises(ConfigError):
        RecentAccuracy(0)


# --- each policy does what it claims ------------------------------------------------------


def test_registry_names_every_policy():
    assert sorted(POLICIES) == ["accuracy", "awe", "hedge", "softmax", "uniform"]
    for name, policy in POLICIES.items():
        assert policy.name == name
        assert isinstance(make_policy(name, 2), policy)


def test_uniform_ignores_scores():
    policy = fed("uniform", [0.95, 0.3, 0.6])
    np.testing.assert_allclose(policy.weights(everyone(3)), [1 / 3] * 3)
    np.testing.assert_allclose(policy.weights(np.array([True, False, True])), [0.5, 0, 0.5])
    assert policy.member_scores() == pytest.approx([0.95, 0.3, 0.6])


def test_accuracy_weights_proportional_to_gain_over_chance():
    policy = fed("accuracy", [0.9, 0.7, 0.5])
    assert policy.member_scores() == pytest.approx([0.9, 0.7, 0.5])
    np.testing.assert_allclose(policy.weights(everyone(3)), [0.4 / 0.6, 0.2 / 0.6, 0.0])


def test_accuracy_chance_is_the_windows_majority_rate():
    policy = make_policy("accuracy", 2)
    policy.observe(*scored_rows([0.85, 0.7], positive_rate=0.7), scored=everyone(2))
    np.testing.assert_allclose(policy.weights(everyone(2)), [1.0, 0.0])  # 0.7 is chance


def test_softmax_is_sharper_with_lower_temperature():
    ratios = []
    for temperature in (0.1, 0.05, 0.02):
        w = fed("softmax", [0.9, 0.8, 0.5], temperature=temperature).weights(everyone(3))
        assert w[2] == 0.0  # at chance
        assert w[0] / w[1] == pytest.approx(math.exp(0.1 / temperature), rel=1e-9)
        ratios.append(w[0] / w[1])
    assert ratios == sorted(ratios)


def test_hedge_favours_the_lower_loss_member_exponentially():
    eta, rows = 1.0, 1000
    policy = fed("hedge", [0.9, 0.8, 0.7], rows, eta=eta, window=rows)
    assert policy.member_scores() == pytest.approx([0.1, 0.2, 0.3])  # 0/1 loss
    w = policy.weights(everyone(3))
    factor = math.exp(eta * math.sqrt(rows) * 0.1)
    assert w[0] / w[1] == pytest.approx(factor, rel=1e-9)
    assert w[1] / w[2] == pytest.approx(factor, rel=1e-9)


def test_hedge_reacts_within_one_window_when_a_members_loss_jumps():
    window, chunk, eta = 400, 40, 2.0
    policy = make_policy("hedge", 2, window=window, eta=eta)
    for seed in range(window // chunk):
        policy.observe(*scored_rows([0.9, 0.8], chunk, seed=seed), scored=everyone(2))
    before = policy.weights(everyone(2))
    assert before[0] / before[1] == pytest.approx(math.exp(eta * math.sqrt(window) * 0.1))
    flipped_after = None
    for k in range(1, window // chunk + 1):  # member 0 drops to 0.6 accuracy
        policy.observe(*scored_rows([0.6, 0.8], chunk, seed=100 + k), scored=everyone(2))
        w = policy.weights(everyone(2))
        if flipped_after is None and w[1] > w[0]:
            flipped_after = k * chunk
    # Its window loss 0.1 + 0.3 * k / 10 passes member 1's 0.2 at k = 4 chunks.
    assert flipped_after == 160
    assert w[1] / w[0] == pytest.approx(math.exp(eta * math.sqrt(window) * 0.2), rel=1e-9)


def test_awe_ranks_by_mse_and_gives_nothing_to_a_random_predictor():
    probabilities, labels = scored_rows([0.9, 0.9, 0.5], confidence=[0.9, 0.7, 0.5])
    policy = make_policy("awe", 3)
    policy.observe(probabilities, labels, everyone(3))
    # MSE: 0.9 * 0.1^2 + 0.1 * 0.9^2 = 0.09; 0.9 * 0.3^2 + 0.1 * 0.7^2 = 0.13; 0.5^2.
    assert policy.member_scores() == pytest.approx([0.09, 0.13, 0.25])
    # MSE_r = 0.5 * 0.5^2 * 2 = 0.25: weights 0.16 : 0.12 : 0, where accuracy ties them.
    np.testing.assert_allclose(policy.weights(everyone(3)), [4 / 7, 3 / 7, 0.0])
    np.testing.assert_allclose(
        fed("accuracy", [0.9, 0.9, 0.5]).weights(everyone(3)), [0.5, 0.5, 0.0]
    )


def test_awe_gives_nothing_to_a_member_that_only_learned_the_class_prior():
    probabilities, labels = scored_rows([0.9, 0.9], positive_rate=0.8)
    probabilities[:, 1] = 0.8  # MSE 0.8 * 0.2^2 + 0.2 * 0.8^2 = 0.16 = MSE_r
    policy = make_policy("awe", 2)
    policy.observe(probabilities, labels, everyone(2))
    assert policy.member_scores()[1] == pytest.approx(0.16)
    np.testing.assert_allclose(policy.weights(everyone(2)), [1.0, 0.0])


# --- rules every policy shares -------------------------------------------------------------


@pytest.mark.parametrize("name", WEIGHING)
def test_at_or_below_chance_gets_zero(name):
    np.testing.assert_allclose(fed(name, [0.8, 0.5, 0.3]).weights(everyone(3)), [1, 0, 0])
    all_below = fed(name, [0.5, 0.4, 0.3]).weights(np.array([True, True, False]))
    np.testing.assert_allclose(all_below, [0.5, 0.5, 0.0])


@pytest.mark.parametrize("name", WEIGHING)
def test_an_edge_over_chance_within_sampling_error_counts_as_chance(name):
    def weights(accuracies, confidence):
        policy = make_policy(name, 2)
        policy.observe(*scored_rows(accuracies, 2000, confidence=confidence), everyone(2))
        return policy.weights(everyone(2))

    # 2,000 rows at chance 0.5: one standard error of accuracy is 1.1 points. A
    # pure-noise member (answers near 0.5) is two points above chance in a lucky window;
    # it must not take all the weight from a good member that is below chance in the same
    # window (as after the good one's concept switched): nobody clearly above, uniform.
    np.testing.assert_allclose(weights([0.52, 0.45], [0.52, 0.9]), [0.5, 0.5])
    # Clearly above chance still counts, beside a member at chance. (0.6 sure where 60%
    # right: AWE scores calibration, and a 90%-sure member right 60% of the time is worse
    # than random in squared error.)
    np.testing.assert_allclose(weights([0.6, 0.5], [0.6, 0.52]), [1.0, 0.0])


def test_floor_and_cap_hold_exactly_and_the_free_members_share_the_rest_by_gain():
    policy = fed("accuracy", [0.95, 0.9, 0.6, 0.56, 0.4], floor=0.05, cap=0.4)
    # gains 0.45, 0.4, 0.1, 0.06, 0: two capped at 0.4, the last 0.2 split 10 : 6.
    np.testing.assert_allclose(
        policy.weights(everyone(5)), [0.4, 0.4, 0.2 * 10 / 16, 0.2 * 6 / 16, 0.0], atol=1e-12
    )
    floored = fed("accuracy", [0.95, 0.9, 0.56, 0.4], floor=0.1)
    np.testing.assert_allclose(
        floored.weights(everyone(4)), [0.9 * 45 / 85, 0.9 * 40 / 85, 0.1, 0.0], atol=1e-12
    )


@pytest.mark.parametrize("seed", range(12))
def test_floor_and_cap_hold_for_random_settings(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    floor = float(rng.uniform(0, 1 / n))
    cap = float(rng.uniform(max(floor, 1 / n), 1.0)) + 1e-9
    accuracies = np.round(rng.uniform(0.3, 1.0, n), 3).tolist()
    eligible = rng.random(n) < 0.8
    eligible[int(rng.integers(n))] = True
    policy = fed("accuracy", accuracies, floor=floor, cap=min(cap, 1.0))
    w = policy.weights(eligible)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(w[~eligible] == 0.0)
    gains = np.array(accuracies) - 0.5
    # Above chance by more than its standard error allows: 1,000 rows at chance 0.5.
    positive = eligible & (gains > SIGNIFICANCE_Z * math.sqrt(0.25 / 1000))
    assert np.all(w[eligible & ~positive] == 0.0) or not positive.any()
    if positive.any():
        k = int(positive.sum())
        lo, hi = min(floor, 1 / k), max(policy.cap, 1 / k)
        assert np.all(w[positive] >= lo - 1e-12) and np.all(w[positive] <= hi + 1e-12)
        free = positive & (w > lo + 1e-9) & (w < hi - 1e-9)
        if free.sum() > 1:
            per_gain = w[free] / gains[free]
            np.testing.assert_allclose(per_gain, per_gain[0], rtol=1e-9)


def test_cap_yields_when_too_few_members_are_above_chance():
    one = fed("accuracy", [0.9, 0.5, 0.4], cap=0.5)
    np.testing.assert_allclose(one.weights(everyone(3)), [1.0, 0.0, 0.0])
    two = fed("accuracy", [0.9, 0.6, 0.4, 0.5], cap=0.3)
    np.testing.assert_allclose(two.weights(everyone(4)), [0.5, 0.5, 0.0, 0.0])


@pytest.mark.parametrize(
    ("name", "params"), [("softmax", {"temperature": 1e-4}), ("hedge", {"eta": 50.0})]
)
def test_exponential_policies_keep_the_floor_where_exp_underflows(name, params):
    w = fed(name, [0.95, 0.6, 0.4], rows=2000, floor=0.1, **params).weights(everyone(3))
    np.testing.assert_allclose(w, [0.9, 0.1, 0.0], atol=1e-12)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_member_with_too_few_rows_gets_the_average_share(name):
    policy = make_policy(name, 3, min_rows=50)
    policy.observe(*scored_rows([0.9, 0.7, 0.9], 100), scored=np.array([True, True, False]))
    policy.observe(*scored_rows([0.9, 0.7, 0.9], 30, seed=1), scored=everyone(3))
    w = policy.weights(everyone(3))
    assert w[2] == pytest.approx((w[0] + w[1]) / 2)
    assert w.sum() == pytest.approx(1.0)


def test_average_share_counts_members_below_chance_and_none_experienced_is_uniform():
    policy = make_policy("accuracy", 3, min_rows=50)
    policy.observe(*scored_rows([0.9, 0.4, 0.9], 100), scored=np.array([True, True, False]))
    w = policy.weights(everyone(3))
    np.testing.assert_allclose(w, [2 / 3, 0.0, 1 / 3])
    fresh = make_policy("accuracy", 3, min_rows=50)
    fresh.observe(*scored_rows([0.9, 0.4, 0.6], 49), scored=everyone(3))
    np.testing.assert_allclose(fresh.weights(np.array([True, True, False])), [0.5, 0.5, 0.0])


def test_unscored_columns_are_ignored():
    policy = make_policy("accuracy", 2, min_rows=10)
    probabilities, labels = scored_rows([0.9, 0.9], 100)
    probabilities[:, 1] = np.nan  # a member with no snapshot yet: garbage in its column
    policy.observe(probabilities, labels, scored=np.array([True, False]))
    assert policy.member_scores() == [pytest.approx(0.9), None]
    policy.observe(*scored_rows([0.9, 0.6], 20, seed=1), scored=everyone(2))
    assert policy.member_scores() == [pytest.approx(0.9), pytest.approx(0.6)]


def test_a_non_finite_scored_prediction_counts_as_wrong():
    policy = make_policy("awe", 2)
    probabilities, labels = scored_rows([0.9, 0.9], 200)
    probabilities[:, 1] = np.inf
    policy.observe(probabilities, labels, scored=everyone(2))
    assert policy.member_scores()[1] == 1.0
    np.testing.assert_allclose(policy.weights(everyone(2)), [1.0, 0.0])


def test_resize_grows_with_empty_windows_and_shrinks_from_the_end():
    policy = fed("accuracy", [0.9, 0.7], min_rows=10)
    policy.resize(3)
    assert policy.n_members == 3
    assert policy.member_scores()[2] is None
    w = policy.weights(everyone(3))
    assert w[2] == pytest.approx((w[0] + w[1]) / 2)
    policy.observe(*scored_rows([0.9, 0.7, 0.8], 50, seed=2), scored=everyone(3))
    assert policy.member_scores()[2] == pytest.approx(0.8)
    policy.resize(1)
    assert policy.member_scores() == [pytest.approx(0.9)]
    np.testing.assert_allclose(policy.weights(everyone(1)), [1.0])
    with pytest.raises(ConfigError, match=r"n_members \(0\)"):
        policy.resize(0)


def test_a_floor_too_high_after_growing_yields_to_an_even_split():
    policy = fed("accuracy", [0.9, 0.7], floor=0.4)
    policy.resize(4)
    policy.observe(*scored_rows([0.9, 0.7, 0.8, 0.7], 100, seed=3), scored=everyone(4))
    np.testing.assert_allclose(policy.weights(everyone(4)), [0.25] * 4)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_state_round_trips_through_npz_without_pickle(name, tmp_path):
    policy = make_policy(name, 3, window=300, floor=0.05, cap=0.8, min_rows=20)
    policy.observe(*scored_rows([0.9, 0.7, 0.6], 500), scored=np.array([True, True, False]))
    policy.observe(*scored_rows([0.8, 0.7, 0.65], 30, seed=1), scored=everyone(3))
    state = policy.state()
    assert all(isinstance(v, np.ndarray | int | float) for v in state.values())
    np.savez(tmp_path / "policy.npz", **state)
    with np.load(tmp_path / "policy.npz", allow_pickle=False) as loaded:
        restored = type(policy).from_state(loaded)
    assert repr(restored) == repr(policy)
    eligible = everyone(3)
    assert np.array_equal(restored.weights(eligible), policy.weights(eligible))
    assert restored.member_scores() == policy.member_scores()
    more = scored_rows([0.6, 0.9, 0.8], 120, seed=2)
    policy.observe(*more, scored=eligible)
    restored.observe(*more, scored=eligible)
    assert np.array_equal(restored.weights(eligible), policy.weights(eligible))


def test_from_state_rejects_a_state_that_does_not_fit():
    state = make_policy("hedge", 2, window=10, min_rows=5).state()
    with pytest.raises(ValueError, match=r"lacks \['eta'\]"):
        POLICIES["hedge"].from_state({k: v for k, v in state.items() if k != "eta"})
    with pytest.raises(ValueError, match="does not fit 2 members and window 10"):
        POLICIES["hedge"].from_state({**state, "rows": np.array([3, 11])})


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "words"),
    [
        ("best", {}, ["unknown weighting policy 'best'", "accuracy, awe, hedge, softmax, uniform"]),
        ("softmax", {"temperature": 0}, ["temperature (0)", "> 0"]),
        ("softmax", {"temperature": -0.5}, ["temperature (-0.5)"]),
        ("hedge", {"eta": 0.0}, ["eta (0.0)", "> 0"]),
        ("hedge", {"eta": float("nan")}, ["eta (nan)", "finite"]),
        ("accuracy", {"floor": 0.25}, ["floor (0.25)", "[0, 0.25)", "4 members"]),
        ("accuracy", {"floor": -0.1}, ["floor (-0.1)"]),
        ("accuracy", {"cap": 0.25}, ["cap (0.25)", "(0.25, 1]"]),
        ("accuracy", {"cap": 1.5}, ["cap (1.5)"]),
        ("awe", {"floor": 0.2, "cap": 0.15}, ["floor (0.2)", "cap (0.15)"]),
        ("accuracy", {"temperature": 0.1}, ["'accuracy'", "temperature", "window, floor"]),
        ("softmax", {"eta": 1.0}, ["'softmax'", "eta", "min_rows, temperature"]),
        ("uniform", {"window": 0}, ["window (0)", "integer >= 1"]),
        ("uniform", {"window": 2.5}, ["window (2.5)", "integer"]),
        ("hedge", {"window": 100, "min_rows": 200}, ["min_rows (200)", "window (100)"]),
        ("awe", {"floor": "a lot"}, ["floor ('a lot')", "number"]),
    ],
)
def test_make_policy_rejects_bad_settings_repeating_the_values(name, params, words):
    with pytest.raises(ConfigError) as caught:
        make_policy(name, 4, **params)
    for word in words:
        assert word in str(caught.value)


def test_member_count_bounds():
    with pytest.raises(ConfigError, match=r"n_members \(0\)"):
        make_policy("accuracy", 0)
    single = make_policy("accuracy", 1)
    np.testing.assert_allclose(single.weights(everyone(1)), [1.0])
    with pytest.raises(ConfigError, match=r"cap \(0.5\) must be 1 for a single member"):
        make_policy("accuracy", 1, cap=0.5)


def test_observe_and_weights_check_shapes():
    policy = make_policy("accuracy", 2)
    with pytest.raises(ValueError, match=r"shape \(rows, 2\), got \(5, 3\)"):
        policy.observe(np.zeros((5, 3)), np.zeros(5), everyone(2))
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        policy.observe(np.zeros((5, 2)), np.zeros(4), everyone(2))
    with pytest.raises(ValueError, match="scored"):
        policy.observe(np.zeros((5, 2)), np.zeros(5), everyone(3))
    with pytest.raises(ValueError, match="eligible"):
        policy.weights(everyone(3))


# --- the contract every policy keeps -------------------------------------------------------


def contract_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probabilities, labels = scored_rows([0.9, 0.75, 0.5, 0.3], 600, seed=seed)
    scored = np.array([True, True, True, False])
    for array in (probabilities, labels, scored):
        array.flags.writeable = False  # a policy that writes into its input fails here
    return probabilities, labels, scored


ELIGIBLE = [
    np.array([True, True, True, True]),
    np.array([True, False, True, False]),
    np.array([False, False, False, True]),
    np.array([False, False, False, False]),
]


@pytest.mark.parametrize("name", sorted(POLICIES))
class TestPolicyContract:
    def policy(self, name: str) -> WeightingPolicy:
        policy = make_policy(name, 4, window=500, min_rows=20, floor=0.02, cap=0.9)
        policy.observe(*contract_data())
        return policy

    def test_inputs_are_not_mutated(self, name):
        probabilities, labels, scored = contract_data()
        before = (probabilities.copy(), labels.copy(), scored.copy())
        policy = make_policy(name, 4)
        policy.observe(probabilities, labels, scored)
        eligible = ELIGIBLE[1].copy()
        eligible.flags.writeable = False
        policy.weights(eligible)
        for array, copy in zip((probabilities, labels, scored), before, strict=True):
            assert np.array_equal(array, copy)

    def test_pickle_round_trip(self, name):
        policy = self.policy(name)
        restored = pickle.loads(pickle.dumps(policy))
        for eligible in ELIGIBLE:
            assert np.array_equal(restored.weights(eligible), policy.weights(eligible))
        assert restored.member_scores() == policy.member_scores()

    def test_deterministic(self, name):
        first, second = self.policy(name), self.policy(name)
        for eligible in ELIGIBLE:
            assert np.array_equal(first.weights(eligible), second.weights(eligible))
            assert np.array_equal(first.weights(eligible), first.weights(eligible))

    def test_weights_are_a_distribution_over_the_eligible(self, name):
        policy = self.policy(name)
        for eligible in ELIGIBLE:
            w = policy.weights(eligible)
            assert w.shape == (4,) and np.all(np.isfinite(w)) and np.all(w >= 0.0)
            assert np.all(w[~eligible] == 0.0)
            assert w.sum() == pytest.approx(1.0 if eligible.any() else 0.0, abs=1e-12)

    def test_member_scores_one_per_member_none_without_rows(self, name):
        scores = self.policy(name).member_scores()
        assert len(scores) == 4 and scores[3] is None
        assert all(isinstance(s, float) and math.isfinite(s) for s in scores[:3])
