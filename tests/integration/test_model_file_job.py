"""A job whose members are a user's `.keras` file: members and the Serve replica each load
it (in Keras safe mode), train from its weights and answer over HTTP.

Its own module: the end-to-end module keeps a job running for all its tests, and two jobs
cannot share one Ray (one coordinator name, one Serve application).
"""

from __future__ import annotations

import pytest
import requests

from pipelines.config import JobConfig
from pipelines.job import Job
from tests.helpers import free_port
from tests.integration.test_end_to_end import FEATURES, ROW

pytestmark = pytest.mark.integration


def test_a_job_trains_and_serves_a_model_from_a_keras_file(ray_local, tmp_path):
    """Members and the Serve replica each load the user's file (in Keras safe mode)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(len(FEATURES),))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    path = tmp_path / "member.keras"
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden)).save(path)
    config = JobConfig(
        source="synthetic://hyperplane?drift_at=none",  # one concept: accuracy says it learned
        members=2,
        rows=60_000,
        port=free_port(),
        report=tmp_path / "report",
        progress=False,
        model="file",
        model_file=str(path),
    )
    job = Job(config)
    job.start()
    try:
        reply = requests.post(f"{job.url}/predict", json={"rows": [ROW]}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert 0.0 <= reply.json()["predictions"][0] <= 1.0
        report = job.wait(poll_s=0.3)
        assert report["rows_trained"] == 60_000
        accuracy = report["ensemble"]["prequential_accuracy"]
        print(f"file model job: prequential accuracy {accuracy:.3f}")
        assert accuracy > 0.8
    finally:
        job.shutdown()
