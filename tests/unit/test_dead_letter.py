"""Dead-letter sinks: count-only, JSON lines on disk, in memory, a Kafka topic."""

from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pytest

from actors.errors import ConfigError, SourceError
from pipelines.dead_letter import (
    DeadLetterSink,
    KafkaDeadLetterSink,
    MemoryDeadLetterSink,
    dead_letter_record,
    open_dead_letter_sink,
)
from pipelines.schema import DeadLetter, StreamSchema

LETTERS = [
    DeadLetter(partition=0, offset=5, reason="null value in column 'a'", record="{'a': None}"),
    DeadLetter(partition=2, offset=9, reason="non-finite value in column 'b'", record="{}"),
]


def test_none_path_counts_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with DeadLetterSink(None, member_id=1) as sink:
        assert sink.write(LETTERS) == 2
        assert sink.write([]) == 0
        assert sink.count == 2
    assert list(tmp_path.iterdir()) == []


def test_json_lines_append_one_object_per_record(tmp_path):
    path = tmp_path / "report" / "dead_letter.jsonl"
    sink = DeadLetterSink(path, member_id=3)
    assert not path.exists()  # nothing is created until there is something to write
    sink.write(LETTERS[:1])
    sink.write(iter(LETTERS[1:]))
    sink.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "member": 3,
            "partition": 0,
            "offset": 5,
            "reason": "null value in column 'a'",
            "record": "{'a': None}",
        },
        {
            "member": 3,
            "partition": 2,
            "offset": 9,
            "reason": "non-finite value in column 'b'",
            "record": "{}",
        },
    ]
    assert sink.count == 2


def test_json_lines_append_to_an_existing_file(tmp_path):
    path = tmp_path / "dead.jsonl"
    path.write_text('{"earlier": true}\n')
    DeadLetterSink(str(path), member_id="m7").write(LETTERS)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0]) == {"earlier": True}
    assert json.loads(lines[2])["member"] == "m7"


def test_sink_pickles_and_keeps_appending(tmp_path):
    path = tmp_path / "dead.jsonl"
    sink = DeadLetterSink(path, member_id=0)
    sink.write(LETTERS[:1])
    copy = pickle.loads(pickle.dumps(sink))
    copy.write(LETTERS[1:])
    assert copy.count == 2
    assert len(path.read_text().splitlines()) == 2


def test_memory_sink_keeps_records():
    sink = MemoryDeadLetterSink(member_id=4)
    sink.write(LETTERS)
    assert sink.count == 2
    assert sink.records == [dead_letter_record(letter, 4) for letter in LETTERS]
    assert sink.records[1]["offset"] == 9


def test_bad_paths_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        DeadLetterSink(tmp_path)
    with pytest.raises(ConfigError, match="empty"):
        DeadLetterSink("  ")


def test_validation_dead_letters_reach_the_sink(tmp_path):
    schema = StreamSchema(features=("a",))
    batch = pa.RecordBatch.from_pydict(
        {"a": [1.0, None, float("nan"), 4.0], "label": [0.0, 1.0, 1.0, 0.0]}
    )
    validated = schema.validate(batch, partition=1, first_offset=40)
    sink = DeadLetterSink(tmp_path / "dead.jsonl", member_id=2)
    sink.write(validated.dead_letters)
    assert validated.rows + sink.count == batch.num_rows
    written = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(r["partition"], r["offset"]) for r in written] == [(1, 41), (1, 42)]


# --- Kafka topic sink (librdkafka's mock cluster) ----------------------------------------


@pytest.fixture(scope="module")
def kafka():
    from tests.kafka_cluster import MockKafka

    with MockKafka() as cluster:
        yield cluster


def test_kafka_sink_round_trips_records_to_a_topic(kafka):
    topic = kafka.create_topic()
    sink = KafkaDeadLetterSink(kafka.uri(topic), member_id="m1")
    copy = pickle.loads(pickle.dumps(sink))  # Ray ships the sink before its first write
    assert copy.write(LETTERS) == 2
    assert copy.write([]) == 0
    copy.flush()
    copy.close()
    assert copy.count == 2 and copy.undelivered == 0
    messages = kafka.consume_all(topic)
    records = sorted((json.loads(m.value()) for m in messages), key=lambda r: r["offset"])
    assert records == [dead_letter_record(letter, "m1") for letter in LETTERS]
    assert {m.key() for m in messages} == {b"0", b"2"}  # keyed by source partition


def test_kafka_sink_from_bootstrap_and_topic(kafka):
    topic = kafka.create_topic()
    with KafkaDeadLetterSink(kafka.bootstrap, topic, member_id=5) as sink:
        sink.write(LETTERS[:1])
    assert [json.loads(m.value())["member"] for m in kafka.consume_all(topic)] == [5]


def test_kafka_sink_reports_undelivered_records():
    sink = KafkaDeadLetterSink("kafka://127.0.0.1:1/dead?timeout_s=0.3", member_id=0)
    sink.write(LETTERS)  # queued: writing never blocks on the broker
    assert sink.count == 2
    with pytest.raises(SourceError, match=r"2 dead letter\(s\) of member 0 were not delivered"):
        sink.flush()
    assert sink.undelivered == 2
    sink.close()  # logs instead of raising


def test_open_dead_letter_sink_picks_by_target(tmp_path):
    assert type(open_dead_letter_sink(None, member_id=1)) is DeadLetterSink
    file_sink = open_dead_letter_sink(tmp_path / "dead.jsonl", member_id=1)
    assert type(file_sink) is DeadLetterSink and file_sink.path == tmp_path / "dead.jsonl"
    kafka_sink = open_dead_letter_sink("kafka://broker:9092/dead-letters", member_id=1)
    assert isinstance(kafka_sink, KafkaDeadLetterSink)
    assert (kafka_sink.bootstrap, kafka_sink.topic) == ("broker:9092", "dead-letters")
    file_sink.flush()  # a file sink has nothing to flush


@pytest.mark.parametrize(
    ("target", "topic", "expected"),
    [
        ("kafka://broker:9092", None, "names no topic"),
        ("kafka://broker:9092/a", "b", "topic given twice"),
        ("kafka://broker:9092/a?group=x", None, "unknown option 'group'"),
        ("kafka://broker:9092/a?timeout_s=0", None, "timeout_s='0' is not valid"),
        ("broker:9092", None, "needs brokers and a topic"),
    ],
)
def test_bad_kafka_sink_targets_are_config_errors(target, topic, expected):
    with pytest.raises(ConfigError, match=expected):
        KafkaDeadLetterSink(target, topic, member_id=0)
