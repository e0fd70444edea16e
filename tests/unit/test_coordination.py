import numpy as np
import pytest

from actors.coordination import CoordinatorCore


def _core(**kwargs):
    return CoordinatorCore({0: [0], 1: [1], 2: [2]}, window=500, min_eval_rows=10, **kwargs)


def test_members_without_snapshot_get_no_weight_and_are_not_scored():
    core = _core()
    core.mark_snapshot(0)
    labels = np.array([1, 0, 1, 0], dtype=np.float32)
    probabilities = np.tile(labels[:, None], (1, 3)).astype(np.float32)
    core.record_scores(probabilities, labels)
    assert core.members[1].shared.rows == 0
    np.testing.assert_allclose(core.mixing_weights(), [1.0, 0.0, 0.0])


def test_noise_member_ends_with_lower_weight_on_the_shared_sample():
    rng = np.random.default_rng(0)
    core = _core()
    for mid in (0, 1, 2):
        core.mark_snapshot(mid)
    for _ in range(20):
        labels = (rng.random(50) > 0.5).astype(np.float32)
        good = np.where(labels > 0.5, 0.9, 0.1)
        flipped = rng.random(50) < 0.1
        good_member = np.where(flipped, 1 - good, good)
        noise_member = rng.random(50)
        core.record_scores(np.stack([good, good_member, noise_member], axis=1), labels)
    weights = core.mixing_weights()
    assert weights[2] < 0.2 * min(weights[0], weights[1])
    summary = core.summary()
    assert summary["ensemble"]["prequential_accuracy"] > 0.95
    assert summary["ensemble"]["eval_rows"] == 1000
    assert summary["ensemble"]["best_member_accuracy"] == 1.0


def test_members_share_equally_until_they_have_enough_shared_rows():
    core = _core()
    for mid in (0, 1):
        core.mark_snapshot(mid)
    labels = np.array([1, 0, 1, 0, 1], dtype=np.float32)
    good, bad = labels, 1 - labels
    core.record_scores(np.stack([good, bad, good], axis=1), labels)  # 5 rows < min_eval_rows=10
    np.testing.assert_allclose(core.mixing_weights(), [0.5, 0.5, 0.0])


@pytest.mark.parametrize("policy", ["accuracy", "softmax", "hedge", "awe"])
def test_the_configured_policy_sets_the_weights(policy):
    rng = np.random.default_rng(1)
    core = _core(policy=policy)
    for mid in (0, 1, 2):
        core.mark_snapshot(mid)
    for _ in range(10):
        labels = (rng.random(50) > 0.5).astype(np.float32)
        sharp = np.where(labels > 0.5, 0.95, 0.05)
        blurred = np.where(rng.random(50) < 0.2, 1 - sharp, sharp)
        core.record_scores(np.stack([sharp, blurred, rng.random(50)], axis=1), labels)
    weights = core.mixing_weights()
    assert core.summary()["policy"]["name"] == policy
    assert weights[0] > weights[1] > weights[2] >= 0.0
    assert weights.sum() == pytest.approx(1.0)


def test_chance_is_the_majority_rate():
    core = _core()
    core.mark_snapshot(0)
    labels = np.array([1, 1, 1, 0], dtype=np.float32)
    core.record_scores(np.full((4, 3), 0.7, np.float32), labels)
    assert core.chance() == 0.75


def test_history_points_have_the_plot_shape():
    core = _core()
    core.mark_snapshot(0)
    core.record_stats(0, {"rows": 256})
    point = core.record_history(1.5)
    assert point["rows"] == 256 and set(point["members"]) == {"0", "1", "2"}
    assert point["members"]["0"]["weight"] == 1.0


def test_rows_per_s_from_history_and_lag_in_summary():
    core = _core()
    assert core.rows_per_s() is None
    core.record_stats(0, {"rows": 0, "lag": 500})
    core.record_history(0.0)
    core.record_stats(0, {"rows": 1000, "lag": 100})
    core.record_history(2.0)
    core.record_stats(0, {"rows": 4000})
    core.record_history(7.0)
    assert core.rows_per_s(span_s=5.0) == pytest.approx(3000 / 5.0)
    assert core.rows_per_s(span_s=100.0) == pytest.approx(4000 / 7.0)
    summary = core.summary()
    assert summary["members"][0]["lag"] == 100 and summary["rows"] == 4000


def test_shadow_policies_score_the_same_rows():
    rng = np.random.default_rng(2)
    core = _core(policy="hedge")
    for mid in (0, 1, 2):
        core.mark_snapshot(mid)
    for _ in range(20):
        labels = (rng.random(50) > 0.5).astype(np.float32)
        good = np.where(labels > 0.5, 0.9, 0.1)
        wrong = 1 - good  # a confidently wrong member: uniform suffers, the others do not
        core.record_scores(np.stack([good, good, wrong], axis=1), labels)
    by_policy = core.summary()["policy"]["accuracy_by_policy"]
    assert set(by_policy) == {"uniform", "accuracy", "softmax", "hedge", "awe"}
    assert by_policy["hedge"] == core.summary()["ensemble"]["prequential_accuracy"]
    assert by_policy["uniform"] == core.summary()["ensemble"]["equal_weight_accuracy"]
    assert by_policy["awe"] > 0.95
