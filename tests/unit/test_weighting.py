import numpy as np
import pytest

from actors.errors import ConfigError
from actors.weighting import RecentAccuracy, mixing_weights


def test_weights_proportional_to_gain_over_chance():
    w = mixing_weights([0.9, 0.7, 0.5], chance=0.5)
    np.testing.assert_allclose(w, [0.4 / 0.6, 0.2 / 0.6, 0.0])


def test_at_or_below_chance_gets_zero_and_all_below_is_uniform():
    assert mixing_weights([0.8, 0.3], chance=0.5)[1] == 0.0
    np.testing.assert_allclose(mixing_weights([0.4, 0.5], chance=0.5), [0.5, 0.5])


def test_unscored_member_gets_the_average_share():
    w = mixing_weights([0.9, None, 0.7], chance=0.5)
    assert w[1] == pytest.approx(w[0] / 2 + w[2] / 2)
    np.testing.assert_allclose(mixing_weights([None, None], chance=0.5), [0.5, 0.5])


def test_floor_and_uniform_policy():
    w = mixing_weights([0.95, 0.55, 0.4], chance=0.5, floor=0.2)
    assert w[1] >= 0.2 * 0.99 and w[2] == 0.0 and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(mixing_weights([0.9, 0.1], chance=0.5, policy="uniform"), [0.5, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"policy": "best"}, "unknown weighting policy"), ({"floor": 0.6}, "floor")],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        mixing_weights([0.8, 0.7], chance=0.5, **kwargs)


def test_recent_accuracy_window_and_cumulative():
    recent = RecentAccuracy(4)
    assert recent.value() is None
    recent.add(np.array([True, True, True, True]))
    recent.add(np.array([False, False]))
    assert recent.value() == 0.5
    assert recent.cumulative() == pytest.approx(4 / 6)
    with pytest.raises(ConfigError):
        RecentAccuracy(0)
