"""The Serve deployment's `/predict` for every task, and for sequence models, without Ray.

The deployment class runs in one event loop for the module, as a replica does (the
`@serve.batch` queue is made once per process and stays on the first loop that uses it);
its coordinator is a stand-in that hands out one snapshot of trained members, and
requests are Starlette requests. Answers must
equal the weighted mean of the members' own outputs on the request's rows (or windows),
with the overall mixing weights, or a named partition's own.
"""

from __future__ import annotations

import asyncio
import json
import re
import types

import numpy as np
import pytest
from ray import serve
from starlette.requests import Request

from actors.ensemble_model import EnsembleModel
from actors.serve_app import EnsembleServer, _Input
from actors.snapshot import EnsembleSnapshot, MemberSnapshot
from actors.specs import ModelSpec
from tests.unit.trained_members import model_inputs, own_outputs, random_rows, trained_learners

FEATURES = ["a", "b", "c"]
MIXING = np.array([0.25, 0.75], np.float32)
BINARY = ModelSpec(hidden=(8,))
MULTICLASS = ModelSpec(hidden=(8,), task="multiclass", n_classes=3)
REGRESSION_LSTM = ModelSpec(kind="lstm", window=4, units=4, hidden=(4,), task="regression")
BINARY_CONV1D = ModelSpec(kind="conv1d", window=5, filters=4, kernel_size=2, hidden=(4,))
# The job reads partitions 0-3; 1 and 3 have weights of their own (3's in float64: the
# re-mix is cast back to the model's dtype), 0 none yet, and 2's do not fit two members:
# both 0 and 2 are mixed with MIXING.
PARTITIONS = (0, 1, 2, 3)
PARTITION_MIXING: dict[int, np.ndarray] = {
    1: np.array([0.9, 0.1], np.float32),
    2: np.array([0.2, 0.3, 0.5], np.float32),
    3: np.array([0.4, 0.6], np.float64),
}


@pytest.fixture(autouse=True)
def _outside_a_replica(monkeypatch):
    # `@serve.batch` reads the replica's max_ongoing_requests only to log a warning.
    context = types.SimpleNamespace(
        _deployment_config=types.SimpleNamespace(max_ongoing_requests=256)
    )
    monkeypatch.setattr(serve, "get_replica_context", lambda: context)


class _Ready:
    """An awaitable that is already done (what awaiting an ObjectRef gives a replica)."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # makes this a generator: awaitable any number of times


class _Method:
    def __init__(self, function):
        self.function = function

    def remote(self, *args):
        return _Ready(self.function(*args))


class _Coordinator:
    """Serves one ensemble snapshot of `learners` (version 1), as the real actor would.

    Without `partitions` it is a snapshot from before per-partition mixing.
    """

    def __init__(self, learners, partitions=(), partition_mixing=None):
        members = [
            _Ready(MemberSnapshot(i, 1, 100, learner.get_weights()))
            for i, learner in enumerate(learners)
        ]
        self.snapshot = EnsembleSnapshot(
            1, (0, 1), tuple(members), MIXING, partitions, partition_mixing or {}
        )
        self.snapshot_if_newer = _Method(lambda version: self.snapshot if version < 1 else None)


@pytest.fixture(scope="module")
def replica_loop():
    loop = asyncio.new_event_loop()
    yield loop
    pending = asyncio.all_tasks(loop)  # the replicas' snapshot refreshers, the batch queue
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


class _Served:
    """A deployment replica over trained members, and the members themselves.

    Args:
        learners: members to serve (default: newly trained ones).
        snapshot: the snapshot's `partitions` and `partition_mixing`.
    """

    def __init__(self, spec: ModelSpec, loop: asyncio.AbstractEventLoop, learners=None, **snapshot):
        self.spec = spec
        self.loop = loop
        self.learners = learners or trained_learners(spec, len(FEATURES), len(MIXING))
        server_class = EnsembleServer.func_or_class  # type: ignore[attr-defined]
        self.server = server_class(_Coordinator(self.learners, **snapshot), FEATURES, spec)
        assert loop.run_until_complete(self.server.refresh()) == 1  # snapshot loaded

    def expected(self, rows: np.ndarray, mixing=MIXING) -> tuple[np.ndarray, np.ndarray]:
        """(mixed, per_member) from the members' own networks, mixed with `mixing`."""
        own = own_outputs(self.learners, model_inputs(self.spec, rows))
        return np.tensordot(mixing, own, axes=([0], [1])), own

    def post(self, *bodies: dict, query: str = "") -> list[tuple[int, dict]]:
        """POST every body to /predict concurrently; (status, JSON answer) of each."""

        async def one(body: dict):
            raw = json.dumps(body).encode()

            async def receive():
                return {"type": "http.request", "body": raw, "more_body": False}

            scope = {
                "type": "http",
                "method": "POST",
                "path": "/predict",
                "query_string": query.encode(),
                "headers": [(b"content-type", b"application/json")],
            }
            reply = await self.server(Request(scope, receive))
            return reply.status_code, json.loads(reply.body)

        async def all_of():
            return await asyncio.gather(*(one(body) for body in bodies))

        return self.loop.run_until_complete(all_of())


def _rows(n: int, seed: int = 5) -> np.ndarray:
    return random_rows(n, len(FEATURES), seed)


def _json_rows(rows: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(FEATURES, map(float, row), strict=True)) for row in rows]


@pytest.fixture(scope="module")
def binary(replica_loop):
    return _Served(BINARY, replica_loop)


@pytest.fixture(scope="module")
def multiclass(replica_loop):
    return _Served(MULTICLASS, replica_loop)


def _by_partition(served: _Served) -> _Served:
    """`served`'s members, in a snapshot with partitions and their own mixing weights."""
    return _Served(
        served.spec,
        served.loop,
        served.learners,
        partitions=PARTITIONS,
        partition_mixing=PARTITION_MIXING,
    )


@pytest.fixture(scope="module")
def binary_by_partition(binary):
    return _by_partition(binary)


@pytest.fixture(scope="module")
def multiclass_by_partition(multiclass):
    return _by_partition(multiclass)


@pytest.fixture(scope="module")
def regression_lstm(replica_loop):
    return _Served(REGRESSION_LSTM, replica_loop)


def test_binary_answers_keep_their_shape(binary):
    rows = _rows(6)
    [(status, answer)] = binary.post(
        {"rows": _json_rows(rows), "explain": True, "min_confidence": 0.6}
    )
    assert status == 200, answer
    mixed, own = binary.expected(rows)
    assert set(answer) == {
        "predictions",
        "probabilities",
        "weights_version",
        "coverage",
        "min_confidence",
        "weights",
        "members",
    }
    np.testing.assert_allclose(answer["probabilities"], mixed, atol=1e-5)
    confident = np.maximum(mixed, 1 - mixed) >= 0.6
    assert answer["predictions"] == [
        int(p > 0.5) if ok else "abstain" for p, ok in zip(mixed, confident, strict=True)
    ]
    assert answer["weights"] == {"0": 0.25, "1": 0.75}
    np.testing.assert_allclose([[m["0"], m["1"]] for m in answer["members"]], own, atol=1e-5)


def test_multiclass_answers_class_probabilities_and_confidence(multiclass):
    rows = _rows(8)
    [(status, answer), (_, explained)] = multiclass.post(
        {"rows": _json_rows(rows)},
        {"rows": _json_rows(rows), "explain": True, "min_confidence": 0.5},
    )
    assert status == 200, answer
    mixed, own = multiclass.expected(rows)
    assert set(answer) == {"predictions", "probabilities", "confidence", "weights_version"}
    assert answer["predictions"] == mixed.argmax(axis=1).tolist()
    np.testing.assert_allclose(answer["probabilities"], mixed, atol=1e-5)
    np.testing.assert_allclose(answer["confidence"], mixed.max(axis=1), atol=1e-5)
    # min_confidence 0.5 < 1/2 is fine for 3 classes; unconfident rows abstain.
    confident = mixed.max(axis=1) >= 0.5
    assert explained["predictions"] == [
        int(c) if ok else "abstain" for c, ok in zip(mixed.argmax(axis=1), confident, strict=True)
    ]
    assert explained["coverage"] == pytest.approx(confident.mean(), abs=1e-6)
    members = np.array([[m["0"], m["1"]] for m in explained["members"]])  # (n, M, classes)
    np.testing.assert_allclose(members, own, atol=1e-5)


def test_sequence_regression_answers_one_value_per_window_of_each_request(regression_lstm):
    served = regression_lstm
    window = REGRESSION_LSTM.window
    series = [_rows(n, seed=n) for n in (4, 9, 6, 12)]
    answers = served.post(*({"rows": _json_rows(rows), "explain": True} for rows in series))
    for rows, (status, answer) in zip(series, answers, strict=True):
        assert status == 200, answer
        mixed, own = served.expected(rows)
        assert len(answer["predictions"]) == len(rows) - window + 1
        assert answer["window"] == window
        # Each request's windows are its own, even when requests share a model call.
        np.testing.assert_allclose(answer["predictions"], mixed, rtol=1e-5, atol=1e-6)
        members = [[m["0"], m["1"]] for m in answer["members"]]
        np.testing.assert_allclose(members, own, rtol=1e-5, atol=1e-6)
        assert "probabilities" not in answer and "confidence" not in answer


@pytest.fixture
def model_calls(monkeypatch) -> list[int]:
    """Inputs per ensemble model call, recorded while the test runs."""
    calls: list[int] = []
    predict = EnsembleModel.predict

    def spy(self, x, mixing):
        calls.append(len(x))
        return predict(self, x, mixing)

    monkeypatch.setattr(EnsembleModel, "predict", spy)
    return calls


def test_concurrent_sequence_requests_share_a_model_call_but_not_windows(replica_loop, model_calls):
    served = _Served(BINARY_CONV1D, replica_loop)
    model_calls.clear()  # building the replica traced its graph with a 1-row call
    series = [_rows(n, seed=n) for n in (5, 8, 13)]
    answers = served.post(*({"rows": _json_rows(rows)} for rows in series))
    for rows, (status, answer) in zip(series, answers, strict=True):
        assert status == 200, answer
        mixed, _ = served.expected(rows)
        np.testing.assert_allclose(answer["probabilities"], mixed, atol=1e-5)
    # Some requests shared a call.
    assert sum(model_calls) == 1 + 4 + 9 and max(model_calls) > 9, model_calls


@pytest.mark.parametrize(
    ("n_rows", "options", "message"),
    [
        (3, {}, r"windows of 4 consecutive rows: send at least 4 rows.*\(got 3\)"),
        (8, {"min_confidence": 0.9}, "min_confidence applies to classification tasks"),
    ],
)
def test_bad_sequence_and_regression_requests_are_400(regression_lstm, n_rows, options, message):
    [(status, answer)] = regression_lstm.post({"rows": _json_rows(_rows(n_rows)), **options})
    assert status == 400 and answer["status"] == 400
    assert re.search(message, answer["error"]), answer["error"]


def _weights(mixing: np.ndarray) -> dict[str, float]:
    return {str(i): round(float(w), 6) for i, w in enumerate(mixing)}


@pytest.mark.parametrize("served", ["binary_by_partition", "multiclass_by_partition"])
def test_a_partition_with_its_own_weights_is_mixed_with_them(request, served):
    served = request.getfixturevalue(served)
    rows = _rows(7)
    answers = served.post(*({"rows": _json_rows(rows), "partition": p} for p in (1, 3)))
    answers += served.post({"rows": _json_rows(rows), "explain": True}, query="partition=1")
    for partition, (status, answer) in zip((1, 3, 1), answers, strict=True):
        assert status == 200, answer
        weights = PARTITION_MIXING[partition]
        mixed, _ = served.expected(rows, weights)
        assert answer["partition"] == partition and answer["mixing"] == "partition"
        np.testing.assert_allclose(answer["probabilities"], mixed, atol=1e-5)
        if served.spec.task == "multiclass":
            assert answer["predictions"] == mixed.argmax(axis=1).tolist()
            np.testing.assert_allclose(answer["confidence"], mixed.max(axis=1), atol=1e-5)
        else:
            assert answer["predictions"] == (mixed > 0.5).astype(int).tolist()
    # explain shows the weights that made the answer, and the members' own outputs.
    from_query = answers[-1][1]
    assert from_query["weights"] == _weights(PARTITION_MIXING[1])
    members = np.array([[m["0"], m["1"]] for m in from_query["members"]])
    np.testing.assert_allclose(members, served.expected(rows)[1], atol=1e-5)


@pytest.mark.parametrize("partition", [0, 2])  # 0: no record yet; 2: weights that do not fit
def test_a_partition_without_its_own_weights_is_mixed_with_the_overall_ones(
    binary_by_partition, partition
):
    rows = _rows(5)
    [(status, answer)] = binary_by_partition.post(
        {"rows": _json_rows(rows), "partition": partition, "explain": True}
    )
    assert status == 200, answer
    mixed, _ = binary_by_partition.expected(rows)
    assert answer["partition"] == partition and answer["mixing"] == "overall"
    assert answer["weights"] == _weights(MIXING)
    np.testing.assert_allclose(answer["probabilities"], mixed, atol=1e-5)


@pytest.mark.parametrize(
    ("served", "query", "body", "message"),
    [
        (
            "binary_by_partition",
            "",
            {"partition": 7},
            "partition 7 is not one this job reads; it reads 0, 1, 2, 3",
        ),
        (
            "binary_by_partition",
            "partition=4",
            {},
            "partition 4 is not one this job reads; it reads 0, 1, 2, 3",
        ),
        # A snapshot from before per-partition mixing names no partitions.
        ("binary", "", {"partition": 0}, "partition 0 is not one this job reads; it reads none"),
        (
            "binary_by_partition",
            "partition=x",
            {},
            r"partition must be a non-negative integer .*, got 'x'",
        ),
        (
            "binary_by_partition",
            "",
            {"partition": -1},
            r"partition must be a non-negative integer .*, got -1",
        ),
    ],
)
def test_a_partition_the_job_does_not_read_is_400(request, served, query, body, message):
    served = request.getfixturevalue(served)
    [(status, answer)] = served.post({"rows": _json_rows(_rows(2)), **body}, query=query)
    assert status == 400 and answer["status"] == 400
    assert re.fullmatch(message, answer["error"]), answer["error"]


def test_a_request_without_a_partition_is_answered_as_before(binary, binary_by_partition):
    body = {"rows": _json_rows(_rows(6)), "explain": True, "min_confidence": 0.6}
    [(status, answer)] = binary_by_partition.post(body)
    [(_, before)] = binary.post(body)  # the same members in a snapshot without partitions
    assert status == 200 and answer == before
    assert "partition" not in answer and "mixing" not in answer


def test_requests_of_several_partitions_share_a_model_call(binary_by_partition, model_calls):
    served = binary_by_partition
    asked = [(1, 3), (None, 4), (3, 5), (0, 6), (1, 7)]  # (partition, rows)
    rows = [_rows(n, seed=n) for _, n in asked]
    answers = served.post(
        *(
            {"rows": _json_rows(r)} | ({} if p is None else {"partition": p})
            for (p, _), r in zip(asked, rows, strict=True)
        )
    )
    for (partition, _), r, (status, answer) in zip(asked, rows, answers, strict=True):
        assert status == 200, answer
        own_weights = None if partition is None else PARTITION_MIXING.get(partition)
        mixed, _ = served.expected(r, MIXING if own_weights is None else own_weights)
        np.testing.assert_allclose(answer["probabilities"], mixed, atol=1e-5)
    # Some shared a call.
    assert sum(model_calls) == 3 + 4 + 5 + 6 + 7 and max(model_calls) > 7, model_calls


def test_a_partition_gone_from_the_snapshot_by_batch_time_is_mixed_overall(
    binary_by_partition,
):
    # `_predict` checked the partition against the version live then; a newer one may
    # lack it by the time the batch runs. The batch answers it, with the overall weights.
    served = binary_by_partition
    rows = _rows(4)
    scored = served.loop.run_until_complete(served.server._predict_batch(_Input(rows, 9)))
    mixed, _ = served.expected(rows)
    assert scored.weights_kind == "overall"
    np.testing.assert_array_equal(scored.weights, MIXING)
    np.testing.assert_allclose(scored.mixed, mixed, atol=1e-5)
