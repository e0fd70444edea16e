import json

import numpy as np
import pytest

from actors.errors import RequestError
from actors.requests import parse_predict_request

FEATURES = ["a", "b"]


def _body(obj) -> bytes:
    return json.dumps(obj).encode()


def test_rows_become_a_matrix_in_feature_order():
    x = parse_predict_request(_body({"rows": [{"b": 2, "a": 1.5}]}), "application/json", FEATURES)
    np.testing.assert_array_equal(x, np.array([[1.5, 2.0]], np.float32))
    assert parse_predict_request(_body({"rows": [{"a": 0, "b": 1}]}), None, FEATURES).shape == (
        1,
        2,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (_body([1, 2]), "application/json", 400, '"rows" list'),
        (_body({"rows": []}), "application/json", 400, "non-empty"),
        (_body({"rows": "x"}), "application/json", 400, "non-empty"),
        (_body({"rows": [5]}), "application/json", 400, "row 0 is int"),
        (_body({"rows": [{"a": 1}]}), "application/json", 400, r"missing feature\(s\) \['b'\]"),
        (
            _body({"rows": [{"a": 1, "b": 2, "c": 3}]}),
            "application/json",
            400,
            r"unknown feature\(s\) \['c'\]",
        ),
        (_body({"rows": [{"a": "1", "b": 2}]}), "application/json", 400, "expected a number"),
        (_body({"rows": [{"a": True, "b": 2}]}), "application/json", 400, "expected a number"),
        (_body({"rows": [{"a": None, "b": 2}]}), "application/json", 400, "expected a number"),
        (b'{"rows": [{"a": NaN, "b": 2}]}', "application/json", 400, "finite"),
        (b'{"rows": [{"a": Infinity, "b": 2}]}', "application/json", 400, "finite"),
        (_body({"rows": [{"a": 1e300, "b": 2}]}), "application/json", 400, "float32 range"),
        (_body({"rows": [{"a": 1, "b": 2}]}), "text/plain", 415, "application/json"),
        (b"x" * 2000, "application/json", 413, "limit is 1000"),
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
