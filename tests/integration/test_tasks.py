"""Regression with a sequence model and multiclass classification, end to end over HTTP.

Two short 2-member jobs on the module's local Ray, one after the other (a job owns the
coordinator's name and the Serve app while it runs, so each finishes, answers the
module's requests and shuts down inside its fixture):

* regression: a Conv1D over windows of 16 rows forecasts ``synthetic://periodic``'s next
  value. A request's rows are one series, so 40 rows get 40 - 16 + 1 forecasts.
* multiclass: an MLP on a Parquet file whose 3 classes are cut from a linear score of 4
  features (thresholds at the score's tertiles, no label noise). Stated level: at least
  90% of a held-out sample (rows the job never saw) classified right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from pipelines.config import JobConfig
from pipelines.job import Job
from pipelines.sources.base import SourceSpec
from pipelines.sources.synthetic import open_synthetic_source
from tests.helpers import free_port

pytestmark = pytest.mark.integration

SERIES_ROWS = 20_000
INPUT_WINDOW = 16
PERIODIC = f"synthetic://periodic?rows={SERIES_ROWS}&drift_at=none&noise=0.05"
CLASS_ROWS = 30_000
CLASS_FEATURES = ["x0", "x1", "x2", "x3"]
MIN_HELD_OUT_ACCURACY = 0.90


def _finished_job(tmp_path: Path, source: str, ask, **settings) -> tuple[dict, object]:
    """Run a 2-member job to the end, then `ask(url)` while it still serves; shut down."""
    config = JobConfig(
        source=source,
        members=2,
        port=free_port(),
        report=tmp_path,
        progress=False,
        seed=3,
        **settings,
    )
    with Job(config) as job:
        job.start()
        report = job.wait(poll_s=0.3)
        answers = ask(job.url)
    return report, answers


def _predict(url: str, rows: list[dict], **options) -> dict:
    reply = requests.post(f"{url}/predict", json={"rows": rows, **options}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


# --- regression with a sequence model ---------------------------------------------------


def _series_rows(n: int) -> tuple[list[dict], np.ndarray]:
    """The last `n` rows of partition 0 of the stream (JSON rows) and their next values."""
    source = open_synthetic_source(SourceSpec(PERIODIC, partitions=2))
    read = source.open(0, SERIES_ROWS // 2 - n).read_batch(n)
    assert read is not None and read.batch.num_rows == n
    part = read.batch
    values = part.column("value").to_numpy()
    return [{"value": float(v)} for v in values], part.column("next_value").to_numpy()


@pytest.fixture(scope="module")
def forecasting(ray_local, tmp_path_factory):
    rows, targets = _series_rows(40)

    def ask(url: str) -> dict:
        too_few = requests.post(
            f"{url}/predict", json={"rows": rows[: INPUT_WINDOW - 1]}, timeout=30
        )
        with_confidence = requests.post(
            f"{url}/predict", json={"rows": rows, "min_confidence": 0.9}, timeout=30
        )
        return {
            "plain": _predict(url, rows),
            "explained": _predict(url, rows, explain=True),
            "too_few": (too_few.status_code, too_few.json()),
            "with_confidence": (with_confidence.status_code, with_confidence.json()),
        }

    report, answers = _finished_job(
        tmp_path_factory.mktemp("forecasting"),
        PERIODIC,
        ask,
        task="regression",
        model="conv1d",
        input_window=INPUT_WINDOW,
        hidden=(32,),
        learning_rate=0.005,
        batch_size=64,
    )
    return report, answers, targets


def test_regression_rows_reconcile_with_context_rows(forecasting):
    report, _, _ = forecasting
    assert report["rows_seen"] == SERIES_ROWS
    # Each partition's first window - 1 rows are context for its first window only.
    assert report["rows_context"] == 2 * (INPUT_WINDOW - 1)
    assert (
        report["rows_trained"] + report["dead_letter"] + report["rows_context"]
        == report["rows_seen"]
    )


def test_a_series_of_40_rows_gets_one_forecast_per_window(forecasting):
    _, answers, targets = forecasting
    answer = answers["plain"]
    predictions = np.array(answer["predictions"], dtype=float)
    assert predictions.shape == (40 - INPUT_WINDOW + 1,)
    assert np.isfinite(predictions).all()
    assert answer["window"] == INPUT_WINDOW
    assert "probabilities" not in answer
    # Forecast i is for the window ending at row i + window - 1: its target is that
    # row's next value. Better than "next = current" (persistence) by a margin.
    rmse = float(np.sqrt(np.mean((predictions - targets[INPUT_WINDOW - 1 :]) ** 2)))
    values = np.array([r["value"] for r in _series_rows(40)[0]])[INPUT_WINDOW - 1 :]
    persistence = float(np.sqrt(np.mean((values - targets[INPUT_WINDOW - 1 :]) ** 2)))
    print(f"forecast RMSE {rmse:.4f}, persistence {persistence:.4f}")
    assert rmse < 0.7 * persistence, (rmse, persistence)


def test_regression_explain_and_refusals(forecasting):
    _, answers, _ = forecasting
    explained = answers["explained"]
    weights = explained["weights"]
    assert set(weights) == {"0", "1"} and sum(weights.values()) == pytest.approx(1, abs=1e-5)
    for prediction, members in zip(explained["predictions"], explained["members"], strict=True):
        mixed = sum(weights[m] * value for m, value in members.items())
        assert mixed == pytest.approx(prediction, rel=1e-4, abs=1e-5)
    status, body = answers["too_few"]
    assert status == 400 and f"at least {INPUT_WINDOW} rows" in body["error"]
    status, body = answers["with_confidence"]
    assert status == 400 and "min_confidence applies to classification" in body["error"]


# --- multiclass ----------------------------------------------------------------------------


def _classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 4 features and a class 0..2 cut from a fixed linear score at its tertiles."""
    x = np.random.default_rng(seed).normal(size=(n, len(CLASS_FEATURES))).astype(np.float32)
    score = x @ np.array([1.0, -0.8, 0.6, 0.3], np.float32)
    # The score is normal with std ~1.45: its tertiles are about +-0.43 * 1.45.
    return x, np.digitize(score, [-0.625, 0.625]).astype(np.int64)


@pytest.fixture(scope="module")
def classifying(ray_local, tmp_path_factory):
    data = tmp_path_factory.mktemp("multiclass-data")
    x, y = _classes(CLASS_ROWS, seed=1)
    table = pa.table({**{f: x[:, j] for j, f in enumerate(CLASS_FEATURES)}, "label": y})
    path = data / "classes.parquet"
    pq.write_table(table, path, row_group_size=5_000)  # row groups are split over members
    held_x, held_y = _classes(2_000, seed=2)
    held_rows = [dict(zip(CLASS_FEATURES, map(float, row), strict=True)) for row in held_x]

    def ask(url: str) -> dict:
        return {
            "held_out": _predict(url, held_rows),
            "explained": _predict(url, held_rows[:20], explain=True, min_confidence=0.8),
        }

    source = f"{path}?label=label&features={','.join(CLASS_FEATURES)}"
    report, answers = _finished_job(
        tmp_path_factory.mktemp("multiclass"), source, ask, task="multiclass", n_classes=3
    )
    return report, answers, held_y


def test_multiclass_answers_class_probabilities_and_confidence(classifying):
    report, answers, held_y = classifying
    assert report["rows_trained"] + report["dead_letter"] == report["rows_seen"] == CLASS_ROWS
    answer = answers["held_out"]
    predictions = answer["predictions"]
    probabilities = np.array(answer["probabilities"])
    assert len(predictions) == len(held_y) and probabilities.shape == (len(held_y), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert predictions == probabilities.argmax(axis=1).tolist()
    np.testing.assert_allclose(answer["confidence"], probabilities.max(axis=1), atol=1e-6)
    accuracy = float(np.mean(np.array(predictions) == held_y))
    print(f"multiclass held-out accuracy {accuracy:.4f}")
    assert accuracy >= MIN_HELD_OUT_ACCURACY, accuracy


def test_multiclass_explain_and_abstain(classifying):
    _, answers, _ = classifying
    explained = answers["explained"]
    weights = explained["weights"]
    for i, members in enumerate(explained["members"]):
        mixed = sum(weights[m] * np.array(p) for m, p in members.items())
        np.testing.assert_allclose(mixed, explained["probabilities"][i], atol=1e-4)
        confident = explained["confidence"][i] >= 0.8
        expected = int(np.argmax(mixed)) if confident else "abstain"
        assert explained["predictions"][i] == expected
    assert 0 <= explained["coverage"] <= 1
