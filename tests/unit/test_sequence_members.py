"""An LSTM member and a Conv1D member learn a periodic series with drift.

Stream: ``synthetic://periodic``, 40,000 rows, noise std 0.05, the period changes from 48
to 20 rows (and the shape changes) halfway. Task: forecast the next value (regression)
from a window of the last 24 values. Stated error: after the drift, the member's recent
RMSE (its last 2,000 prequential forecasts) is at most 0.08 (the noise alone costs about
0.05) and less than half of the persistence forecast's ("next = current", 0.30 there).
"""

import numpy as np
import pytest

from actors.member_core import MemberCore
from actors.specs import MemberConfig, ModelSpec
from pipelines.sources.base import SourceSpec
from pipelines.sources.synthetic import open_synthetic_source

ROWS = 40_000
WINDOW = 24
MAX_RMSE = 0.08


@pytest.fixture(scope="module")
def source():
    return open_synthetic_source(
        SourceSpec(f"synthetic://periodic?rows={ROWS}&drift_at=0.5&noise=0.05", partitions=1)
    )


@pytest.fixture(scope="module")
def persistence_rmse(source):
    batch = source.open(0, ROWS - 2000).read_batch(2000).batch
    value, target = batch.column("value").to_numpy(), batch.column("next_value").to_numpy()
    return float(np.sqrt(np.mean(np.square(target - value))))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "conv1d"])
def test_sequence_member_forecasts_the_drifting_series(kind, source, persistence_rmse):
    config = MemberConfig(
        model=ModelSpec(
            kind=kind, window=WINDOW, task="regression", hidden=(32,), learning_rate=0.005
        ),
        batch_size=64,
        window=2000,
    )
    core = MemberCore(0, [source.open(0)], source.schema, config)
    while core.step() is not None:
        pass
    stats = core.stats()
    # Every row is accounted for: the first WINDOW - 1 are context for the first window.
    assert stats["rows"] + stats["rows_context"] + stats["dead_letter"] == ROWS
    assert stats["rows_context"] == WINDOW - 1
    assert stats["recent_error"] <= MAX_RMSE, stats
    assert stats["recent_error"] < 0.5 * persistence_rmse, (stats, persistence_rmse)
