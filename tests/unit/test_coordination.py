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


def test_own_accuracy_is_used_until_enough_shared_rows():
    core = _core()
    for mid in (0, 1):
        core.mark_snapshot(mid)
    core.record_stats(0, {"rows": 100, "recent_accuracy": 0.9})
    core.record_stats(1, {"rows": 100, "recent_accuracy": 0.6})
    weights = core.mixing_weights()
    assert weights[0] == pytest.approx(0.8) and weights[1] == pytest.approx(0.2)


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
