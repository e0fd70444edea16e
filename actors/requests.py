"""Parsing and validating `POST /predict` bodies, without Ray or HTTP.

Every way a request can be wrong maps to a `RequestError` with a 4xx status and a
message that says what was expected, so the Serve deployment never answers 500 for bad
input and never dies on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np

from actors.errors import RequestError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_ROWS", "parse_predict_request"]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000
_JSON_TYPES = ("application/json", "text/json")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _example(features: Sequence[str]) -> str:
    shown = ", ".join(f'"{name}": 0.5' for name in features[:3])
    more = ", ..." if len(features) > 3 else ""
    return '{"rows": [{' + shown + more + "}]}"


def parse_predict_request(
    body: bytes,
    content_type: str | None,
    features: Sequence[str],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> np.ndarray:
    """Turn a JSON prediction request into a float32 matrix in feature order.

    Args:
        body: the raw request body.
        content_type: the request's Content-Type header (None if absent: JSON assumed).
        features: the feature names the model expects, in input order.
        max_body_bytes: larger bodies are refused with 413.
        max_rows: requests with more rows are refused with 413.

    Returns:
        Array of shape (rows, len(features)).

    Raises:
        RequestError: 413 for a body or row count over the limit, 415 for a content
            type other than JSON, 400 for anything malformed; the message names the
            problem and shows the expected shape.
    """
    if len(body) > max_body_bytes:
        raise RequestError(f"request body is {len(body)} bytes; the limit is {max_body_bytes}", 413)
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in _JSON_TYPES:
            raise RequestError(
                f"unsupported content type {media_type!r}; "
                f"send application/json like {_example(features)}",
                415,
            )
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(
            f"body is not valid JSON ({error}); expected {_example(features)}"
        ) from None
    if not isinstance(payload, dict) or "rows" not in payload:
        raise RequestError(f'expected a JSON object with a "rows" list, like {_example(features)}')
    rows = payload["rows"]
    if not isinstance(rows, list) or not rows:
        raise RequestError(f'"rows" must be a non-empty list of objects, like {_example(features)}')
    if len(rows) > max_rows:
        raise RequestError(
            f"request has {len(rows)} rows; the limit is {max_rows} per request", 413
        )
    expected = set(features)
    matrix = np.empty((len(rows), len(features)), dtype=np.float32)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"row {i} is {type(row).__name__}, expected an object like {_example(features)}"
            )
        unknown = sorted(set(row) - expected)
        missing = [name for name in features if name not in row]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown feature(s) {unknown}")
            if missing:
                parts.append(f"missing feature(s) {missing}")
            raise RequestError(f"row {i}: {'; '.join(parts)}; expected exactly {list(features)}")
        for j, name in enumerate(features):
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"row {i}: feature {name!r} is {value!r}, expected a number")
            if not math.isfinite(value):
                raise RequestError(
                    f"row {i}: feature {name!r} is {value!r}, expected a finite number"
                )
            if abs(value) > _FLOAT32_MAX:
                raise RequestError(
                    f"row {i}: feature {name!r} is {value!r}, outside the float32 range"
                )
            matrix[i, j] = value
    return matrix
