import numpy as np
import pytest

from actors.coordination import CoordinatorCore
from actors.errors import ConfigError
from actors.weighting import POLICIES
from pipelines.report import REQUIRED_ENSEMBLE_KEYS, REQUIRED_MEMBER_KEYS


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


# --- multiclass and regression ---------------------------------------------------------------


def _snapshots(core, members=(0, 1, 2)):
    for mid in members:
        core.mark_snapshot(mid)
    return core


def _class_probabilities(labels, accuracy, rng, classes=4, confidence=0.7):
    """(n, classes) probabilities whose argmax is right with chance `accuracy`."""
    n = labels.size
    right = rng.random(n) < accuracy
    chosen = np.where(right, labels, (labels + rng.integers(1, classes, n)) % classes)
    probabilities = np.full((n, classes), (1 - confidence) / (classes - 1))
    probabilities[np.arange(n), chosen.astype(int)] = confidence
    return probabilities


def test_multiclass_scores_by_argmax_and_weighs_the_better_member_more():
    rng = np.random.default_rng(3)
    core = _snapshots(_core(task="multiclass"))
    hits = np.zeros(3)
    for _ in range(20):
        labels = rng.integers(0, 4, 50).astype(np.float32)
        outputs = np.stack(
            [_class_probabilities(labels, a, rng) for a in (0.9, 0.6, 0.25)], axis=1
        ).astype(np.float32)
        hits += (outputs.argmax(axis=2) == labels[:, None]).sum(axis=0)
        core.record_scores(outputs, labels)
    weights = core.mixing_weights()
    assert weights[0] > weights[1] > weights[2] >= 0.0
    summary = core.summary()
    assert [m["eval_accuracy"] for m in summary["members"]] == pytest.approx(hits / 1000)
    assert summary["members"][0]["recent_accuracy"] > 0.85
    assert summary["ensemble"]["prequential_accuracy"] > 0.85
    assert summary["ensemble"]["chance"] == core.chance() < 0.35
    assert set(summary["policy"]["accuracy_by_policy"]) == set(POLICIES)
    assert "recent_error" not in summary["members"][0]


def test_multiclass_ensemble_argmaxes_the_weighted_mean_of_probabilities():
    core = _snapshots(_core(task="multiclass"), (0, 1))
    # Equal weights (too few rows for scores): mean [0.3, 0.425, 0.275] -> class 1,
    # though member 0 says class 0 and member 1 class 2.
    outputs = np.array([[[0.6, 0.4, 0.0], [0.0, 0.45, 0.55], [1.0, 0.0, 0.0]]])
    core.record_scores(outputs, np.array([1.0]))
    summary = core.summary()
    assert summary["ensemble"]["prequential_accuracy"] == 1.0
    assert summary["ensemble"]["equal_weight_accuracy"] == 1.0
    assert [m["recent_accuracy"] for m in summary["members"]] == [0.0, 0.0, None]


def test_multiclass_chance_is_the_majority_share():
    core = _core(task="multiclass")
    assert core.chance() is None
    core.mark_snapshot(0)
    core.record_scores(np.full((4, 3, 3), 1 / 3), np.array([2, 0, 2, 1]))
    assert core.chance() == 0.5


def _regression_batch(rng, noise=(0.1, 0.5, 3.0)):
    targets = rng.normal(2.0, 1.0, 50)
    predictions = targets[:, None] + rng.normal(size=(50, 3)) * np.array(noise)
    return predictions.astype(np.float32), targets


def test_regression_weights_lower_error_and_reports_rmse_and_skill():
    rng = np.random.default_rng(4)
    core = _snapshots(_core(task="regression", policy="awe"))
    squared, targets = [], []
    for _ in range(20):
        predictions, y = _regression_batch(rng)
        squared.append(np.square(predictions - y[:, None]))
        targets.append(y)
        core.record_scores(predictions, y)
    core.record_stats(0, {"recent_error": 0.12, "recent_accuracy": None})
    weights = core.mixing_weights()
    assert weights[0] > weights[1] > weights[2] == 0.0  # noise 3 is worse than the mean
    summary = core.summary()
    recent = np.concatenate(squared)[-500:]
    variance = float(np.var(np.concatenate(targets)[-500:]))
    for member, mse in zip(summary["members"], recent.mean(axis=0), strict=True):
        assert member["recent_accuracy"] is None and member["eval_accuracy"] is None
        assert member["recent_error"] == pytest.approx(np.sqrt(mse))
        assert member["recent_skill"] == pytest.approx(1 - mse / variance)
        assert member["eval_error"] == pytest.approx(
            np.sqrt(np.concatenate(squared).mean(axis=0)[member["id"]])
        )
    assert summary["members"][0]["own_recent_error"] == 0.12
    ensemble = summary["ensemble"]
    assert ensemble["prequential_accuracy"] is ensemble["recent_accuracy"] is None
    assert ensemble["best_member_accuracy"] is ensemble["equal_weight_accuracy"] is None
    assert ensemble["chance"] == 0.0 and ensemble["eval_rows"] == 1000
    assert ensemble["best_member_error"] == pytest.approx(summary["members"][0]["eval_error"])
    assert ensemble["prequential_error"] < ensemble["equal_weight_error"]
    # AWE is soft here (gains var - mse: about 0.99 and 0.75): between the two members.
    members = summary["members"]
    assert members[0]["recent_error"] < ensemble["recent_error"] < members[1]["recent_error"]
    assert summary["policy"]["score"] == "mse"
    by_policy = summary["policy"]["error_by_policy"]
    assert set(by_policy) == set(POLICIES) and "accuracy_by_policy" not in summary["policy"]
    assert by_policy["awe"] == ensemble["prequential_error"]
    assert by_policy["uniform"] == ensemble["equal_weight_error"]


def test_regression_history_carries_errors():
    rng = np.random.default_rng(5)
    core = _snapshots(_core(task="regression"))
    core.record_scores(*_regression_batch(rng))
    point = core.record_history(1.0)
    assert point["ensemble_accuracy"] is None and point["ensemble_error"] > 0.0
    assert point["equal_weight_error"] > 0.0
    assert point["members"]["0"]["accuracy"] is None and point["members"]["0"]["error"] > 0.0
    assert core.summary()["policy"]["score"] == "skill"


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_summary_has_the_keys_the_report_requires(task):
    core = _snapshots(_core(task=task))
    shape = (3, 3, 2) if task == "multiclass" else (3, 3)
    core.record_scores(np.full(shape, 0.5), np.array([0.0, 1.0, 1.0]))
    summary = core.summary()
    assert set(REQUIRED_ENSEMBLE_KEYS) <= set(summary["ensemble"])
    for member in summary["members"]:
        assert set(REQUIRED_MEMBER_KEYS) <= set(member)


@pytest.mark.parametrize(
    ("task", "shape", "words"),
    [
        ("binary", (4, 2), r"shape \(4, 3\), got \(4, 2\)"),
        ("multiclass", (4, 3), r"shape \(4, 3, classes\), got \(4, 3\)"),
        ("regression", (4, 3, 1), r"shape \(4, 3\), got \(4, 3, 1\)"),
        ("binary", (5, 3), r"4 labels .* got \(5, 3\)"),
    ],
)
def test_record_scores_checks_the_task_shape(task, shape, words):
    core = _snapshots(_core(task=task))
    with pytest.raises(ValueError, match=words):
        core.record_scores(np.zeros(shape), np.zeros(4))


def test_bad_multiclass_labels_are_rejected_before_anything_is_recorded():
    core = _snapshots(_core(task="multiclass"))
    with pytest.raises(ValueError, match="class indices"):
        core.record_scores(np.full((2, 3, 3), 1 / 3), np.array([0.0, 3.0]))
    assert all(core.members[mid].shared.total_rows == 0 for mid in core.member_ids)


def test_unknown_task_is_a_config_error():
    with pytest.raises(ConfigError, match=r"task \('ordinal'\)"):
        _core(task="ordinal")


def _scored_core(policy: str) -> CoordinatorCore:
    """A core with a noise member, after 1,000 shared rows (window 500)."""
    rng = np.random.default_rng(3)
    core = _core(policy=policy)
    for mid in (0, 1, 2):
        core.mark_snapshot(mid)
        core.record_stats(mid, {"rows": 1000 * (mid + 1), "recent_accuracy": 0.9, "lag": mid})
    for i in range(20):
        labels = (rng.random(50) > 0.4).astype(np.float32)
        good = np.where(labels > 0.5, 0.9, 0.1)
        noise = rng.random(50)
        outputs = np.stack([good, 1 - noise * 0.5, noise], axis=1)
        core.record_scores(outputs, labels, partitions=np.full(50, i % 3))
    return core


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_state_survives_a_checkpoint_and_gives_the_same_weights_and_figures(policy, tmp_path):
    from pipelines.checkpoint import CheckpointStore

    before = _scored_core(policy)
    arrays, meta = before.state()
    store = CheckpointStore(str(tmp_path))
    store.save("coordinator", arrays, {"core": meta})  # npz + JSON: what a restart reads
    loaded = store.latest("coordinator")
    after = _core(policy=policy)
    after.restore(loaded.arrays, loaded.meta["core"])
    # A restarted coordinator holds no snapshot until members publish again...
    assert not any(record.has_snapshot for record in after.members.values())
    np.testing.assert_array_equal(after.mixing_weights(), np.zeros(3))
    for mid in (0, 1, 2):
        after.mark_snapshot(mid)
    # ... and then weighs exactly as before, with the same figures and counters.
    np.testing.assert_allclose(after.mixing_weights(), before.mixing_weights())
    assert before.partition_mixing().keys() == after.partition_mixing().keys()
    for partition in (0, 1, 2):
        np.testing.assert_allclose(
            after.mixing_weights(partition), before.mixing_weights(partition)
        )
    assert after.summary() == before.summary()
    assert after.chance() == before.chance()
    # Both go on identically from there.
    labels = np.array([1, 0, 1, 1], np.float32)
    outputs = np.array([[0.9, 0.2, 0.4]] * 4, np.float32)
    before.record_scores(outputs, labels)
    after.record_scores(outputs, labels)
    np.testing.assert_allclose(after.mixing_weights(), before.mixing_weights())


def test_state_for_other_members_or_policy_is_refused_and_changes_nothing():
    arrays, meta = _scored_core("hedge").state()
    other_members = CoordinatorCore({0: [0, 1], 1: [2]}, window=500, policy="hedge")
    with pytest.raises(ValueError, match="members"):
        other_members.restore(arrays, meta)
    other_policy = _core(policy="accuracy")
    with pytest.raises(ValueError, match="policy 'hedge'"):
        other_policy.restore(arrays, meta)
    assert other_policy.ensemble.total_rows == 0
    truncated = {k: v for k, v in arrays.items() if not k.startswith("tracker.ensemble")}
    fresh = _core(policy="hedge")
    with pytest.raises(ValueError, match="ensemble"):
        fresh.restore(truncated, meta)
    assert fresh.members[0].shared.total_rows == 0


def test_one_large_sample_cannot_flood_the_shared_windows():
    """A member's first sample after the coordinator was away comes from its partitions
    only; however large, it fills at most its share (window / members) of each window."""
    core = _core()  # window 500, 3 members: share 166
    for mid in (0, 1, 2):
        core.mark_snapshot(mid)
    labels = np.tile([0.0, 1.0], 250)
    right = np.stack([labels, labels, 1 - labels], axis=1)  # members 0, 1 right; 2 wrong
    core.record_scores(right, labels)
    assert core.sample_share == 166
    assert core.members[0].shared.rows == 166
    noise_labels = np.tile([1.0, 0.0], 5_000)  # everyone is wrong on these rows
    core.record_scores(np.stack([1 - noise_labels] * 3, axis=1), noise_labels)
    assert core.members[0].shared.rows == 332  # the newest 166 of the 10,000
    # Half its window is still the rows it got right (uncapped, all 500 would be wrong).
    assert core.members[0].shared.value() == pytest.approx(0.5)


def test_the_history_stays_bounded_and_spans_the_whole_run():
    core = CoordinatorCore({0: [0], 1: [1]}, window=100, max_history=10)
    for second in range(1_000):
        core.record_history(float(second))
        assert len(core.history) <= 10
    elapsed = [point["elapsed_s"] for point in core.history]
    assert elapsed[0] == 0.0 and elapsed[-1] == 999.0  # the first and the newest stay
    assert elapsed == sorted(elapsed)
    assert core.history_thinned >= 6  # halved each time it overflowed (1000 / 10 ~ 2^7)
