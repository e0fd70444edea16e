"""River's classic online learners, run test-then-train on exactly the rows the ensemble saw.

River is a benchmark-only dependency (the ``bench`` extra), imported here and nowhere in
the runtime; without it the accuracy bench says how to install it and exits.

The learners are River's strongest standard choices for each task, with their defaults
(no per-stream tuning, as with this project's defaults):

=============  ==================================  ====================================
key            classification                      regression
=============  ==================================  ====================================
river_arf      forest.ARFClassifier                forest.ARFRegressor
river_hat      tree.HoeffdingAdaptiveTreeClass.    tree.HoeffdingAdaptiveTreeRegressor
river_logreg   StandardScaler | LogisticRegression StandardScaler | LinearRegression
=============  ==================================  ====================================

Multiclass logistic regression is River's ``OneVsRestClassifier`` around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from actors.errors import ConfigError
from pipelines.bench.accuracy_streams import RIVER_LEARNERS

__all__ = ["RIVER_LEARNERS", "run_river"]


def _require_river() -> None:
    try:
        import river  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "bench accuracy compares against River, a benchmark-only extra: "
            "pip install -e '.[bench]'"
        ) from error


def make_learner(name: str, task: str, seed: int) -> Any:
    """A fresh River learner by harness key for `task` (binary, multiclass, regression)."""
    _require_river()
    from river import forest, linear_model, multiclass, preprocessing, tree

    regression = task == "regression"
    factories: dict[str, Callable[[], Any]] = {
        "river_arf": (
            (lambda: forest.ARFRegressor(seed=seed))
            if regression
            else (lambda: forest.ARFClassifier(seed=seed))
        ),
        "river_hat": (
            (lambda: tree.HoeffdingAdaptiveTreeRegressor(seed=seed))
            if regression
            else (lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=seed))
        ),
        "river_logreg": (
            (lambda: preprocessing.StandardScaler() | linear_model.LinearRegression())
            if regression
            else (
                (
                    lambda: (
                        preprocessing.StandardScaler()
                        | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
                    )
                )
                if task == "multiclass"
                else (lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression())
            )
        ),
    }
    if name not in factories:
        raise ConfigError(f"unknown River learner {name!r}; expected one of {RIVER_LEARNERS}")
    return factories[name]()


def run_river(
    name: str, x: np.ndarray, y: np.ndarray, task: str, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Test-then-train `name` on rows `x` with labels `y`, one row at a time, in order.

    Returns:
        Per-row scores (1/0 hits, or squared errors for regression) and rows per second.
        The clock covers `predict_one` and `learn_one` only: the rows are turned into
        River's feature dicts beforehand, as a River user's rows already are.
    """
    learner = make_learner(name, task, seed)
    names = [f"f{i}" for i in range(x.shape[1])]
    rows = [dict(zip(names, values, strict=True)) for values in x.astype(float).tolist()]
    regression = task == "regression"
    labels: list[Any] = (
        y.astype(float).tolist() if regression else [int(label) for label in y.tolist()]
    )
    scores = np.empty(len(rows), np.float64)
    started = time.perf_counter()
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        predicted = learner.predict_one(row)
        if regression:
            scores[i] = (float(predicted or 0.0) - label) ** 2
        else:
            scores[i] = predicted == label
        learner.learn_one(row, label)
    elapsed = time.perf_counter() - started
    return scores, len(rows) / elapsed if elapsed > 0 else float("inf")
