"""StreamSchema: declaration checks and the validation that splits good rows from dead letters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from actors.errors import SchemaError
from pipelines.schema import DeadLetter, StreamSchema

SCHEMA = StreamSchema(features=("a", "b"), label="label")


def validate(columns: dict[str, pa.Array], first_offset: int = 100):
    batch = pa.RecordBatch.from_pydict(columns)
    validated = SCHEMA.validate(batch, partition=3, first_offset=first_offset)
    # Every row is accounted for exactly once: learned or dead-lettered.
    dead_offsets = [d.offset for d in validated.dead_letters]
    assert validated.rows + len(dead_offsets) == batch.num_rows
    assert sorted([*validated.offsets.tolist(), *dead_offsets]) == list(
        range(first_offset, first_offset + batch.num_rows)
    )
    assert validated.x.shape == (validated.rows, 2) and validated.y.shape == (validated.rows,)
    assert all(d.partition == 3 for d in validated.dead_letters)
    return validated


def test_good_rows_pass_as_float32():
    validated = validate(
        {
            "a": pa.array([0.5, 1.5, 2.5], pa.float64()),
            "b": pa.array([1, 2, 3], pa.int32()),
            "label": pa.array([True, False, True]),
        }
    )
    assert validated.rows == 3 and not validated.dead_letters
    assert validated.x.dtype == np.float32 and validated.y.dtype == np.float32
    np.testing.assert_array_equal(validated.x, [[0.5, 1], [1.5, 2], [2.5, 3]])
    np.testing.assert_array_equal(validated.y, [1, 0, 1])
    np.testing.assert_array_equal(validated.offsets, [100, 101, 102])


def test_extra_columns_are_ignored_and_order_follows_the_schema():
    validated = validate({"label": pa.array([0.0]), "zzz": pa.array(["x"]), "b": [2.0], "a": [1.0]})
    np.testing.assert_array_equal(validated.x, [[1.0, 2.0]])


def test_nan_inf_and_null_rows_are_dead_lettered_with_reasons():
    validated = validate(
        {
            "a": pa.array([1.0, float("nan"), 3.0, 4.0, float("inf"), 6.0]),
            "b": pa.array([1.0, 2.0, None, 4.0, 5.0, 6.0]),
            "label": pa.array([0.0, 1.0, 0.0, None, 1.0, float("-inf")]),
        }
    )
    np.testing.assert_array_equal(validated.offsets, [100])
    assert [(d.offset, d.reason) for d in validated.dead_letters] == [
        (101, "non-finite value in column 'a'"),
        (102, "null value in column 'b'"),
        (103, "null value in column 'label'"),
        (104, "non-finite value in column 'a'"),
        (105, "non-finite value in column 'label'"),
    ]
    assert "'b': None" in validated.dead_letters[1].record


def test_string_column_dead_letters_every_row_and_keeps_the_record():
    validated = validate(
        {"a": pa.array([1.0, 2.0]), "b": pa.array(["3", "abc"]), "label": pa.array([0, 1])}
    )
    assert validated.rows == 0
    assert {d.reason for d in validated.dead_letters} == {
        "column 'b' has type string, expected a number"
    }
    assert "'abc'" in validated.dead_letters[1].record


def test_missing_column_dead_letters_every_row():
    validated = validate({"a": pa.array([1.0, 2.0]), "label": pa.array([0.0, 1.0])})
    assert validated.rows == 0 and len(validated.dead_letters) == 2
    assert "missing column(s) ['b']" in validated.dead_letters[0].reason


def test_large_integers_do_not_fail_the_batch():
    validated = validate(
        {"a": pa.array([2**25 + 1, 7], pa.int64()), "b": [0.0, 1.0], "label": [1, 0]}
    )
    assert validated.rows == 2
    assert validated.x[0, 0] == np.float32(2**25)


def test_mixed_integer_and_float_columns_match_a_column_by_column_cast():
    # The clean-batch path converts the whole batch in one Arrow call (upcasting mixed
    # types); its float32 values must be what a per-column cast gives.
    columns = {
        "a": pa.array([3, -7, 2**20], pa.int32()),
        "b": pa.array([0.1, 1e-3, 2.5], pa.float64()),
        "label": pa.array([1, 0, 1], pa.uint8()),
    }
    validated = validate(columns)
    assert validated.rows == 3 and validated.x.dtype == np.float32
    expected = np.stack(
        [np.asarray(columns[c].to_numpy(), dtype=np.float32) for c in ("a", "b")], axis=1
    )
    np.testing.assert_array_equal(validated.x, expected)
    np.testing.assert_array_equal(validated.y, [1, 0, 1])


def test_a_null_in_an_integer_column_is_dead_lettered_as_null():
    validated = validate(
        {"a": pa.array([1, None, 3], pa.int64()), "b": [0.0, 1.0, 2.0], "label": [1, 0, 1]}
    )
    np.testing.assert_array_equal(validated.offsets, [100, 102])
    assert [(d.offset, d.reason) for d in validated.dead_letters] == [
        (101, "null value in column 'a'")
    ]


def test_empty_batch():
    validated = validate(
        {
            "a": pa.array([], pa.float32()),
            "b": pa.array([], pa.float32()),
            "label": pa.array([], pa.float32()),
        }
    )
    assert validated.rows == 0 and validated.dead_letters == []


def test_dead_letter_is_a_plain_value():
    letter = DeadLetter(partition=1, offset=2, reason="r")
    assert letter.record == ""
    assert letter == DeadLetter(1, 2, "r")


def test_arrow_schema_declares_float32_columns():
    assert SCHEMA.arrow_schema() == pa.schema(
        [("a", pa.float32()), ("b", pa.float32()), ("label", pa.float32())]
    )
    assert SCHEMA.n_features == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": ()}, "at least one feature"),
        ({"features": ("a", "a")}, "must be unique"),
        ({"features": ("a", "label")}, "also listed as a feature"),
    ],
)
def test_bad_declarations_raise_schema_error(kwargs, message):
    with pytest.raises(SchemaError, match=message):
        StreamSchema(**kwargs)
