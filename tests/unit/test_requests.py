import json

import numpy as np
import pyarrow as pa
import pytest

from actors.errors import RequestError
from actors.requests import ARROW_STREAM, parse_predict_request

FEATURES = ["a", "b"]
JSON = "application/json"


def _body(obj) -> bytes:
    return json.dumps(obj).encode()


def _arrow(columns: dict) -> bytes:
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_rows_become_a_matrix_in_feature_order():
    parsed = parse_predict_request(_body({"rows": [{"b": 2, "a": 1.5}]}), JSON, FEATURES)
    np.testing.assert_array_equal(parsed.x, np.array([[1.5, 2.0]], np.float32))
    assert parsed.min_confidence is None and parsed.explain is False and parsed.imputed == {}
    assert parse_predict_request(_body({"rows": [{"a": 0, "b": 1}]}), None, FEATURES).x.shape == (
        1,
        2,
    )


def test_options_from_the_body_or_the_query_string():
    body = _body({"rows": [{"a": 0, "b": 1}], "min_confidence": 0.8, "explain": True})
    parsed = parse_predict_request(body, JSON, FEATURES)
    assert parsed.min_confidence == 0.8 and parsed.explain is True
    from_query = parse_predict_request(
        _body({"rows": [{"a": 0, "b": 1}]}),
        JSON,
        FEATURES,
        query={"min_confidence": "0.9", "explain": "true"},
    )
    assert from_query.min_confidence == 0.9 and from_query.explain is True


def test_arrow_stream_body():
    body = _arrow({"b": pa.array([1.0, 2.0], pa.float64()), "a": pa.array([3, 4], pa.int32())})
    parsed = parse_predict_request(body, ARROW_STREAM, FEATURES, query={"explain": "1"})
    np.testing.assert_array_equal(parsed.x, np.array([[3, 1], [4, 2]], np.float32))
    assert parsed.explain is True


def test_missing_features_are_imputed_only_when_allowed():
    body = _body({"rows": [{"a": 1.0}, {"a": 2.0, "b": 3.0}]})
    with pytest.raises(RequestError, match="does not impute"):
        parse_predict_request(body, JSON, FEATURES)
    parsed = parse_predict_request(body, JSON, FEATURES, allow_missing=True)
    assert np.isnan(parsed.x[0, 1]) and parsed.x[1, 1] == 3.0
    assert parsed.imputed == {0: ["b"]}
    arrow = parse_predict_request(
        _arrow({"a": [1.0, 2.0]}), ARROW_STREAM, FEATURES, allow_missing=True
    )
    assert np.isnan(arrow.x[:, 1]).all() and arrow.imputed == {0: ["b"], 1: ["b"]}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", JSON, 400, "not valid JSON"),
        (b"\xff\xfe", JSON, 400, "not valid JSON"),
        (_body([1, 2]), JSON, 400, '"rows" list'),
        (_body({"rows": []}), JSON, 400, "non-empty"),
        (_body({"rows": "x"}), JSON, 400, "non-empty"),
        (_body({"rows": [5]}), JSON, 400, "row 0 is int"),
        (_body({"rows": [{"a": 1}]}), JSON, 400, r"missing feature\(s\) \['b'\]"),
        (_body({"rows": [{"a": 1, "b": 2, "c": 3}]}), JSON, 400, r"unknown feature\(s\) \['c'\]"),
        (_body({"rows": [{"a": "1", "b": 2}]}), JSON, 400, "expected a number"),
        (_body({"rows": [{"a": True, "b": 2}]}), JSON, 400, "expected a number"),
        (_body({"rows": [{"a": None, "b": 2}]}), JSON, 400, "expected a number"),
        (b'{"rows": [{"a": NaN, "b": 2}]}', JSON, 400, "finite"),
        (b'{"rows": [{"a": Infinity, "b": 2}]}', JSON, 400, "finite"),
        (_body({"rows": [{"a": 1e300, "b": 2}]}), JSON, 400, "float32 range"),
        (_body({"rows": [{"a": 1, "b": 2}], "min_confidence": 2}), JSON, 400, "min_confidence"),
        (
            _body({"rows": [{"a": 1, "b": 2}], "min_confidence": "high"}),
            JSON,
            400,
            "min_confidence",
        ),
        (_body({"rows": [{"a": 1, "b": 2}], "explain": "maybe"}), JSON, 400, "explain"),
        (
            _body({"rows": [{"a": 1, "b": 2}], "limit": 3}),
            JSON,
            400,
            "unknown request field.*expected rows, min_confidence, explain, partition",
        ),
        (_body({"rows": [{"a": 1, "b": 2}]}), "text/plain", 415, "application/json"),
        (b"not arrow", ARROW_STREAM, 400, "Arrow IPC stream"),
        (_arrow({"a": [1.0], "b": ["x"]}), ARROW_STREAM, 400, "expected a number"),
        (_arrow({"a": [1.0], "b": [None]}), ARROW_STREAM, 400, "null"),
        (_arrow({"a": [1.0], "b": [float("nan")]}), ARROW_STREAM, 400, "finite"),
        (_arrow({"a": [1.0], "b": [2.0], "c": [3.0]}), ARROW_STREAM, 400, "unknown column"),
        (_arrow({"a": [1.0]}), ARROW_STREAM, 400, "missing column"),
        (
            _arrow({"a": pa.array([], pa.float64()), "b": pa.array([], pa.float64())}),
            ARROW_STREAM,
            400,
            "no rows",
        ),
        (b"x" * 2000, JSON, 413, "limit is 1000"),
    ],
)
def test_malformed_requests_are_4xx_with_a_reason(body, content_type, status, message):
    with pytest.raises(RequestError, match=message) as caught:
        parse_predict_request(body, content_type, FEATURES, max_body_bytes=1000)
    assert caught.value.status == status


def test_too_many_rows_is_413():
    with pytest.raises(RequestError) as caught:
        parse_predict_request(_body({"rows": [{"a": 1, "b": 1}] * 3}), None, FEATURES, max_rows=2)
    assert caught.value.status == 413
    with pytest.raises(RequestError) as caught:
        parse_predict_request(
            _arrow({"a": [1.0] * 3, "b": [1.0] * 3}), ARROW_STREAM, FEATURES, max_rows=2
        )
    assert caught.value.status == 413


def test_a_sequence_model_needs_at_least_a_window_of_rows():
    rows = _body({"rows": [{"a": i, "b": 0} for i in range(4)]})
    parsed = parse_predict_request(rows, JSON, FEATURES, window=4)
    assert parsed.x.shape == (4, 2)  # rows stay rows: the deployment builds the windows
    for body, content_type in (
        (_body({"rows": [{"a": 1, "b": 2}] * 3}), JSON),
        (_arrow({"a": [1.0] * 3, "b": [2.0] * 3}), ARROW_STREAM),
    ):
        with pytest.raises(RequestError, match=r"send at least 4 rows.*\(got 3\)") as caught:
            parse_predict_request(body, content_type, FEATURES, window=4)
        assert caught.value.status == 400


def test_row_limits_count_rows_not_windows():
    body = _body({"rows": [{"a": 1, "b": 1}] * 6})
    assert parse_predict_request(body, JSON, FEATURES, window=5, max_rows=6).x.shape == (6, 2)
    with pytest.raises(RequestError) as caught:
        parse_predict_request(body, JSON, FEATURES, window=5, max_rows=5)
    assert caught.value.status == 413


def test_min_confidence_ranges_over_the_task_classes():
    row = {"rows": [{"a": 1, "b": 2}]}
    three = {"task": "multiclass", "n_classes": 3}
    parsed = parse_predict_request(_body({**row, "min_confidence": 0.4}), JSON, FEATURES, **three)
    assert parsed.min_confidence == 0.4
    with pytest.raises(RequestError, match=r"in \[0.3333, 1\], got 0.3"):
        parse_predict_request(_body({**row, "min_confidence": 0.3}), JSON, FEATURES, **three)
    with pytest.raises(RequestError, match=r"in \[0.5, 1\], got 0.4"):
        parse_predict_request(_body({**row, "min_confidence": 0.4}), JSON, FEATURES)


def test_min_confidence_is_refused_for_regression():
    row = {"rows": [{"a": 1, "b": 2}]}
    plain = parse_predict_request(_body(row), JSON, FEATURES, task="regression")
    assert plain.min_confidence is None
    for body, query in (
        (_body({**row, "min_confidence": 0.8}), None),
        (_body(row), {"min_confidence": "0.8"}),
    ):
        with pytest.raises(RequestError, match="applies to classification tasks") as caught:
            parse_predict_request(body, JSON, FEATURES, query=query, task="regression")
        assert caught.value.status == 400


ROW = {"rows": [{"a": 1, "b": 2}]}
PARTITION_MESSAGE = (
    r"partition must be a non-negative integer \(a source partition this job reads\), got "
)


@pytest.mark.parametrize(
    ("body", "query", "partition"),
    [
        (ROW, None, None),
        ({**ROW, "partition": 0}, None, 0),
        ({**ROW, "partition": 3}, None, 3),
        (ROW, {"partition": "2"}, 2),
        (ROW, {"partition": "0"}, 0),
        ({**ROW, "partition": 1}, {"partition": "2"}, 1),  # the body wins, as for every option
    ],
)
def test_a_json_request_may_name_its_partition(body, query, partition):
    assert parse_predict_request(_body(body), JSON, FEATURES, query=query).partition == partition


def test_an_arrow_request_names_its_partition_in_the_query_string():
    body = _arrow({"a": [1.0], "b": [2.0]})
    assert parse_predict_request(body, ARROW_STREAM, FEATURES).partition is None
    parsed = parse_predict_request(body, ARROW_STREAM, FEATURES, query={"partition": "3"})
    assert parsed.partition == 3


@pytest.mark.parametrize(
    ("body", "query", "shown"),
    [
        ({**ROW, "partition": -1}, None, "-1"),
        ({**ROW, "partition": 1.5}, None, "1.5"),
        ({**ROW, "partition": 1.0}, None, "1.0"),
        ({**ROW, "partition": True}, None, "True"),
        ({**ROW, "partition": "x"}, None, "'x'"),
        ({**ROW, "partition": [1]}, None, r"\[1\]"),
        (ROW, {"partition": "x"}, "'x'"),
        (ROW, {"partition": ""}, "''"),
        (ROW, {"partition": "-1"}, "'-1'"),
        (ROW, {"partition": "1.5"}, "'1.5'"),
        (ROW, {"partition": "true"}, "'true'"),
        (ROW, {"partition": "\u00b2"}, "'\u00b2'"),  # a digit to str.isdigit, not to int()
    ],
)
def test_a_partition_that_is_not_a_non_negative_integer_is_400(body, query, shown):
    with pytest.raises(RequestError, match=PARTITION_MESSAGE + shown) as caught:
        parse_predict_request(_body(body), JSON, FEATURES, query=query)
    assert caught.value.status == 400


def test_a_bad_partition_in_an_arrow_request_is_400():
    with pytest.raises(RequestError, match=PARTITION_MESSAGE + "'-2'") as caught:
        parse_predict_request(
            _arrow({"a": [1.0], "b": [2.0]}), ARROW_STREAM, FEATURES, query={"partition": "-2"}
        )
    assert caught.value.status == 400
