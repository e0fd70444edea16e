"""Kafka message values to rows and dead letters, and rows to message values.

Pure Arrow and JSON work, no Kafka client: `pipelines.sources.kafka` reads the messages
and hands ``(offset, value)`` pairs here. The rules (which record is a row, which a dead
letter, and why) are described in that module's docstring.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from pipelines.schema import DeadLetter, StreamSchema, is_numeric

__all__ = [
    "ArrowDecoder",
    "Decoded",
    "JsonDecoder",
    "as_batch",
    "encode_arrow",
    "encode_json",
    "field_kinds",
    "is_numeric",
    "merge",
    "output_schema",
]

Value = tuple[int, bytes | None]
"""A message as decoding sees it: its offset and its value."""

_RECORD_CHARS = 500


@dataclass
class Decoded:
    """What some messages turned into: rows (one offset each) and dead letters."""

    table: pa.Table | None
    offsets: np.ndarray
    dead: list[DeadLetter]

    @property
    def items(self) -> int:
        """Rows plus dead letters."""
        return (0 if self.table is None else self.table.num_rows) + len(self.dead)

    def split(self, end: int) -> tuple[Decoded, Decoded]:
        """The rows and dead letters before offset `end`, and those from it on."""
        cut = int(np.searchsorted(self.offsets, end))
        head_dead = [letter for letter in self.dead if letter.offset < end]
        tail_dead = self.dead[len(head_dead) :]
        if self.table is None:
            return Decoded(None, self.offsets, head_dead), Decoded(None, self.offsets, tail_dead)
        return (
            Decoded(self.table.slice(0, cut), self.offsets[:cut], head_dead),
            Decoded(self.table.slice(cut), self.offsets[cut:], tail_dead),
        )


class JsonDecoder:
    """JSON messages to rows: a batch at once by `pyarrow.json`, else message by message."""

    def __init__(self, columns: tuple[str, ...], carried: tuple[str, ...], partition: int) -> None:
        self.columns = columns
        self.carried = carried
        self.partition = partition
        explicit = pa.schema([pa.field(name, pa.float32()) for name in columns])
        self.parse_options = pa_json.ParseOptions(
            explicit_schema=explicit,
            # Carried fields keep the types pyarrow infers; without any, others are skipped.
            unexpected_field_behavior="infer" if carried else "ignore",
        )

    def decode(self, offsets: np.ndarray, values: Sequence[bytes | None]) -> Decoded:
        """Rows of the messages that are records, dead letters for the others.

        Args:
            offsets: the messages' offsets (int64).
            values: the messages' values, one per offset.
        """
        empty = [i for i, value in enumerate(values) if not value or value.isspace()]
        dead = [
            DeadLetter(self.partition, int(offsets[i]), "empty message", _text(values[i]))
            for i in empty
        ]
        if empty:
            keep = np.ones(len(values), dtype=bool)
            keep[empty] = False
            offsets = offsets[keep]
        records = [value for value in values if value and not value.isspace()]
        if not records:
            return Decoded(None, np.empty(0, dtype=np.int64), dead)
        table = self._decode_block(records)
        if table is None:
            return self._decode_each(records, offsets.tolist(), dead)
        return Decoded(table, offsets, dead)

    def _decode_block(self, values: list[bytes]) -> pa.Table | None:
        """All messages at once; None when one of them needs a closer look."""
        block = b"\n".join(values)
        if block.count(b"\n") != len(values) - 1 or b"\r" in block:
            # JSON allows raw line breaks only as whitespace: they can become spaces.
            block = b"\n".join(v.replace(b"\n", b" ").replace(b"\r", b" ") for v in values)
        try:
            table = pa_json.read_json(
                io.BytesIO(block),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=len(block) + 1),
                parse_options=self.parse_options,
            )
        except pa.ArrowInvalid:
            return None
        # Two objects in one message, or a missing field (a null here; message by message
        # it gets its own reason), take the slow path.
        if table.num_rows != len(values) or any(table.column(c).null_count for c in self.columns):
            return None
        names = table.column_names
        arrays = [table.column(c) for c in self.columns]
        arrays += [table.column(c) if c in names else pa.nulls(len(values)) for c in self.carried]
        return pa.Table.from_arrays(arrays, names=[*self.columns, *self.carried])

    def _decode_each(
        self, values: list[bytes], offsets: list[int], dead: list[DeadLetter]
    ) -> Decoded:
        numbers: list[list[Any]] = [[] for _ in self.columns]
        carried: list[list[Any]] = [[] for _ in self.carried]
        kept: list[int] = []
        for value, offset in zip(values, offsets, strict=True):
            record, reason = _parse_record(value, self.columns)
            if record is None:
                dead.append(DeadLetter(self.partition, offset, reason, _text(value)))
                continue
            for column, name in zip(numbers, self.columns, strict=True):
                column.append(record[name])
            for column, name in zip(carried, self.carried, strict=True):
                column.append(record.get(name))
            kept.append(offset)
        arrays = [
            pa.array(column, type=pa.float64()).cast(pa.float32(), safe=False) for column in numbers
        ]
        arrays += [_python_column(column) for column in carried]
        table = pa.Table.from_arrays(arrays, names=[*self.columns, *self.carried])
        dead.sort(key=lambda letter: letter.offset)
        return Decoded(table, np.asarray(kept, dtype=np.int64), dead)


def _parse_record(value: bytes, columns: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    """One JSON message as a record whose `columns` hold floats or None, or why it is not."""
    try:
        record = json.loads(value)
    except (ValueError, RecursionError) as exc:
        return None, f"unparseable JSON: {exc}"
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {_json_type(record)}"
    for name in columns:
        if name not in record:
            return None, f"missing field {name!r}"
        field = record[name]
        if field is None:
            continue  # a null: validation rejects the row with its own reason
        if not isinstance(field, int | float):  # booleans are ints: 0/1
            return None, f"field {name!r} has JSON type {_json_type(field)}, expected a number"
        try:
            record[name] = float(field)
        except OverflowError:
            return None, f"field {name!r} is an integer too large for a float"
    return record, ""


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


class ArrowDecoder:
    """Arrow IPC stream messages to rows: each message's rows, all at its offset.

    A value that is not an IPC stream is one dead letter; every row of a message that
    lacks a column or has a non-numeric one is a dead letter. What a message's schema
    needs (nothing, casts, or rejection) is worked out once and kept while the next
    messages have the same schema, as a producer's messages do.
    """

    def __init__(self, columns: tuple[str, ...], carried: tuple[str, ...], partition: int) -> None:
        self.columns = columns
        self.carried = carried
        self.partition = partition
        self.names = [*columns, *carried]
        self._schema: pa.Schema | None = None
        self._plan: tuple[str | None, bool] = (None, False)  # (reason to reject, as is)

    def decode(self, offset: int, value: bytes | None) -> Decoded:
        """The rows of one message, or its dead letters."""
        no_rows = np.empty(0, dtype=np.int64)
        if not value:
            return Decoded(None, no_rows, [DeadLetter(self.partition, offset, "empty message")])
        try:
            table = pa.ipc.open_stream(value).read_all()
        except (pa.ArrowException, ValueError, OSError) as exc:
            invalid = f"not an Arrow IPC stream: {exc}"
            return Decoded(
                None, no_rows, [DeadLetter(self.partition, offset, invalid, _text(value))]
            )
        n = table.num_rows
        reason, as_is = self._plan_for(table.schema)
        if reason is not None:
            dead = [
                DeadLetter(self.partition, offset, reason, _row_text(table, i)) for i in range(n)
            ]
            return Decoded(None, no_rows, dead)
        if as_is:
            rows = table.select(self.names)
        else:
            names = table.column_names
            arrays = [_float_column(table.column(name)) for name in self.columns]
            arrays += [
                table.column(c) if c in names else pa.chunked_array([pa.nulls(n)])
                for c in self.carried
            ]
            rows = pa.Table.from_arrays(arrays, names=self.names)
        return Decoded(rows, np.full(n, offset, dtype=np.int64), [])

    def _plan_for(self, schema: pa.Schema) -> tuple[str | None, bool]:
        if self._schema is not None and schema.equals(self._schema):
            return self._plan
        names = schema.names
        missing = [c for c in self.columns if c not in names]
        reason = None
        if missing:
            reason = f"missing column(s) {missing} in the Arrow message; it has {names}"
        for name in self.columns if not missing else ():
            kind = schema.field(name).type
            if not _float_type(kind):
                reason = f"column {name!r} has type {kind}, expected a number"
                break
        as_is = all(c in names for c in self.carried) and all(
            schema.field(c).type == pa.float32() for c in self.columns if c in names
        )
        self._schema, self._plan = schema, (reason, as_is)
        return self._plan


def _float_type(kind: pa.DataType) -> bool:
    """Whether a column of this type converts to float32 (numbers, booleans, nulls)."""
    return is_numeric(kind) or pa.types.is_null(kind)


def _float_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A numeric, boolean or all-null column (see `_float_type`) as float32."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
    if column.type == pa.float32():
        return column
    try:
        return pc.cast(column, pa.float32(), safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. a wide decimal
        return pc.cast(pc.cast(column, pa.float64(), safe=False), pa.float32(), safe=False)


def merge(parts: list[Decoded], columns: tuple[str, ...]) -> Decoded:
    """The decoded messages of one batch as one table, offsets and dead letters."""
    dead = [letter for part in parts for letter in part.dead]
    with_rows = [part for part in parts if part.table is not None and part.table.num_rows]
    if not with_rows:
        return Decoded(None, np.empty(0, dtype=np.int64), dead)
    offsets = np.concatenate([part.offsets for part in with_rows])
    tables = [part.table for part in with_rows if part.table is not None]
    if len(tables) == 1:
        return Decoded(tables[0], offsets, dead)
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid:  # schemas differ: a carried column's type, nullability
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # A carried column of different types in different messages: keep it as text.
            table = pa.concat_tables([_carried_as_text(t, columns) for t in tables])
    return Decoded(table, offsets, dead)


def _carried_as_text(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    arrays = [
        table.column(name) if name in columns else pc.cast(table.column(name), pa.string())
        for name in table.column_names
    ]
    return pa.Table.from_arrays(arrays, names=table.column_names)


def as_batch(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [column.combine_chunks() for column in table.columns], names=table.column_names
    )


def output_schema(schema: StreamSchema, carried: tuple[str, ...]) -> pa.Schema:
    """The schema of an empty batch (carried columns have no type until data comes)."""
    return pa.schema([*schema.arrow_schema(), *(pa.field(name, pa.null()) for name in carried)])


def _python_column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values],
            type=pa.string(),
        )


def field_kinds(value: bytes | None, fmt: str) -> dict[str, bool] | None:
    """Field name -> whether it is numeric, of one message; None if it does not parse."""
    if not value:
        return None
    if fmt == "json":
        try:
            record = json.loads(value)
        except (ValueError, RecursionError):
            return None
        if not isinstance(record, dict):
            return None
        return {name: isinstance(v, int | float) for name, v in record.items()}
    try:
        arrow_schema = pa.ipc.open_stream(pa.py_buffer(value)).schema
    except (pa.ArrowException, ValueError, OSError):
        return None
    return {f.name: is_numeric(f.type) for f in arrow_schema}


def _text(value: bytes | None) -> str:
    """A message's value for a dead letter: text, cut to 500 characters."""
    if value is None:
        return ""
    text = value[: _RECORD_CHARS * 4].decode("utf-8", errors="replace")
    return text if len(text) <= _RECORD_CHARS else text[: _RECORD_CHARS - 3] + "..."


def _row_text(table: pa.Table, i: int) -> str:
    text = repr({name: table.column(name)[i].as_py() for name in table.column_names})
    return text if len(text) <= _RECORD_CHARS else text[: _RECORD_CHARS - 3] + "..."


def encode_json(batch: pa.RecordBatch | pa.Table) -> list[bytes]:
    """One JSON object per row; nulls as null, NaN and infinities as ``NaN``/``Infinity``
    (what Python's `json` writes; the reader dead-letters such rows as non-finite)."""
    encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
    return [encode(row).encode() for row in batch.to_pylist()]


def encode_arrow(batch: pa.RecordBatch | pa.Table) -> bytes:
    """The rows as one Arrow IPC stream: the value of one ``format=arrow`` message."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write(batch)
    return sink.getvalue()
