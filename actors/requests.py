"""Parsing and validating `POST /predict` requests, without Ray or HTTP.

Two body formats:

* JSON (``application/json``): ``{"rows": [{feature: number, ...}, ...],
  "min_confidence": 0.8, "explain": true, "partition": 2}``;
* Arrow IPC stream (``application/vnd.apache.arrow.stream``) for bulk requests: one
  numeric column per feature; options then come from the query string
  (``?min_confidence=0.8&explain=true&partition=2``), which JSON requests may use too.

``partition`` names the source partition the rows come from, so the ensemble mixes its
members with that partition's weights; here it is only checked to be a non-negative
integer (whether the job reads it is the deployment's to say, from its live snapshot).

Every way a request can be wrong maps to a `RequestError` with a 4xx status and a
message that says what was expected, so the Serve deployment never answers 500 for bad
input and never dies on it.

Missing features are refused unless the deployment allows imputation; then they become
NaN here, and each member's standardisation layer replaces them with its own running
mean (see `actors.models.RunningStandardize`), and the answer lists what was imputed.

What the served model is changes what a valid request is: a sequence model (window > 1)
needs at least `window` rows, one consecutive series oldest first; ``min_confidence``
ranges over [1 / classes, 1] for classification and is refused for regression.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from actors.errors import RequestError
from actors.membership import NEW_MEMBER_POLICIES

__all__ = [
    "ARROW_STREAM",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ROWS",
    "PredictRequest",
    "parse_predict_request",
]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000
ARROW_STREAM = "application/vnd.apache.arrow.stream"
_JSON_TYPES = ("application/json", "text/json")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class PredictRequest:
    """A validated prediction request.

    Attributes:
        x: (rows, features) float32 in model input order; NaN marks an imputed value.
            For a sequence model the rows are one consecutive series, oldest first.
        min_confidence: predictions whose ensemble confidence (the highest class
            probability: max of p and 1-p for binary) is below this are answered
            "abstain"; None answers every one. Always None for regression.
        explain: include each member's output and weight in the answer.
        imputed: row index -> names of the features that were missing and imputed.
        partition: the source partition the rows come from, to be mixed with that
            partition's weights; None mixes with the ensemble's overall weights.
    """

    x: np.ndarray
    min_confidence: float | None = None
    explain: bool = False
    imputed: dict[int, list[str]] = field(default_factory=dict)
    partition: int | None = None


def _example(features: Sequence[str]) -> str:
    shown = ", ".join(f'"{name}": 0.5' for name in features[:3])
    more = ", ..." if len(features) > 3 else ""
    return '{"rows": [{' + shown + more + "}]}"


def parse_predict_request(
    body: bytes,
    content_type: str | None,
    features: Sequence[str],
    *,
    query: Mapping[str, str] | None = None,
    allow_missing: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_rows: int = DEFAULT_MAX_ROWS,
    task: str = "binary",
    n_classes: int = 2,
    window: int = 1,
) -> PredictRequest:
    """Validate a prediction request and turn it into a feature matrix.

    Args:
        body: the raw request body.
        content_type: the Content-Type header (None: JSON assumed).
        features: the feature names the model expects, in input order.
        query: the URL's query parameters (options for Arrow bodies, or JSON ones).
        allow_missing: impute missing features instead of refusing the request.
        max_body_bytes: larger bodies are refused with 413.
        max_rows: requests with more rows are refused with 413.
        task: the served model's task (``binary``, ``multiclass``, ``regression``).
        n_classes: classes of a multiclass model.
        window: rows per input window of a sequence model (1: row-wise); requests with
            fewer rows are refused with 400.

    Returns:
        The validated request.

    Raises:
        RequestError: 413 for a body or row count over the limit, 415 for an
            unsupported content type, 400 for anything malformed; the message names
            the problem and shows what was expected.
    """
    if len(body) > max_body_bytes:
        raise RequestError(f"request body is {len(body)} bytes; the limit is {max_body_bytes}", 413)
    media_type = (content_type or "application/json").split(";", 1)[0].strip().lower()
    options: dict[str, object] = dict(query or {})
    if media_type == ARROW_STREAM:
        x, imputed = _parse_arrow(body, features, allow_missing, max_rows)
    elif media_type in _JSON_TYPES:
        payload = _load_json(body, features)
        options.update({k: v for k, v in payload.items() if k != "rows"})
        x, imputed = _parse_rows(payload["rows"], features, allow_missing, max_rows)
    else:
        raise RequestError(
            f"unsupported content type {media_type!r}; send application/json like "
            f"{_example(features)} or an Arrow IPC stream as {ARROW_STREAM}",
            415,
        )
    if len(x) < window:
        raise RequestError(
            f"this model reads windows of {window} consecutive rows: send at least {window} "
            f"rows of one series, oldest first (got {len(x)})"
        )
    return PredictRequest(
        x=x,
        min_confidence=_confidence_option(
            options.pop("min_confidence", None), task, 2 if task == "binary" else n_classes
        ),
        explain=_bool_option(options.pop("explain", False)),
        imputed=imputed,
        partition=_partition_option(options.pop("partition", None)),
    )


def _load_json(body: bytes, features: Sequence[str]) -> dict:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(
            f"body is not valid JSON ({error}); expected {_example(features)}"
        ) from None
    if not isinstance(payload, dict) or "rows" not in payload:
        raise RequestError(f'expected a JSON object with a "rows" list, like {_example(features)}')
    unknown = sorted(set(payload) - {"rows", "min_confidence", "explain", "partition"})
    if unknown:
        raise RequestError(
            f"unknown request field(s) {unknown}; expected rows, min_confidence, explain, partition"
        )
    return payload


def _parse_rows(
    rows: object, features: Sequence[str], allow_missing: bool, max_rows: int
) -> tuple[np.ndarray, dict[int, list[str]]]:
    if not isinstance(rows, list) or not rows:
        raise RequestError(f'"rows" must be a non-empty list of objects, like {_example(features)}')
    if len(rows) > max_rows:
        raise RequestError(
            f"request has {len(rows)} rows; the limit is {max_rows} per request", 413
        )
    expected = set(features)
    matrix = np.empty((len(rows), len(features)), dtype=np.float32)
    imputed: dict[int, list[str]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"row {i} is {type(row).__name__}, expected an object like {_example(features)}"
            )
        unknown = sorted(set(row) - expected)
        missing = [name for name in features if name not in row]
        if unknown:
            raise RequestError(f"row {i}: unknown feature(s) {unknown}; expected {list(features)}")
        if missing and not allow_missing:
            raise RequestError(
                f"row {i}: missing feature(s) {missing}; expected exactly {list(features)} "
                "(this deployment does not impute missing features)"
            )
        if missing:
            imputed[i] = missing
        for j, name in enumerate(features):
            matrix[i, j] = _number(row[name], i, name) if name in row else np.nan
    return matrix, imputed


def _number(value: object, row: int, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"row {row}: feature {name!r} is {value!r}, expected a number")
    if not math.isfinite(value):
        raise RequestError(f"row {row}: feature {name!r} is {value!r}, expected a finite number")
    if abs(value) > _FLOAT32_MAX:
        raise RequestError(f"row {row}: feature {name!r} is {value!r}, outside the float32 range")
    return float(value)


def _parse_arrow(
    body: bytes, features: Sequence[str], allow_missing: bool, max_rows: int
) -> tuple[np.ndarray, dict[int, list[str]]]:
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, OSError) as error:
        raise RequestError(
            f"body is not a readable Arrow IPC stream ({error}); "
            f"expected one numeric column per feature: {list(features)}"
        ) from None
    if table.num_rows == 0:
        raise RequestError("the Arrow stream has no rows")
    if table.num_rows > max_rows:
        raise RequestError(
            f"request has {table.num_rows} rows; the limit is {max_rows} per request", 413
        )
    unknown = sorted(set(table.column_names) - set(features))
    missing = [name for name in features if name not in table.column_names]
    if unknown:
        raise RequestError(f"unknown column(s) {unknown}; expected {list(features)}")
    if missing and not allow_missing:
        raise RequestError(
            f"missing column(s) {missing}; expected exactly {list(features)} "
            "(this deployment does not impute missing features)"
        )
    matrix = np.full((table.num_rows, len(features)), np.nan, dtype=np.float32)
    for j, name in enumerate(features):
        if name not in table.column_names:
            continue
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise RequestError(f"column {name!r} has type {column.type}, expected a number")
        if column.null_count:
            raise RequestError(
                f"column {name!r} has {column.null_count} null value(s), expected numbers"
            )
        values = column.to_numpy().astype(np.float64)
        bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise RequestError(
                f"row {row}: column {name!r} is {values[row]!r}, expected a finite float32 number"
            )
        matrix[:, j] = values
    imputed = {i: list(missing) for i in range(table.num_rows)} if missing else {}
    return matrix, imputed


def _confidence_option(value: object, task: str, classes: int) -> float | None:
    """The abstention threshold: the top class probability is at least 1 / classes."""
    if value is None:
        return None
    if task == "regression":
        raise RequestError(
            "min_confidence applies to classification tasks; this model does regression "
            "(leave min_confidence out)"
        )
    lowest = 1.0 / classes
    expected = f"a number in [{lowest:.4g}, 1]"
    try:
        confidence = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RequestError(f"min_confidence must be {expected}, got {value!r}") from None
    if isinstance(value, bool) or not lowest <= confidence <= 1.0:
        raise RequestError(f"min_confidence must be {expected}, got {value!r}")
    return confidence


def _bool_option(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise RequestError(f"explain must be true or false, got {value!r}")


def _partition_option(value: object) -> int | None:
    """A partition id: a JSON integer, or a string of digits (the query string's form)."""
    if value is None:
        return None
    # bool is an int in Python, and 1.0 a float: neither names a partition.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    # isascii: str.isdigit also takes digits like "²" that int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise RequestError(
        "partition must be a non-negative integer (a source partition this job reads), "
        f"got {value!r}"
    )


SCALE_EXAMPLE = '{"members": 6, "policy": "clone-best"}'


def parse_scale_request(body: bytes, content_type: str | None, max_members: int = 256) -> dict:
    """A ``POST /admin/scale`` body: ``members`` (the size wanted), optionally ``policy``
    (how new members start) and ``retire`` (member ids to retire first).

    Raises:
        RequestError: 415 for a body that is not JSON, 400 naming what is wrong otherwise.
    """
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise RequestError(
            f"content type {content_type!r} is not supported; send application/json like "
            f"{SCALE_EXAMPLE}",
            415,
        )
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"body is not valid JSON ({error}); expected {SCALE_EXAMPLE}") from None
    if not isinstance(payload, dict) or "members" not in payload:
        raise RequestError(f'expected a JSON object with "members", like {SCALE_EXAMPLE}')
    unknown = sorted(set(payload) - {"members", "policy", "retire"})
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}; expected members, policy, retire")
    members = payload["members"]
    if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= max_members:
        raise RequestError(f'"members" must be an integer in [1, {max_members}], got {members!r}')
    policy = payload.get("policy")
    if policy is not None and policy not in NEW_MEMBER_POLICIES:
        raise RequestError(
            f'"policy" must be one of {", ".join(NEW_MEMBER_POLICIES)}, got {policy!r}'
        )
    retire = payload.get("retire")
    if retire is not None and (
        not isinstance(retire, list)
        or not all(isinstance(m, int) and not isinstance(m, bool) for m in retire)
    ):
        raise RequestError(f'"retire" must be a list of member ids, got {retire!r}')
    return {"members": members, "policy": policy, "retire": retire}
