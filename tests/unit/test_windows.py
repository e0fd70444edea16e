import numpy as np
import pytest

from actors.windows import SlidingWindows, windows_of


@pytest.mark.parametrize("cuts", [[100], [1, 1, 1, 97], [3, 50, 2, 45], [7] * 14 + [2]])
def test_no_window_is_lost_or_changed_at_a_batch_seam(cuts):
    rng = np.random.default_rng(0)
    rows = rng.random((100, 2), dtype=np.float32)
    labels = np.arange(100, dtype=np.float32)
    expected = windows_of(rows, 5)
    windows = SlidingWindows(5, 2)
    got_x, got_y, start = [], [], 0
    for size in cuts:
        x, y = windows.push(rows[start : start + size], labels[start : start + size])
        got_x.append(x)
        got_y.append(y)
        start += size
    np.testing.assert_array_equal(np.concatenate(got_x), expected)
    # The window ending at row t carries row t's label; the first 4 rows are context.
    np.testing.assert_array_equal(np.concatenate(got_y), labels[4:])
    assert windows.warmup_rows == 4


def test_windows_are_consecutive_rows_in_order():
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    windows = windows_of(rows, 3)
    assert windows.shape == (4, 3, 2)
    np.testing.assert_array_equal(windows[1], rows[1:4])
    assert windows_of(rows[:2], 3).shape == (0, 3, 2)
