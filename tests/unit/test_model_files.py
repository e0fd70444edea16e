"""Models from a user's `.keras` file: loaded in Keras safe mode, checked against the task.

A Lambda layer, a pickle and an HDF5 file are refused, and refusing one runs none of its
code (the pickle below would write a marker file if it were ever unpickled).
"""

from __future__ import annotations

import os
import pickle
import sys

import keras
import numpy as np
import pytest

from actors.errors import ModelError
from actors.learner import OnlineLearner
from actors.specs import ModelSpec
from pipelines.cli import main


def _save(model: keras.Model, path) -> str:
    model.save(str(path))
    return str(path)


def _binary_3(path) -> str:
    inputs = keras.Input(shape=(3,))
    hidden = keras.layers.Dense(8, activation="relu", name="body_dense")(inputs)
    return _save(keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden)), path)


class _WritesAMarker:
    """Unpickling this calls `open(marker, "w")`: the harmless stand-in for any code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_keras_file_trains_from_its_saved_weights(tmp_path):
    path = _binary_3(tmp_path / "member.keras")
    saved = keras.saving.load_model(path).get_layer("body_dense").get_weights()
    learner = OnlineLearner(3, ModelSpec(kind="file", path=path), seed=0)
    body = learner.model.layers[-1]
    np.testing.assert_array_equal(body.get_layer("body_dense").get_weights()[0], saved[0])
    x = np.random.default_rng(0).random((2_000, 3), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.float32)
    first = learner.learn_many(x[:500], y[:500]).scores.mean()
    for _ in range(20):
        learner.learn_many(x, y)
    last = learner.learn_many(x[-500:], y[-500:]).scores.mean()
    print(f"file model: test-then-train accuracy {first:.3f} at first, {last:.3f} after 40k rows")
    assert last > max(first, 0.9)


def test_a_lambda_layer_is_refused_in_safe_mode(tmp_path):
    inputs = keras.Input(shape=(3,))
    doubled = keras.layers.Lambda(lambda t: t * 2)(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(doubled)
    path = _save(keras.Model(inputs, outputs), tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match=r"refused in Keras safe mode: .*`Lambda` layer"):
        OnlineLearner(3, ModelSpec(kind="file", path=path), seed=0)


def test_a_pickle_named_keras_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.keras"
    path.write_bytes(pickle.dumps(_WritesAMarker(str(marker))))
    with pytest.raises(ModelError, match="not a Keras v3 archive"):
        OnlineLearner(3, ModelSpec(kind="file", path=str(path)), seed=0)
    assert not marker.exists()
    pickle.loads(path.read_bytes()).close()  # the payload is real: unpickled, it does run
    assert marker.exists()


@pytest.mark.parametrize("name", ["model.h5", "model.pkl", "model.pickle", None])
def test_only_keras_archives_are_accepted(name):
    with pytest.raises(ModelError, match="HDF5 and pickled models are refused"):
        ModelSpec(kind="file", path=name)


def test_a_file_that_does_not_fit_the_task_is_refused(tmp_path):
    path = _binary_3(tmp_path / "binary.keras")
    with pytest.raises(ModelError, match=r"a multiclass task needs \(None, 3\)"):
        OnlineLearner(3, ModelSpec(kind="file", path=path, task="multiclass", n_classes=3))
    with pytest.raises(ModelError, match=r"the stream needs \(None, 5\)"):
        OnlineLearner(5, ModelSpec(kind="file", path=path))
    with pytest.raises(ModelError, match="does not exist"):
        OnlineLearner(3, ModelSpec(kind="file", path=str(tmp_path / "missing.keras")))
    with pytest.raises(ModelError, match="only used with kind='file'"):
        ModelSpec(path=path)


def test_the_cli_refuses_a_lambda_file_in_one_line_before_starting_ray(tmp_path, capsys):
    inputs = keras.Input(shape=(10,))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Lambda(lambda t: -t)(inputs))
    path = _save(keras.Model(inputs, outputs), tmp_path / "lambda.keras")
    argv = ["run", "--source", "synthetic://sea", "--rows", "1000", "--model", "file"]
    with pytest.raises(SystemExit) as exited:
        sys.exit(main([*argv, "--model-file", path, "--report", str(tmp_path / "r")]))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused in Keras safe mode" in err[0], err
    assert not os.path.exists(tmp_path / "r" / "report.json")
