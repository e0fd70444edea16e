"""A Kafka topic as a stream source (``kafka://``), read with confluent-kafka.

URI: ``kafka://host:port[,host2:port2]/topic?option=value&...``. Options:

- ``group``: the consumer group whose committed offsets `KafkaSource.open` resumes from
  and `KafkaPartitionReader.commit` writes (default ``online-ensemble``). Readers never
  join the group (no ``subscribe``): the coordinator assigns partitions to members and
  each reader ``assign``-s exactly its own, so Kafka never rebalances behind its back.
- ``format``: ``json`` (default; one JSON object per message) or ``arrow`` (each
  message one Arrow IPC *stream* of one or more record batches).
- ``features``: comma list of feature fields; default: every numeric (or boolean) field
  of the first message of the lowest non-empty partition other than the label, key and
  event-time fields (logged at INFO).
- ``label`` (default ``label``), ``key``, ``event_time``: as for the file source; key and
  event time are carried along, not learned from.
- ``eof``: ``wait`` (default): partitions are *live*; a read with nothing new returns an
  empty batch after ``max_wait_s``. ``stop``: partitions are *bounded*; a read returns
  None once it reaches the end of the partition as it stands then (tests, benches,
  backfills).
- ``timeout_s``: bound on every blocking call to the brokers (metadata, watermarks,
  committed offsets, a commit's confirmation, closing a reader, a bounded read's wait
  for a fetch); default 10.
- a name with a dot is a librdkafka consumer setting, passed through:
  ``security.protocol=SASL_SSL&sasl.mechanism=PLAIN``, ``fetch.max.bytes=...``; the ones
  the source owns (`RESERVED_SETTINGS`) are refused, and so is any other name, with the
  list above. Values of settings that look secret (password, secret, token, key
  material) are masked in messages and logs.

Offsets are Kafka message offsets. They are committed only by `commit`, which a member
calls after the checkpoint holding them is written (``enable.auto.commit=false``).

Records. JSON messages are joined by newlines and parsed a batch at a time by
`pyarrow.json`; a batch that fails is parsed message by message, so a bad message is one
dead letter, not a failed batch. A message that is empty, not JSON, not an object, lacks
a feature or the label, or holds a value that is not a number (booleans count as 0/1)
becomes a source dead letter (`SourceBatch.dead_letters`) with its reason; nulls and
non-finite numbers (``NaN``, ``Infinity``) stay in the rows for `StreamSchema.validate`
to reject. An Arrow message that is not an IPC stream is one dead letter; every row of a
message that lacks a column or has a non-numeric one is a dead letter; all other rows
are kept, each at its message's offset. Rows plus source dead letters account for every
record produced. Lag (`high_watermark` minus `position`) counts messages: rows for JSON,
but for Arrow one message holds many rows.

Speed: a JSON message with numbers only takes the fast path (booleans, a field that
changes type, or a bad message send its batch through the slow one, several times
slower); reading an Arrow message costs about 20 µs whatever its size, so give Arrow
messages hundreds of rows or more.

`produce_batches` and `produce_messages` write topics in these formats (tests, benches,
and feeding a topic from files).

Example:
    >>> source = open_kafka_source(  # doctest: +SKIP
    ...     SourceSpec("kafka://localhost:9092/ticks?format=arrow&eof=stop")
    ... )
    >>> reader = source.open(0)  # doctest: +SKIP
    >>> reader.read_batch(512, max_wait_s=0.1).batch.num_rows  # doctest: +SKIP
    512
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from actors.errors import ConfigError, SchemaError, SourceError
from pipelines.schema import StreamSchema
from pipelines.sources._kafka_records import (
    ArrowDecoder,
    Decoded,
    JsonDecoder,
    as_batch,
    encode_arrow,
    encode_json,
    field_kinds,
    merge,
    output_schema,
)
from pipelines.sources.base import SourceBatch, SourceSpec

__all__ = [
    "DEFAULT_GROUP",
    "FORMATS",
    "RESERVED_SETTINGS",
    "KafkaOptions",
    "KafkaPartitionReader",
    "KafkaSource",
    "encode_arrow",
    "encode_json",
    "open_kafka_source",
    "parse_kafka_uri",
    "produce_batches",
    "produce_messages",
    "redact_uri",
]

logger = logging.getLogger(__name__)


class _RepeatFilter(logging.Filter):
    """Drops a librdkafka line that repeats one logged within `window_s` (a broker that is
    down is otherwise reported on every reconnect attempt, ten times a second)."""

    def __init__(self, window_s: float = 60.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = _TIMINGS.sub("", record.getMessage())
        now = time.monotonic()
        if now - self._seen.get(key, -math.inf) < self.window_s:
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = now
        return True


_TIMINGS = re.compile(r"\(after \d+ms[^)]*\)|\d+ms")
_librdkafka_logger = logging.getLogger(__name__ + ".librdkafka")
_librdkafka_logger.addFilter(_RepeatFilter())

FORMATS = ("json", "arrow")
"""Message formats: one JSON object per message, or one Arrow IPC stream per message."""

RESERVED_SETTINGS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "auto.offset.reset",
    }
)
"""librdkafka settings the source sets itself (from the URI's host, ``group``, ``eof``)."""

DEFAULT_GROUP = "online-ensemble"

_OPTIONS = ("group", "format", "features", "label", "key", "event_time", "eof", "timeout_s")
_EOF_MODES = ("wait", "stop")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SECRET_WORDS = ("password", "secret", "token", "pem", "jaas", ".key")
_INFER_MESSAGES = 100  # messages tried for a parsable one when inferring the features
_FETCH_MESSAGES = 4096  # messages moved from librdkafka's queue per call
_DECODE_MESSAGES = 4096  # JSON messages decoded per pyarrow.json call, at least


# --- options -----------------------------------------------------------------------------


def parse_kafka_uri(uri: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Split ``kafka://host:port[,host:port]/topic?a=b`` into its parts.

    Args:
        uri: the URI.

    Returns:
        ``(bootstrap servers, topic, query pairs in order)``.

    Raises:
        ConfigError: if the scheme is not ``kafka``, the broker or topic is missing, or
            the topic is not a legal Kafka topic name.
    """
    parts = urlsplit(uri)
    shown = redact_uri(uri)
    if parts.scheme.lower() != "kafka":
        raise ConfigError(f"expected a kafka://host:port/topic URI, got {shown!r}")
    if "@" in parts.netloc:
        raise ConfigError(
            f"credentials in the host part of {shown!r} are not used; pass librdkafka "
            "settings instead, e.g. ?sasl.username=U&sasl.password=P"
        )
    bootstrap = parts.netloc
    if not bootstrap or any(not host.strip() for host in bootstrap.split(",")):
        raise ConfigError(
            f"kafka URI {shown!r} names no broker; expected kafka://host:port/topic "
            "(several brokers: kafka://host1:9092,host2:9092/topic)"
        )
    topic = parts.path.strip("/")
    if not topic:
        raise ConfigError(f"kafka URI {shown!r} names no topic; expected kafka://{bootstrap}/TOPIC")
    if not _TOPIC_NAME.match(topic):
        raise ConfigError(
            f"{topic!r} (in {shown!r}) is not a Kafka topic name; expected 1 to 249 "
            "letters, digits, '.', '_' or '-'"
        )
    return bootstrap, topic, parse_qsl(parts.query, keep_blank_values=True)


def redact_uri(uri: str) -> str:
    """`uri` with the values of secret-looking librdkafka settings replaced by ``***``."""
    head, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        secret = "." in name and any(word in name.lower() for word in _SECRET_WORDS)
        pairs.append(f"{name}{eq}***" if secret and value else part)
    return head + "?" + "&".join(pairs)


@dataclass(frozen=True)
class KafkaOptions:
    """A parsed ``kafka://`` source URI; see the module docstring for each option.

    Args:
        bootstrap: comma list of ``host:port`` brokers.
        topic: the topic.
        group: consumer group of the committed offsets.
        format: ``json`` or ``arrow``.
        features: feature fields; None infers them from the first message.
        label: label field.
        key: optional key field, carried.
        event_time: optional event-time field, carried.
        eof: ``wait`` (live partitions) or ``stop`` (bounded partitions).
        timeout_s: bound on each blocking broker call, > 0.
        settings: librdkafka consumer settings passed through, ``(name, value)`` pairs.

    Raises:
        ConfigError: on a value out of range or a reserved librdkafka setting.
    """

    bootstrap: str
    topic: str
    group: str = DEFAULT_GROUP
    format: str = "json"
    features: tuple[str, ...] | None = None
    label: str = "label"
    key: str | None = None
    event_time: str | None = None
    eof: str = "wait"
    timeout_s: float = 10.0
    settings: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(
                f"kafka format={self.format!r} is not supported; expected one of "
                + ", ".join(FORMATS)
            )
        if self.eof not in _EOF_MODES:
            raise ConfigError(
                f"kafka eof={self.eof!r} is not valid; expected 'wait' (live partitions, the "
                "default) or 'stop' (end at the partition's end: backfills, tests)"
            )
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"kafka timeout_s ({self.timeout_s}) must be a number of seconds > 0")
        if not self.group.strip():
            raise ConfigError("kafka group is empty; expected a consumer group name")
        if self.features is not None and not all(self.features):
            raise ConfigError(
                f"kafka features={','.join(self.features)!r} has an empty name; expected a "
                "comma list of field names"
            )
        reserved = sorted(name for name, _ in self.settings if name in RESERVED_SETTINGS)
        if reserved:
            raise ConfigError(
                f"librdkafka setting(s) {reserved} are the source's own: the brokers come "
                "from the URI's host, group.id from ?group=, partition EOF from ?eof=, and "
                "offsets are committed only after a checkpoint"
            )

    @classmethod
    def from_uri(cls, uri: str) -> KafkaOptions:
        """Parse a ``kafka://`` source URI.

        Raises:
            ConfigError: on a missing broker or topic, an unknown, repeated or empty
                option, or a bad value; the message names the option and what it takes.
        """
        bootstrap, topic, pairs = parse_kafka_uri(uri)
        shown = redact_uri(uri)
        values: dict[str, str] = {}
        settings: dict[str, str] = {}
        for name, value in pairs:
            if name in values or name in settings:
                raise ConfigError(f"kafka option {name!r} is given twice in {shown!r}")
            if not value.strip():
                raise ConfigError(f"kafka option {name}= is empty in {shown!r}")
            if "." in name:
                settings[name] = value.strip()
            elif name in _OPTIONS:
                values[name] = value.strip()
            else:
                raise ConfigError(
                    f"unknown kafka option {name!r} in {shown!r}; expected one of "
                    f"{', '.join(_OPTIONS)}, or a librdkafka setting (a name with a dot, "
                    "e.g. security.protocol)"
                )
        features = values.get("features")
        return cls(
            bootstrap=bootstrap,
            topic=topic,
            group=values.get("group", DEFAULT_GROUP),
            format=values.get("format", "json").lower(),
            features=None if features is None else tuple(f.strip() for f in features.split(",")),
            label=values.get("label", "label"),
            key=values.get("key"),
            event_time=values.get("event_time"),
            eof=values.get("eof", "wait").lower(),
            timeout_s=_parse_seconds(values["timeout_s"]) if "timeout_s" in values else 10.0,
            settings=tuple(settings.items()),
        )

    @property
    def bounded(self) -> bool:
        """Whether partitions end (``eof=stop``) instead of waiting for new messages."""
        return self.eof == "stop"

    @property
    def carried(self) -> tuple[str, ...]:
        """The key and event-time fields that are configured."""
        return tuple(c for c in (self.key, self.event_time) if c is not None)


# --- source ------------------------------------------------------------------------------


class KafkaSource:
    """The partitions of one Kafka topic, each read by its own `KafkaPartitionReader`.

    Opening the source checks that the brokers answer and that the topic exists, and
    infers the features from the first message when ``features`` is not given. Each
    metadata call uses a short-lived consumer, so the source itself holds no connection
    (the protocol has no ``close`` for a source).

    Args:
        spec: the source spec; `spec.uri` is the ``kafka://`` URI. `spec.partitions`,
            `rows`, `seed` and `follow` do not apply: a topic has its own partitions, and
            ``eof`` decides whether they end.

    Raises:
        ConfigError: on a bad URI or option, a topic that does not exist, a librdkafka
            setting librdkafka refuses, or features that cannot be inferred.
        SourceError: if the brokers do not answer within ``timeout_s``.
    """

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.options = KafkaOptions.from_uri(spec.uri)
        self.display_uri = redact_uri(spec.uri)
        self._partition_ids = self.partitions()
        self.schema = self._declared_schema()

    @property
    def topic(self) -> str:
        return self.options.topic

    def partitions(self) -> list[int]:
        """The topic's partition ids, from the brokers' metadata (asked on each call).

        Raises:
            ConfigError: if the topic does not exist.
            SourceError: if the brokers do not answer within ``timeout_s``.
        """
        with _closing(self.consumer()) as client:
            return self._topic_partitions(client)

    def open(self, partition: int, offset: int | None = None) -> KafkaPartitionReader:
        """Open `partition` positioned at `offset`.

        Args:
            partition: a partition id of the topic.
            offset: the message offset to read from; None resumes from the group's
                committed offset for the partition, or from its oldest retained message
                when the group has committed none.

        Raises:
            SourceError: if the partition does not exist, `offset` is past its end, or the
                brokers do not answer within ``timeout_s``.
        """
        return KafkaPartitionReader(self, partition, offset)

    def consumer(self, partition: int | None = None, on_commit: Any = None) -> Consumer:
        """A new consumer with this source's settings.

        Args:
            partition: names the client (``client.id``) after the partition it reads.
            on_commit: librdkafka's commit callback, ``(error, partitions) -> None``.

        Raises:
            ConfigError: if librdkafka refuses a passed-through setting.
        """
        options = self.options
        config: dict[str, Any] = {
            "bootstrap.servers": options.bootstrap,
            "group.id": options.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": options.bounded,
            # Used only when an assigned offset is no longer retained: read on from the
            # oldest retained message instead of stalling.
            "auto.offset.reset": "earliest",
            # A reader never joins the group, so the session timeout only bounds how long
            # librdkafka waits for a group coordinator that is gone (in a commit, at
            # close): 45 s by default.
            "session.timeout.ms": max(int(options.timeout_s * 1000), 1),
            "client.id": f"online-ensemble-{options.topic}"
            + ("" if partition is None else f"-p{partition}"),
            "log.connection.close": False,
            "logger": _librdkafka_logger,
        }
        if on_commit is not None:
            config["on_commit"] = on_commit
        config.update(options.settings)
        try:
            return Consumer(config)
        except KafkaException as exc:
            raise ConfigError(
                f"librdkafka refused the settings of {self.display_uri!r}: {_reason(exc)}"
            ) from exc

    def _topic_partitions(self, client: Consumer) -> list[int]:
        timeout = self.options.timeout_s
        deadline = time.monotonic() + timeout
        while True:
            try:
                metadata = client.list_topics(
                    self.topic, timeout=max(deadline - time.monotonic(), 0.01)
                )
            except KafkaException as exc:
                raise SourceError(
                    f"the Kafka brokers {self.options.bootstrap} did not answer within "
                    f"{timeout:g} s ({_reason(exc)}); check the host and port, or raise "
                    "?timeout_s=",
                    uri=self.display_uri,
                ) from exc
            topic = metadata.topics.get(self.topic)
            error = None if topic is None else topic.error
            if topic is not None and error is None and topic.partitions:
                return sorted(topic.partitions)
            if error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise ConfigError(
                    f"Kafka topic {self.topic!r} does not exist on {self.options.bootstrap} "
                    f"(source {self.display_uri!r}); topics there: {self._topic_names(client)}"
                )
            if error is not None and not error.retriable():
                raise SourceError(
                    f"cannot read the metadata of topic {self.topic!r}: {error.str()}",
                    uri=self.display_uri,
                )
            if time.monotonic() >= deadline:
                reason = "it has no partitions" if error is None else error.str()
                raise SourceError(
                    f"topic {self.topic!r} is not ready within {timeout:g} s ({reason})",
                    uri=self.display_uri,
                )
            time.sleep(0.05)  # a topic being created: its leaders are not elected yet

    def _topic_names(self, client: Consumer) -> str:
        try:
            metadata = client.list_topics(timeout=self.options.timeout_s)
        except KafkaException:
            return "(could not list them)"
        names = sorted(n for n in metadata.topics if not n.startswith("__"))
        shown = ", ".join(names[:20])
        if len(names) > 20:
            shown += f", ... ({len(names)} in all)"
        return shown or "(none)"

    def _declared_schema(self) -> StreamSchema:
        options = self.options
        features = options.features if options.features is not None else self._infer()
        try:
            return StreamSchema(
                features=features,
                label=options.label,
                key=options.key,
                event_time=options.event_time,
            )
        except SchemaError as exc:
            raise ConfigError(f"{exc} (source {self.display_uri!r})") from exc

    def _infer(self) -> tuple[str, ...]:
        """The numeric fields of the first parsable message of the lowest non-empty
        partition."""
        options = self.options
        with _closing(self.consumer()) as client:
            for partition in self._partition_ids:
                tp = TopicPartition(self.topic, partition)
                low, high = _watermarks(client, tp, options.timeout_s, self.display_uri)
                if high <= low:
                    continue
                client.assign([TopicPartition(self.topic, partition, low)])
                count = min(high - low, _INFER_MESSAGES)
                for message in _first_messages(client, count, options.timeout_s):
                    fields = field_kinds(message.value(), options.format)
                    if fields is not None:
                        where = (
                            f"the first message of partition {partition} "
                            f"(offset {_offset(message)})"
                        )
                        return self._pick_features(fields, where)
                client.unassign()
        raise ConfigError(
            f"cannot infer the features of {self.display_uri!r}: no partition holds a "
            f"parsable {options.format} message yet; pass ?features=a,b,c"
        )

    def _pick_features(self, fields: dict[str, bool], where: str) -> tuple[str, ...]:
        options = self.options
        roles = (("label", options.label), ("key", options.key), ("event_time", options.event_time))
        for role, name in roles:
            if name is not None and name not in fields:
                raise ConfigError(
                    f"{role} field {name!r} not found in {where} of {self.display_uri!r}; "
                    f"its fields are {list(fields)}; pass ?{role}=NAME"
                )
        carried = {options.label, *options.carried}
        features = tuple(
            name for name, numeric in fields.items() if numeric and name not in carried
        )
        if not features:
            raise ConfigError(
                f"no numeric feature fields in {where} of {self.display_uri!r} (fields "
                f"{list(fields)}, label {options.label!r}); pass ?features=a,b,c"
            )
        ignored = [name for name, numeric in fields.items() if not numeric and name not in carried]
        logger.info(
            "%s: inferred features %s from %s%s",
            self.display_uri,
            list(features),
            where,
            f"; not using non-numeric field(s) {ignored}" if ignored else "",
        )
        return features

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display_uri!r})"


class _closing:
    """``with _closing(consumer) as c:`` closes a short-lived metadata consumer."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def __enter__(self) -> Consumer:
        return self.consumer

    def __exit__(self, *exc_info: object) -> None:
        self.consumer.close()


# --- partition reader --------------------------------------------------------------------


class KafkaPartitionReader:
    """One partition of a `KafkaSource`, read forward by a consumer of its own.

    Why a consumer per partition: a consumer assigned several partitions hands their
    messages back interleaved, so a shared one would need a demultiplexer with a buffer
    per partition, and closing one partition on a reassignment would disturb the rest.
    A member holds one to a few partitions and a librdkafka consumer costs a few threads
    and one connection per broker, so one each keeps every reader independent: it is
    positioned, committed and closed on its own. The consumer is ``assign``-ed this one
    partition and never subscribes, so the group never rebalances it.

    Attributes:
        partition: the partition id.
        committed: the offset this reader committed last (None before its first commit).
    """

    def __init__(self, source: KafkaSource, partition: int, offset: int | None = None) -> None:
        self.partition = partition
        self.committed: int | None = None
        self._options = options = source.options
        self._uri = source.display_uri
        if partition not in source._partition_ids and partition not in source.partitions():
            raise SourceError(
                f"no partition {partition}; topic {source.topic!r} has partitions "
                f"{source._partition_ids}",
                uri=self._uri,
            )
        self._schema = source.schema
        self._columns = (*source.schema.features, source.schema.label)
        self._output = output_schema(source.schema, options.carried)
        self._json = JsonDecoder(self._columns, options.carried, partition)
        self._arrow = ArrowDecoder(self._columns, options.carried, partition)
        self._tp = TopicPartition(options.topic, partition)
        self._pending: deque[Message] = deque()
        self._held: tuple[int, Decoded] | None = None  # an Arrow message for the next batch
        self._ahead: tuple[np.ndarray, Decoded] | None = None  # JSON decoded ahead: _read_json
        self._at_end = False  # eof=stop: the partition's end was reached ...
        self._end = 0  # ... at this offset
        self._opened_high = 0  # the partition's end when it was opened
        self._watermark = 0
        self._closed = False
        self._commits: dict[int, str | None] = {}  # offset -> error of its commit, once done
        self._consumer = source.consumer(partition, on_commit=self._on_commit)
        try:
            self._position = self._start_offset(offset)
            self._consumer.assign([TopicPartition(options.topic, partition, self._position)])
            self._taken = self._position  # one past the last message taken from librdkafka
        except BaseException:
            self._consumer.close()
            raise
        logger.debug("%s: opened partition %d at offset %d", self._uri, partition, self._position)

    @property
    def position(self) -> int:
        """Offset of the next message `read_batch` returns."""
        return self._position

    def read_batch(self, max_rows: int, max_wait_s: float = 0.0) -> SourceBatch | None:
        """Up to `max_rows` rows from the current position.

        Live (``eof=wait``): waits up to `max_wait_s` for a first message, and returns an
        empty batch if none came. Bounded (``eof=stop``): fills the batch from what the
        partition holds, waiting only for fetches, and returns None once it has reached
        the partition's end.

        A batch holds at most `max_rows` messages, and at most `max_rows` rows plus dead
        letters, with one exception: an Arrow message is never split (its rows share
        its offset), so a first message larger than `max_rows` comes whole.

        Raises:
            ConfigError: if `max_rows` < 1.
            SourceError: if the reader is closed, the consumer fails fatally, or a bounded
                read gets neither a message nor the partition's end within ``timeout_s``.
        """
        if max_rows < 1:
            raise ConfigError(f"max_rows ({max_rows}) must be an integer >= 1")
        if self._closed:
            raise SourceError(
                f"the reader is closed; reopen the partition at offset {self._position}",
                uri=self._uri,
                partition=self.partition,
            )
        start = self._position
        if self._options.format == "arrow":
            decoded = self._read_arrow(max_rows, max_wait_s)
        else:
            decoded = self._read_json(max_rows, max_wait_s)
        if self._at_end and self._held is None and self._ahead is None:
            # Transaction markers may sit between the last message and the end.
            self._position = max(self._position, self._end)
        if decoded.items == 0 and self._position == start and self._at_end:
            return None
        if decoded.table is None or decoded.table.num_rows == 0:
            rows = pa.RecordBatch.from_pylist([], schema=self._output)
        else:
            rows = as_batch(decoded.table)
        return SourceBatch(
            partition=self.partition,
            first_offset=int(decoded.offsets[0]) if rows.num_rows else start,
            batch=rows,
            offsets=decoded.offsets if rows.num_rows else None,
            end_offset=self._position,
            dead_letters=tuple(decoded.dead),
        )

    def high_watermark(self) -> int:
        """Offset one past the partition's newest message, as last seen.

        The value comes with every fetch response (librdkafka keeps it; an idle consumer
        still fetches every ``fetch.wait.max.ms``), so asking costs no round trip, and
        never waits behind a fetch that is waiting for new messages, as a ListOffsets
        request to the same broker would. Before the first fetch: the end at open. Lag
        counts messages, which for the Arrow format are not rows.
        """
        if not self._closed:
            self._watermark = max(self._watermark, self._known_end())
        return self._watermark

    def commit(self, offset: int) -> None:
        """Commit `offset` as the group's position in this partition, synchronously.

        Members call it only after a checkpoint holding `offset` is written.

        Raises:
            SourceError: if `offset` is negative or past the messages read so far, the
                reader is closed, or the commit fails or times out (with the reason).
        """
        if not 0 <= offset <= self._position:
            raise SourceError(
                f"cannot commit offset {offset}: expected 0..{self._position} "
                "(the messages read so far)",
                uri=self._uri,
                partition=self.partition,
            )
        if self._closed:
            raise SourceError(
                f"cannot commit offset {offset}: the reader is closed",
                uri=self._uri,
                partition=self.partition,
            )
        target = TopicPartition(self._options.topic, self.partition, offset)
        group, timeout = self._options.group, self._options.timeout_s
        self._commits.pop(offset, None)
        try:
            # Asynchronous, then waited for: a synchronous commit cannot be given a
            # timeout, and waits about 45 s for a coordinator that is gone.
            self._consumer.commit(offsets=[target], asynchronous=True)
            deadline = time.monotonic() + timeout
            while offset not in self._commits:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(
                        f"commit of offset {offset} for group {group!r} not confirmed within "
                        f"{timeout:g} s (the brokers may be away; the offset stays uncommitted "
                        "until a later commit)",
                        uri=self._uri,
                        partition=self.partition,
                    )
                # Serving the callback also hands out messages: they are the next ones.
                message = self._consumer.poll(min(remaining, 0.05))
                if message is not None:
                    self._pending.append(message)
        except KafkaException as exc:
            raise SourceError(
                f"cannot commit offset {offset} for group {group!r}: {_reason(exc)}",
                uri=self._uri,
                partition=self.partition,
            ) from exc
        error = self._commits.pop(offset)
        if error is not None:
            raise SourceError(
                f"cannot commit offset {offset} for group {group!r}: {error}",
                uri=self._uri,
                partition=self.partition,
            )
        self.committed = offset

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.partition == self.partition and tp.offset >= 0:
                failure = error or tp.error
                self._commits[tp.offset] = None if failure is None else failure.str()

    def close(self) -> None:
        """Close the consumer (committing nothing); later reads raise `SourceError`."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self._held = self._ahead = None
        self._consumer.close()

    def _start_offset(self, offset: int | None) -> int:
        low, high = _watermarks(self._consumer, self._tp, self._options.timeout_s, self._uri)
        self._opened_high = self._watermark = high
        if offset is None:
            offset = self._committed_offset()
            if offset is None:
                return low
        if offset < 0:
            raise SourceError(
                f"offset {offset} is negative", uri=self._uri, partition=self.partition
            )
        if offset > high:
            raise SourceError(
                f"offset {offset} is past the partition's end ({high}); was the topic "
                "recreated? Open at an explicit offset, or reset the group's offsets",
                uri=self._uri,
                partition=self.partition,
            )
        if offset < low:
            logger.warning(
                "%s: partition %d no longer holds offsets %d..%d (retention); reading on from %d",
                self._uri,
                self.partition,
                offset,
                low - 1,
                low,
            )
            return low
        return offset

    def _committed_offset(self) -> int | None:
        group = self._options.group
        try:
            (answer,) = self._consumer.committed([self._tp], timeout=self._options.timeout_s)
        except KafkaException as exc:
            raise SourceError(
                f"cannot read group {group!r}'s committed offset within "
                f"{self._options.timeout_s:g} s: {_reason(exc)}",
                uri=self._uri,
                partition=self.partition,
            ) from exc
        if answer.error is not None:
            raise SourceError(
                f"cannot read group {group!r}'s committed offset: {answer.error.str()}",
                uri=self._uri,
                partition=self.partition,
            )
        return answer.offset if answer.offset >= 0 else None

    def _read_json(self, max_rows: int, max_wait_s: float) -> Decoded:
        """The next `max_rows` JSON messages' rows and dead letters.

        Messages are decoded at least `_DECODE_MESSAGES` at a time, from what is already
        buffered, and the rest kept for the next reads: one `pyarrow.json` call has a
        fixed cost (it hands the block to an I/O thread) that small batches would pay
        on every read.
        """
        if self._ahead is None:
            messages: list[Message] = []
            wait = max_wait_s
            while len(messages) < max_rows or (self._pending and len(messages) < _DECODE_MESSAGES):
                taken = self._next_messages(max(max_rows, _DECODE_MESSAGES) - len(messages), wait)
                if not taken:
                    break
                messages += taken
                wait = 0.0
            if not messages:
                return Decoded(None, np.empty(0, dtype=np.int64), [])
            offsets = np.fromiter((m.offset() for m in messages), np.int64, count=len(messages))
            self._ahead = (offsets, self._json.decode(offsets, [m.value() for m in messages]))
        offsets, decoded = self._ahead
        taken_offsets, rest = offsets[:max_rows], offsets[max_rows:]
        end = int(taken_offsets[-1]) + 1
        head, tail = decoded.split(end)
        self._ahead = (rest, tail) if len(rest) else None
        self._position = end
        return head

    def _read_arrow(self, max_rows: int, max_wait_s: float) -> Decoded:
        parts: list[Decoded] = []
        items = 0  # rows and dead letters; a message counts at least one
        if self._held is not None:
            offset, decoded = self._held
            self._held = None
            parts.append(decoded)
            items += max(decoded.items, 1)
            self._position = offset + 1
        while items < max_rows:
            message = self._next_message(0.0 if parts else max_wait_s)
            if message is None:
                break
            offset = self._taken - 1
            decoded = self._arrow.decode(offset, message.value())
            weight = max(decoded.items, 1)
            if parts and items + weight > max_rows:
                self._held = (offset, decoded)  # it goes whole into the next batch
                break
            parts.append(decoded)
            items += weight
            self._position = offset + 1
        return merge(parts, self._columns)

    def _next_messages(self, limit: int, wait_s: float) -> list[Message]:
        """Up to `limit` data messages in a row (at least one, unless `_next_message`
        has none), taken from what is buffered without a call per message."""
        first = self._next_message(wait_s)
        if first is None:
            return []
        taken = [first]
        pending = self._pending
        while pending and len(taken) < limit and pending[0].error() is None:
            taken.append(pending.popleft())
        self._taken = _offset(taken[-1]) + 1
        return taken

    def _next_message(self, wait_s: float) -> Message | None:
        """The next data message; None when none came within `wait_s` (live) or at the
        partition's end (bounded: it waits up to ``timeout_s`` for a fetch)."""
        bounded = self._options.bounded
        deadline = time.monotonic() + (self._options.timeout_s if bounded else wait_s)
        while True:
            if not self._pending:
                if self._at_end:
                    return None
                self._fetch(0.0)
                if not self._pending and bounded and self._taken >= self._known_end():
                    # The end is known: no need to wait for librdkafka's EOF event, which
                    # comes only after a fetch that waited in vain for new messages.
                    self._at_end, self._end = True, self._taken
                    return None
                remaining = deadline - time.monotonic()
                if not self._pending and remaining > 0:
                    self._fetch(remaining)
                if not self._pending:
                    if bounded:
                        raise SourceError(
                            f"neither a message nor the partition's end came within "
                            f"{self._options.timeout_s:g} s at offset {self._position}; are "
                            "the brokers up? (raise ?timeout_s= for a slow cluster)",
                            uri=self._uri,
                            partition=self.partition,
                        )
                    return None
            message = self._pending.popleft()
            error = message.error()
            if error is None:
                self._taken = _offset(message) + 1
                return message
            if error.code() == KafkaError._PARTITION_EOF:
                if bounded:
                    self._at_end = True
                    self._end = _offset(message)
                    self._pending.clear()  # what arrived after the end is not read
                    return None
                continue
            if error.fatal():
                raise SourceError(
                    f"the consumer failed at offset {self._position}: {error.str()}",
                    uri=self._uri,
                    partition=self.partition,
                )
            # Transient (a broker restarting, a leader moving): librdkafka retries itself.
            logger.warning("%s: partition %d: %s", self._uri, self.partition, error.str())

    def _known_end(self) -> int:
        """The partition's end as last seen: the high watermark of the latest fetch, or
        else the one seen at open."""
        _, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        return int(high) if high >= 0 else self._opened_high

    def _fetch(self, wait_s: float) -> None:
        """Move what librdkafka has buffered into `_pending`, waiting up to `wait_s` for
        a first message (``consume`` would wait its whole timeout; ``poll`` returns at
        the first message)."""
        try:
            messages = self._consumer.consume(_FETCH_MESSAGES, timeout=0)
            if not messages and wait_s > 0:
                first = self._consumer.poll(wait_s)
                if first is not None:
                    messages = [first, *self._consumer.consume(_FETCH_MESSAGES - 1, timeout=0)]
        except KafkaException as exc:
            raise SourceError(
                f"cannot read at offset {self._position}: {_reason(exc)}",
                uri=self._uri,
                partition=self.partition,
            ) from exc
        self._pending.extend(messages)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._uri!r}, partition={self.partition}, "
            f"position={self._position})"
        )


def open_kafka_source(spec: SourceSpec) -> KafkaSource:
    """Open a ``kafka://`` stream.

    Args:
        spec: the source spec, e.g. ``SourceSpec("kafka://broker:9092/ticks?format=arrow")``.

    Returns:
        The `KafkaSource`.

    Raises:
        ConfigError: on a bad URI or option, a missing topic, or features not inferable.
        SourceError: if the brokers do not answer.
    """
    return KafkaSource(spec)


def _first_messages(client: Consumer, count: int, timeout_s: float) -> Iterator[Message]:
    """Up to `count` data messages of `client`'s assignment, within `timeout_s` in all."""
    deadline = time.monotonic() + timeout_s
    given = 0
    while given < count:
        remaining = deadline - time.monotonic()
        message = client.poll(remaining) if remaining > 0 else None
        if message is None:
            return
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return
            continue
        given += 1
        yield message


def _watermarks(
    client: Consumer, tp: TopicPartition, timeout_s: float, uri: str
) -> tuple[int, int]:
    try:
        low, high = client.get_watermark_offsets(tp, timeout=timeout_s)
    except KafkaException as exc:
        raise SourceError(
            f"cannot read the partition's offsets within {timeout_s:g} s: {_reason(exc)}",
            uri=uri,
            partition=tp.partition,
        ) from exc
    return int(low), int(high)


def _offset(message: Message) -> int:
    offset = message.offset()
    return -1 if offset is None else int(offset)


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _parse_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"kafka option timeout_s={text!r} is not valid; expected a number of seconds > 0"
        ) from None


# --- producing ---------------------------------------------------------------------------


def produce_messages(
    bootstrap: str,
    topic: str,
    partition_messages: Mapping[int, Iterable[bytes | None]],
    *,
    config: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
) -> dict[int, int]:
    """Produce message values to explicit partitions of `topic`, and wait for the acks.

    Args:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        topic: the topic (the broker creates it on first use where it allows that).
        partition_messages: partition -> message values, produced in order.
        config: extra librdkafka producer settings (security, compression, ...).
        timeout_s: how long to wait for every message to be acknowledged.

    Returns:
        Messages produced per partition.

    Raises:
        ConfigError: if librdkafka refuses a setting in `config`.
        SourceError: if a message is refused or not acknowledged within `timeout_s`.
    """
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1 << 20,
        "log.connection.close": False,
        "logger": _librdkafka_logger,
    }
    settings.update(config or {})
    try:
        producer = Producer(settings)
    except KafkaException as exc:
        raise ConfigError(f"librdkafka refused the producer settings: {_reason(exc)}") from exc
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(f"partition {message.partition()}: {error.str()}")

    counts: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    for partition, values in partition_messages.items():
        counts[partition] = 0
        for value in values:
            _produce(producer, topic, value, partition, delivered, deadline)
            counts[partition] += 1
            if counts[partition] % 10_000 == 0:
                producer.poll(0)  # serve delivery reports as we go
    left = producer.flush(max(deadline - time.monotonic(), 0.1))
    if left or failures:
        raise SourceError(
            f"{left + len(failures)} message(s) to topic {topic!r} on {bootstrap} were not "
            f"acknowledged within {timeout_s:g} s"
            + (f"; {len(failures)} refused, the first: {failures[0]}" if failures else "")
        )
    return counts


def _produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    partition: int,
    delivered: Any,
    deadline: float,
) -> None:
    while True:
        try:
            producer.produce(topic, value, partition=partition, on_delivery=delivered)
            return
        except BufferError:  # the local queue is full: serve deliveries to drain it
            if time.monotonic() > deadline:
                raise SourceError(
                    f"producing to topic {topic!r} stalled: the local queue stayed full",
                    partition=partition,
                ) from None
            producer.poll(0.05)
        except KafkaException as exc:
            raise SourceError(
                f"cannot produce to topic {topic!r}: {_reason(exc)}", partition=partition
            ) from exc


def produce_batches(
    bootstrap: str,
    topic: str,
    partition_batches: Mapping[int, Iterable[pa.RecordBatch | pa.Table]],
    *,
    format: str = "json",
    rows_per_message: int | None = None,
    config: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
) -> dict[int, int]:
    """Produce rows to explicit partitions of `topic` in the form a ``kafka://`` source
    of that `format` reads.

    Args:
        bootstrap: ``host:port[,host:port]`` of the brokers.
        topic: the topic.
        partition_batches: partition -> batches of rows, produced in order.
        format: ``json`` (a message per row) or ``arrow`` (an IPC stream per message).
        rows_per_message: Arrow only: batches are cut into messages of this many rows;
            None sends each batch as one message. A message must fit the broker's
            ``message.max.bytes`` (1 MB by default).
        config: extra librdkafka producer settings.
        timeout_s: how long to wait for every message to be acknowledged.

    Returns:
        Messages produced per partition (for JSON, its rows).

    Raises:
        ConfigError: on an unknown format or `rows_per_message` < 1.
        SourceError: if a message is refused or not acknowledged within `timeout_s`.

    Example:
        >>> batch = pa.record_batch({"x0": [0.1, 0.2], "label": [0.0, 1.0]})
        >>> produce_batches("localhost:9092", "ticks", {0: [batch]})  # doctest: +SKIP
        {0: 2}
    """
    if format not in FORMATS:
        raise ConfigError(
            f"format={format!r} is not supported; expected one of {', '.join(FORMATS)}"
        )
    if rows_per_message is not None and rows_per_message < 1:
        raise ConfigError(f"rows_per_message ({rows_per_message}) must be an integer >= 1")

    def encoded(batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[bytes]:
        for batch in batches:
            if format == "json":
                yield from encode_json(batch)
                continue
            step = rows_per_message or max(batch.num_rows, 1)
            for start in range(0, max(batch.num_rows, 1), step):
                yield encode_arrow(batch.slice(start, step))

    return produce_messages(
        bootstrap,
        topic,
        {partition: encoded(batches) for partition, batches in partition_batches.items()},
        config=config,
        timeout_s=timeout_s,
    )
