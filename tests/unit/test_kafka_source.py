"""The Kafka source against a real Kafka protocol endpoint: librdkafka's mock cluster."""

from __future__ import annotations

import json
import logging
import math
import time

import numpy as np
import pyarrow as pa
import pytest

from actors.errors import ConfigError, SourceError
from pipelines.sources import SourceBatch, SourceSpec, open_source
from pipelines.sources.kafka import (
    KafkaOptions,
    KafkaPartitionReader,
    KafkaSource,
    encode_arrow,
    encode_json,
    redact_uri,
)
from tests.kafka_cluster import MOCK_PARTITIONS, MockKafka

FEATURES = ("x0", "x1", "x2")


@pytest.fixture(scope="module")
def kafka():
    with MockKafka() as cluster:
        yield cluster


def rows(partition: int, start: int, n: int) -> pa.RecordBatch:
    """Rows whose values say where they come from: x0 = 1000 * partition + offset."""
    offsets = np.arange(start, start + n, dtype=np.float32)
    return pa.record_batch(
        {
            "x0": 1000.0 * partition + offsets,
            "x1": offsets / 10.0,
            "x2": np.full(n, -1.0, np.float32),
            "label": (offsets % 2).astype(np.float32),
        }
    )


def read_all(reader: KafkaPartitionReader, max_rows: int, wait_s: float = 0.0) -> list[SourceBatch]:
    batches = []
    while (batch := reader.read_batch(max_rows, wait_s)) is not None:
        batches.append(batch)
        assert len(batches) < 10_000, "a bounded reader never ended"
    return batches


def column(batches: list[SourceBatch], name: str) -> list[float]:
    return [v for b in batches for v in b.batch.column(name).to_pylist()]


def offsets_of(batches: list[SourceBatch]) -> list[int]:
    return [int(o) for b in batches for o in b.row_offsets()]


def dead_of(batches: list[SourceBatch]) -> dict[int, str]:
    return {d.offset: d.reason for b in batches for d in b.dead_letters}


COUNTS = {0: 25, 1: 0, 2: 7, 3: 40}


@pytest.fixture(scope="module")
def json_topic(kafka):
    topic = kafka.create_topic()
    produced = kafka.produce(topic, {p: [rows(p, 0, n)] for p, n in COUNTS.items() if n})
    assert produced == {p: n for p, n in COUNTS.items() if n}
    return topic


@pytest.fixture(scope="module")
def arrow_topic(kafka):
    """Partition p holds COUNTS[p] rows in messages of 5 rows (the last may be shorter)."""
    topic = kafka.create_topic()
    kafka.produce(
        topic,
        {p: [rows(p, 0, n)] for p, n in COUNTS.items() if n},
        format="arrow",
        rows_per_message=5,
    )
    return topic


def features_uri(kafka, topic, **options):
    return kafka.uri(topic, features=",".join(FEATURES), eof="stop", **options)


# --- consuming ---------------------------------------------------------------------------


def test_json_reads_every_partition_exactly(kafka, json_topic):
    source = open_source(SourceSpec(features_uri(kafka, json_topic)))
    assert isinstance(source, KafkaSource)
    assert source.partitions() == list(range(MOCK_PARTITIONS))
    assert source.schema.features == FEATURES
    for partition, n in COUNTS.items():
        reader = source.open(partition)
        assert reader.position == 0
        batches = read_all(reader, max_rows=8)
        assert [b.batch.num_rows for b in batches] == [8] * (n // 8) + ([n % 8] if n % 8 else [])
        assert column(batches, "x0") == [1000.0 * partition + i for i in range(n)]
        assert offsets_of(batches) == list(range(n))
        ends = [b.next_offset for b in batches]
        assert [b.first_offset for b in batches] == [0, *ends][: len(batches)]
        assert reader.position == n
        assert reader.high_watermark() == n
        assert batches == [] or batches[0].batch.schema.field("x0").type == pa.float32()
        assert reader.read_batch(8) is None  # it stays exhausted
        reader.close()


def test_arrow_rows_share_their_message_offset_and_messages_are_never_split(kafka, arrow_topic):
    source = open_source(SourceSpec(features_uri(kafka, arrow_topic, format="arrow")))
    reader = source.open(3)  # 40 rows: messages 0..7 of 5 rows each
    first = reader.read_batch(7)  # a second message would make 10 rows > 7
    assert first.batch.num_rows == 5
    assert first.row_offsets().tolist() == [0] * 5
    assert (first.first_offset, first.next_offset, reader.position) == (0, 1, 1)
    second = reader.read_batch(12)
    assert second.row_offsets().tolist() == [1] * 5 + [2] * 5
    whole = reader.read_batch(2)  # a first message larger than max_rows comes whole
    assert whole.row_offsets().tolist() == [3] * 5
    rest = read_all(reader, max_rows=100)
    batches = [first, second, whole, *rest]
    assert column(batches, "x0") == [3000.0 + i for i in range(40)]
    assert offsets_of(batches) == [i // 5 for i in range(40)]
    assert reader.position == reader.high_watermark() == 8  # lag counts messages
    reader.close()
    short = source.open(2)  # 7 rows: messages of 5 and 2
    batches = read_all(short, max_rows=100)
    assert column(batches, "x0") == [2000.0 + i for i in range(7)]
    assert offsets_of(batches) == [0] * 5 + [1] * 2
    short.close()


def test_features_are_inferred_from_the_first_message(kafka, caplog):
    topic = kafka.create_topic()
    record = {"id": "a7", "x0": 0.5, "note": "text", "x1": 2, "flag": True, "label": 1}
    kafka.produce_messages(topic, {2: [json.dumps(record).encode()]})
    with caplog.at_level(logging.INFO, logger="pipelines.sources.kafka"):
        source = open_source(SourceSpec(kafka.uri(topic, key="id", eof="stop")))
    assert source.schema.features == ("x0", "x1", "flag")
    assert source.schema.key == "id"
    assert "inferred features ['x0', 'x1', 'flag'] from the first message of partition 2" in (
        caplog.text
    )
    assert "'note'" in caplog.text  # the field not used is named
    batch = source.open(2).read_batch(10)
    assert batch.batch.to_pylist() == [
        {"x0": 0.5, "x1": 2.0, "flag": 1.0, "label": 1.0, "id": "a7"}
    ]


def test_arrow_features_are_inferred_from_the_message_schema(kafka, arrow_topic):
    source = open_source(SourceSpec(kafka.uri(arrow_topic, format="arrow", eof="stop")))
    assert source.schema.features == FEATURES


def test_inference_needs_a_message(kafka):
    topic = kafka.create_topic()
    with pytest.raises(ConfigError, match=r"cannot infer the features .* pass \?features="):
        open_source(SourceSpec(kafka.uri(topic)))
    kafka.produce_messages(topic, {0: [b'{"x0": 1.0}']})
    with pytest.raises(ConfigError, match="label field 'label' not found in the first message"):
        open_source(SourceSpec(kafka.uri(topic)))


# --- live and bounded --------------------------------------------------------------------


def test_live_partition_returns_empty_batches_within_max_wait(kafka):
    topic = kafka.create_topic()
    kafka.produce(topic, {1: [rows(1, 0, 3)]})
    source = open_source(SourceSpec(kafka.uri(topic, features=",".join(FEATURES))))
    reader = source.open(1)
    got = reader.read_batch(10, max_wait_s=5.0)
    assert got.batch.num_rows == 3  # returns at the first messages, not after 5 s
    started = time.monotonic()
    empty = reader.read_batch(10, max_wait_s=0.3)
    waited = time.monotonic() - started
    assert empty is not None and empty.batch.num_rows == 0 and not empty.dead_letters
    assert (empty.first_offset, empty.next_offset) == (3, 3)
    assert empty.batch.schema.names == [*FEATURES, "label"]
    assert 0.2 <= waited < 3.0
    assert reader.read_batch(10) is not None  # no wait: an empty batch, never None
    kafka.produce(topic, {1: [rows(1, 3, 2)]})
    started = time.monotonic()
    more = reader.read_batch(10, max_wait_s=5.0)
    assert time.monotonic() - started < 4.0
    values = more.batch.column("x0").to_pylist()
    while len(values) < 2:  # the two may come in two fetches
        values += reader.read_batch(10, max_wait_s=5.0).batch.column("x0").to_pylist()
    assert values == [1003.0, 1004.0]
    assert reader.position == 5
    reader.close()


def test_bounded_partition_ends_at_its_end_as_seen_then(kafka):
    topic = kafka.create_topic()
    kafka.produce(topic, {0: [rows(0, 0, 4)]})
    source = open_source(SourceSpec(features_uri(kafka, topic)))
    reader = source.open(0)
    assert reader.read_batch(100).batch.num_rows == 4
    assert reader.read_batch(100) is None
    kafka.produce(topic, {0: [rows(0, 4, 2)]})
    assert reader.read_batch(100) is None  # exhausted means never more rows
    assert [b.batch.num_rows for b in read_all(source.open(0, offset=4), 100)] == [2]
    empty = source.open(1)  # an empty partition ends at once
    assert empty.read_batch(10) is None
    empty.close()
    reader.close()


# --- offsets: commit, resume, reassignment -----------------------------------------------


def test_commit_then_reopen_resumes_from_the_committed_offset(kafka, json_topic):
    uri = features_uri(kafka, json_topic, group="resume-test")
    source = open_source(SourceSpec(uri))
    reader = source.open(0)
    assert reader.read_batch(10).next_offset == 10
    reader.commit(10)
    assert reader.committed == 10
    assert column(read_all(reader, 100), "x0") == [float(i) for i in range(10, 25)]
    reader.close()  # read on, but not committed: a restart resumes at 10
    again = open_source(SourceSpec(uri)).open(0)
    assert again.position == 10
    assert column(read_all(again, 100), "x0") == [float(i) for i in range(10, 25)]
    again.close()
    other_group = open_source(SourceSpec(features_uri(kafka, json_topic, group="other")))
    assert other_group.open(0).position == 0  # groups keep their own offsets
    assert source.open(0, offset=20).position == 20  # an explicit offset wins


def test_reassigned_partition_continues_after_the_last_commit(kafka, arrow_topic):
    uri = features_uri(kafka, arrow_topic, format="arrow", group="reassign-test")
    member_a = open_source(SourceSpec(uri))
    reader_a = member_a.open(3)
    seen_a = [reader_a.read_batch(10) for _ in range(3)]  # messages 0..5
    checkpointed = seen_a[1].next_offset  # the last checkpoint held offset 4
    reader_a.commit(checkpointed)
    reader_a.close()  # member A leaves after reading past its checkpoint
    member_b = open_source(SourceSpec(uri))  # the partition moves to member B
    reader_b = member_b.open(3)
    assert reader_b.position == checkpointed == 4
    seen_b = read_all(reader_b, 10)
    rows_a = column(seen_a[:2], "x0")
    assert rows_a + column(seen_b, "x0") == [3000.0 + i for i in range(40)]
    # At most the rows since the last checkpoint are seen twice: messages 4 and 5.
    assert offsets_of(seen_a[2:]) == [4] * 5 + [5] * 5
    reader_b.commit(reader_b.position)
    assert open_source(SourceSpec(uri)).open(3).position == 8


# --- bad records -------------------------------------------------------------------------


def test_bad_json_messages_become_dead_letters_and_counts_reconcile(kafka):
    topic = kafka.create_topic()
    good = b'{"x0": 1, "x1": 2, "x2": 3, "label": 1}'
    messages = [
        good,  # 0
        b"not json",  # 1
        b"[1, 2]",  # 2
        b'{"x0": "abc", "x1": 2, "x2": 3, "label": 0}',  # 3
        b'{"x0": 1, "x1": 2, "x2": 3}',  # 4: no label
        b'{"x0": NaN, "x1": 2, "x2": 3, "label": 0}',  # 5: non-finite, a row
        b'{"x0": 1, "x1": null, "x2": 3, "label": 0}',  # 6: null, a row
        b'{"x0": 1, "x1": 2, "x2": -Infinity, "label": 1}',  # 7: non-finite, a row
        b"",  # 8
        b'{"x0": true, "x1": 2, "x2": 3, "label": false}',  # 9: booleans are 0/1
        good + good,  # 10: two objects in one message
        b'{\n  "x0": 4,\n  "x1": 5,\n  "x2": 6,\n  "label": 1\n}',  # 11: pretty-printed
        b'{"x0": {"a": 1}, "x1": 2, "x2": 3, "label": 0}',  # 12
        b'{"x0": 1e999, "x1": 2, "x2": 3, "label": 0}',  # 13: overflows to inf, a row
        good,  # 14
    ]
    kafka.produce_messages(topic, {0: messages})
    source = open_source(SourceSpec(features_uri(kafka, topic)))
    for max_rows in (100, 4, 1):  # the same answer however the messages are batched
        batches = read_all(source.open(0), max_rows)
        kept = offsets_of(batches)
        dead = dead_of(batches)
        assert len(kept) + len(dead) == len(messages)
        assert sorted(kept + list(dead)) == list(range(len(messages)))
        assert kept == [0, 5, 6, 7, 9, 11, 13, 14]
        assert dead[1].startswith("unparseable JSON: ")
        assert dead[2] == "expected a JSON object, got array"
        assert dead[3] == "field 'x0' has JSON type string, expected a number"
        assert dead[4] == "missing field 'label'"
        assert dead[8] == "empty message"
        assert dead[10].startswith("unparseable JSON: ")
        assert dead[12] == "field 'x0' has JSON type object, expected a number"
        letter = next(d for b in batches for d in b.dead_letters if d.offset == 3)
        assert letter.partition == 0 and '"abc"' in letter.record
    validated = [
        source.schema.validate(b.batch, partition=0, first_offset=b.first_offset, offsets=b.offsets)
        for b in batches
        if b.batch.num_rows
    ]
    reasons = {d.offset: d.reason for v in validated for d in v.dead_letters}
    assert reasons == {
        5: "non-finite value in column 'x0'",
        6: "null value in column 'x1'",
        7: "non-finite value in column 'x2'",
        13: "non-finite value in column 'x0'",
    }
    good_offsets = [int(o) for v in validated for o in v.offsets]
    assert good_offsets == [0, 9, 11, 14]
    x = np.concatenate([v.x for v in validated])
    assert x[1].tolist() == [1.0, 2.0, 3.0] and x[2].tolist() == [4.0, 5.0, 6.0]


def test_bad_arrow_messages_become_dead_letters_and_rows_reconcile(kafka):
    topic = kafka.create_topic()
    good = rows(0, 0, 3)
    no_label = pa.record_batch({"x0": [1.0, 2.0], "x1": [1.0, 2.0], "x2": [1.0, 2.0]})
    text = good.set_column(1, "x1", pa.array(["a", "b", "c"]))
    non_finite = pa.record_batch(
        {"x0": [math.nan, 1.0], "x1": [1.0, math.inf], "x2": [0.0, 0.0], "label": [1.0, 0.0]}
    )
    integers = pa.record_batch(
        {"x0": [1, 2], "x1": [3, 4], "x2": [5, 6], "label": pa.array([True, False])}
    )
    messages = [
        encode_arrow(good),  # 0: 3 rows
        b"\x00not arrow at all",  # 1: one dead letter
        encode_arrow(no_label),  # 2: 2 rows, dead
        encode_arrow(text),  # 3: 3 rows, dead
        encode_arrow(non_finite),  # 4: 2 rows, kept for validation
        encode_arrow(integers),  # 5: 2 rows, cast
        encode_arrow(good)[:40],  # 6: a truncated stream, one dead letter
        encode_arrow(good.slice(0, 0)),  # 7: no rows at all
    ]
    records = 3 + 1 + 2 + 3 + 2 + 2 + 1 + 0
    kafka.produce_messages(topic, {1: messages})
    source = open_source(SourceSpec(features_uri(kafka, topic, format="arrow")))
    batches = read_all(source.open(1), 4)
    dead = [d for b in batches for d in b.dead_letters]
    assert sum(b.batch.num_rows for b in batches) + len(dead) == records
    assert offsets_of(batches) == [0, 0, 0, 4, 4, 5, 5]
    by_offset = {}
    for letter in dead:
        by_offset.setdefault(letter.offset, []).append(letter.reason)
    assert by_offset[1][0].startswith("not an Arrow IPC stream")
    assert (
        by_offset[2]
        == ["missing column(s) ['label'] in the Arrow message; it has ['x0', 'x1', 'x2']"] * 2
    )
    assert by_offset[3] == ["column 'x1' has type string, expected a number"] * 3
    assert by_offset[6][0].startswith("not an Arrow IPC stream")
    assert len(by_offset[6]) == 1
    assert column(batches, "x2") == [-1.0, -1.0, -1.0, 0.0, 0.0, 5.0, 6.0]
    assert column(batches, "label")[-2:] == [1.0, 0.0]
    validated = [
        source.schema.validate(b.batch, partition=1, first_offset=b.first_offset, offsets=b.offsets)
        for b in batches
        if b.batch.num_rows
    ]
    reasons = sorted((d.offset, d.reason) for v in validated for d in v.dead_letters)
    assert reasons == [
        (4, "non-finite value in column 'x0'"),
        (4, "non-finite value in column 'x1'"),
    ]
    assert sum(v.rows for v in validated) == 5


def test_encoders_write_what_the_reader_reads():
    batch = rows(0, 0, 2)
    assert [json.loads(m) for m in encode_json(batch)] == batch.to_pylist()
    assert pa.ipc.open_stream(encode_arrow(batch)).read_all().to_batches()[0].equals(batch)


# --- configuration errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("kafka:///ticks", "names no broker"),
        ("kafka://broker:9092", "names no topic"),
        ("kafka://broker:9092/", "names no topic"),
        ("kafka://broker:9092/bad topic!", "is not a Kafka topic name"),
        (
            "kafka://broker:9092/t?format=xml",
            "format='xml' is not supported; expected one of json, arrow",
        ),
        (
            "kafka://broker:9092/t?grup=a",
            "unknown kafka option 'grup'.*expected one of group, format",
        ),
        ("kafka://broker:9092/t?eof=never", "eof='never' is not valid"),
        ("kafka://broker:9092/t?timeout_s=-1", r"timeout_s \(-1.0\) must be"),
        ("kafka://broker:9092/t?timeout_s=soon", "timeout_s='soon' is not valid"),
        ("kafka://broker:9092/t?group.id=mine", r"\['group.id'\] are the source's own"),
        ("kafka://broker:9092/t?label=y&label=z", "'label' is given twice"),
        ("kafka://broker:9092/t?features=a,,b", "has an empty name"),
        ("kafka://broker:9092/t?group=", "kafka option group= is empty"),
        ("kafka://user:pw@broker:9092/t", "credentials in the host part"),
    ],
)
def test_bad_uris_are_one_line_config_errors(uri, expected):
    with pytest.raises(ConfigError, match=expected) as caught:
        open_source(SourceSpec(uri))
    assert "\n" not in str(caught.value)


def test_librdkafka_settings_pass_through_and_bad_ones_are_config_errors(kafka, json_topic):
    options = KafkaOptions.from_uri(
        features_uri(kafka, json_topic, **{"fetch.wait.max.ms": 10, "client.rack": "r1"})
    )
    assert options.settings == (("fetch.wait.max.ms", "10"), ("client.rack", "r1"))
    source = open_source(SourceSpec(features_uri(kafka, json_topic, **{"fetch.wait.max.ms": 10})))
    assert len(read_all(source.open(2), 100)) == 1
    with pytest.raises(ConfigError, match=r'librdkafka refused the settings.*"no\.such\.setting"'):
        open_source(SourceSpec(features_uri(kafka, json_topic, **{"no.such.setting": 1})))


def test_secrets_are_masked_in_errors():
    uri = "kafka://broker:9092/t?sasl.password=hunter2&ssl.key.password=k3y&grup=1"
    with pytest.raises(ConfigError) as caught:
        open_source(SourceSpec(uri))
    assert "hunter2" not in str(caught.value) and "k3y" not in str(caught.value)
    assert redact_uri(uri) == (
        "kafka://broker:9092/t?sasl.password=***&ssl.key.password=***&grup=1"
    )


def test_unreachable_brokers_are_a_source_error_within_the_timeout():
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"did not answer within 0.5 s.*127.0.0.1:1") as caught:
        open_source(SourceSpec("kafka://127.0.0.1:1/ticks?timeout_s=0.5&features=a"))
    assert time.monotonic() - started < 5.0
    assert "\n" not in str(caught.value)


def test_missing_topic_is_a_config_error_naming_the_topics_there(kafka, json_topic):
    with pytest.raises(ConfigError, match=f"topic 'no-such-topic' does not exist.*{json_topic}"):
        open_source(SourceSpec(kafka.uri("no-such-topic", features="x0")))


def test_reader_errors_say_what_to_do(kafka, json_topic):
    source = open_source(SourceSpec(features_uri(kafka, json_topic)))
    with pytest.raises(SourceError, match=r"no partition 9; topic .* has partitions"):
        source.open(9)
    with pytest.raises(SourceError, match=r"offset 26 is past the partition's end \(25\)"):
        source.open(0, offset=26)
    reader = source.open(0)
    with pytest.raises(ConfigError, match=r"max_rows \(0\) must be"):
        reader.read_batch(0)
    with pytest.raises(SourceError, match=r"cannot commit offset 3: expected 0..0.*partition 0"):
        reader.commit(3)
    reader.close()
    reader.close()  # closing twice is harmless
    with pytest.raises(SourceError, match="the reader is closed; reopen the partition at offset 0"):
        reader.read_batch(5)


def test_offsets_lost_to_retention_are_skipped_with_a_warning(kafka, caplog):
    # The mock keeps about the newest 5 MiB of a partition, like retention would.
    topic = kafka.create_topic()
    big = rows(0, 0, 4000)
    kafka.produce(topic, {0: [big] * 100}, format="arrow", rows_per_message=1000)
    uri = features_uri(kafka, topic, format="arrow", group="retention-test")
    source = open_source(SourceSpec(uri))
    with caplog.at_level(logging.WARNING, logger="pipelines.sources.kafka"):
        reader = source.open(0, offset=0)
    low = reader.position
    assert 0 < low < 400
    assert f"no longer holds offsets 0..{low - 1} (retention); reading on from {low}" in caplog.text
    first = reader.read_batch(1000)
    assert first.first_offset == low and first.row_offsets().tolist() == [low] * 1000
    reader.commit(0)  # a checkpoint older than what the topic still holds
    reader.close()
    assert source.open(0).position >= low  # resumes where data still is


def test_key_and_event_time_are_carried_along(kafka):
    topic = kafka.create_topic()
    keyed = rows(0, 0, 2).append_column("id", pa.array(["a", "b"]))
    keyed = keyed.append_column("ts", pa.array([10, 11], pa.int64()))
    unkeyed = rows(0, 2, 1)  # no id, no ts: they are null there
    kafka.produce(topic, {0: [keyed, unkeyed]}, format="arrow")
    uri = features_uri(kafka, topic, format="arrow", key="id", event_time="ts")
    source = open_source(SourceSpec(uri))
    (batch,) = read_all(source.open(0), 100)
    assert batch.batch.column("id").to_pylist() == ["a", "b", None]
    assert batch.batch.column("ts").to_pylist() == [10, 11, None]
    json_topic = kafka.create_topic()
    kafka.produce_messages(
        json_topic,
        {
            0: [
                b'{"x0": 1, "x1": 1, "x2": 1, "label": 0, "id": 7}',
                b'{"x0": 2, "x1": 2, "x2": 2, "label": 1, "id": "k-8"}',
            ]
        },
    )
    json_source = open_source(SourceSpec(features_uri(kafka, json_topic, key="id")))
    (batch,) = read_all(json_source.open(0), 100)
    assert batch.batch.column("id").to_pylist() == ["7", "k-8"]  # mixed types: as text
    assert batch.batch.column("x0").to_pylist() == [1.0, 2.0]


def test_without_confluent_kafka_the_registry_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pipelines.sources.kafka", None)
    with pytest.raises(ConfigError, match=r"pip install 'online-ensemble\[kafka\]'"):
        open_source(SourceSpec("kafka://broker:9092/ticks"))


def test_producer_helper_refuses_bad_arguments(kafka):
    with pytest.raises(ConfigError, match="format='csv' is not supported"):
        kafka.produce("t", {0: [rows(0, 0, 1)]}, format="csv")
    with pytest.raises(ConfigError, match=r"rows_per_message \(0\) must be"):
        kafka.produce("t", {0: [rows(0, 0, 1)]}, format="arrow", rows_per_message=0)


def test_a_commit_the_brokers_do_not_confirm_is_a_source_error_within_the_timeout():
    with MockKafka() as lonely:
        topic = lonely.create_topic()
        lonely.produce(topic, {0: [rows(0, 0, 3)]})
        uri = lonely.uri(topic, features="x0,x1,x2", eof="stop", timeout_s=0.5)
        reader = open_source(SourceSpec(uri)).open(0)
        assert reader.read_batch(10).batch.num_rows == 3
    started = time.monotonic()  # the cluster is gone
    with pytest.raises(SourceError, match=r"commit of offset 3 .* not confirmed within 0.5 s"):
        reader.commit(3)
    assert time.monotonic() - started < 3.0
    assert reader.committed is None
    started = time.monotonic()
    reader.close()  # does not wait the default 45 s for the commit still outstanding
    assert time.monotonic() - started < 3.0
