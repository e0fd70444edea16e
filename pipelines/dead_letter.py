"""Where rejected records go: a dead-letter sink that counts them and may keep them.

A member validates every batch (`StreamSchema.validate`) and hands the rejected rows
to its sink. `DeadLetterSink(path)` appends one JSON object per record to a local file;
`DeadLetterSink(None)` only counts; `KafkaDeadLetterSink` produces one message per record
to a Kafka topic; `MemoryDeadLetterSink` keeps the records in a list, for tests.
`open_dead_letter_sink` picks the file or the Kafka sink from a target string. A record
(a JSON line, or a Kafka message's value) looks like::

    {"member": 0, "partition": 2, "offset": 1041, "reason": "null value in column 'x3'",
     "record": "{'x0': 0.1, ..., 'x3': None, 'label': 1.0}"}

Each `write` opens the file, appends all its lines in one system call, and closes it, so
a sink pickles (Ray ships it to the member actor) and several members on one machine can
share a file without interleaving lines. The Kafka sink creates its producer on the first
write, so it pickles too; `flush` waits until the topic has acknowledged every record
(a member calls it before committing offsets, so that no dead letter is lost on a
crash), and `close` flushes.

Example:
    >>> from pipelines.schema import DeadLetter
    >>> sink = DeadLetterSink(None, member_id=0)
    >>> sink.write([DeadLetter(partition=0, offset=7, reason="null value in column 'x0'")])
    1
    >>> sink.count
    1
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from actors.errors import ConfigError, SourceError
from pipelines.schema import DeadLetter

__all__ = [
    "DeadLetterSink",
    "KafkaDeadLetterSink",
    "MemoryDeadLetterSink",
    "dead_letter_record",
    "open_dead_letter_sink",
]

logger = logging.getLogger(__name__)


MemberId = int | str | None


def dead_letter_record(letter: DeadLetter, member_id: MemberId) -> dict[str, Any]:
    """The JSON-ready form of one dead letter.

    Args:
        letter: the rejected record.
        member_id: the member that rejected it (None if unknown).

    Returns:
        ``{"member", "partition", "offset", "reason", "record"}``.
    """
    return {
        "member": member_id,
        "partition": letter.partition,
        "offset": letter.offset,
        "reason": letter.reason,
        "record": letter.record,
    }


class DeadLetterSink:
    """Counts dead letters and, given a path, appends them to a local JSON-lines file.

    Args:
        path: file to append to (it and its folder are created on the first write); None
            counts the records and keeps nothing.
        member_id: the member whose records these are; written with each record.

    Raises:
        ConfigError: if `path` is empty or names an existing directory.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, member_id: MemberId = None
    ) -> None:
        if path is not None:
            text = os.fspath(path)
            if not text.strip():
                raise ConfigError(
                    "dead-letter path is empty; give a file path, or None to only count"
                )
            if Path(text).is_dir():
                raise ConfigError(
                    f"dead-letter path {text!r} is a directory; expected a file path such as "
                    f"{os.path.join(text, 'dead_letter.jsonl')!r}"
                )
        self.path = None if path is None else Path(path)
        self.member_id = member_id
        self.count = 0

    def write(self, letters: Iterable[DeadLetter]) -> int:
        """Record `letters`: count them and, with a path, append them in one system call.

        Args:
            letters: the rejected records of one batch (may be empty).

        Returns:
            How many were written.

        Raises:
            OSError: if the file cannot be written; the count is then unchanged.
        """
        batch = list(letters)
        if batch:
            self._store(batch)
            self.count += len(batch)
        return len(batch)

    def flush(self) -> None:
        """Make every record written so far durable; a file is complete after each write."""

    def close(self) -> None:
        """Release resources; the file is closed after every write, so nothing is held."""

    def _store(self, letters: list[DeadLetter]) -> None:
        if self.path is None:
            return
        text = "".join(
            json.dumps(dead_letter_record(letter, self.member_id), default=str) + "\n"
            for letter in letters
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(text.encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def __enter__(self) -> DeadLetterSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        path = None if self.path is None else str(self.path)
        return (
            f"{type(self).__name__}(path={path!r}, member_id={self.member_id!r}, "
            f"count={self.count})"
        )


class MemoryDeadLetterSink(DeadLetterSink):
    """Keeps dead letters in memory, as `dead_letter_record` dicts in `records` (for tests).

    Args:
        member_id: the member whose records these are.
    """

    def __init__(self, *, member_id: MemberId = None) -> None:
        super().__init__(None, member_id=member_id)
        self.records: list[dict[str, Any]] = []

    def _store(self, letters: list[DeadLetter]) -> None:
        self.records.extend(dead_letter_record(letter, self.member_id) for letter in letters)


class KafkaDeadLetterSink(DeadLetterSink):
    """Counts dead letters and produces each, as a `dead_letter_record` JSON value, to a
    Kafka topic (keyed by the source partition, so one partition's records stay in order).

    The producer is created on the first write, so a sink pickles before it (Ray ships it
    to the member actor); a pickled copy starts a producer of its own. Records are sent
    in the background: `flush` waits for the topic to acknowledge them, `close` flushes.

    Args:
        target: ``kafka://host:port[,host:port]/topic`` (options with a dot are librdkafka
            producer settings, e.g. ``?security.protocol=SSL``; ``timeout_s`` bounds
            `flush`, default 10), or just ``host:port`` with `topic` given.
        topic: the topic, when `target` is not a URI naming one.
        member_id: the member whose records these are; written with each record.

    Raises:
        ConfigError: on a malformed URI, a missing or doubly given topic, an unknown
            option, or when confluent-kafka is not installed.

    Example:
        >>> sink = KafkaDeadLetterSink("kafka://localhost:9092/dead-letters", member_id=0)
        >>> sink.count, sink.topic
        (0, 'dead-letters')
    """

    def __init__(
        self, target: str, topic: str | None = None, *, member_id: MemberId = None
    ) -> None:
        super().__init__(None, member_id=member_id)
        try:
            from pipelines.sources.kafka import parse_kafka_uri, redact_uri
        except ImportError as exc:
            raise ConfigError(
                f"a Kafka dead-letter sink needs confluent-kafka ({exc}); install it with "
                "pip install 'online-ensemble[kafka]'"
            ) from exc
        settings: dict[str, str] = {}
        timeout_s = 10.0
        if target.lower().startswith("kafka://"):
            bootstrap, named, pairs = parse_kafka_uri(target)
            if topic is not None and topic != named:
                raise ConfigError(
                    f"dead-letter topic given twice: {named!r} in {redact_uri(target)!r} and "
                    f"topic={topic!r}; give one"
                )
            topic = named
            for name, value in pairs:
                if name == "timeout_s":
                    timeout_s = _seconds(value)
                elif "." in name:
                    settings[name] = value
                else:
                    raise ConfigError(
                        f"unknown option {name!r} of the dead-letter sink "
                        f"{redact_uri(target)!r}; expected timeout_s or a librdkafka producer "
                        "setting (a name with a dot, e.g. security.protocol)"
                    )
        else:
            bootstrap = target
        if not bootstrap.strip() or not topic:
            raise ConfigError(
                f"a Kafka dead-letter sink needs brokers and a topic, got target={target!r}, "
                f"topic={topic!r}; expected kafka://host:port/topic"
            )
        self.bootstrap = bootstrap
        self.topic = topic
        self.settings = settings
        self.timeout_s = timeout_s
        self.undelivered = 0  # records the topic refused or never acknowledged
        self._display = redact_uri(target) if "://" in target else f"kafka://{target}/{topic}"
        self._producer: Any = None
        self._failures: list[str] = []

    def flush(self) -> None:
        """Wait until the topic has acknowledged every record written so far.

        Raises:
            SourceError: if some were refused or not acknowledged within ``timeout_s``
                (they stay counted in `count`, and in `undelivered`).
        """
        if self._producer is None:
            return
        left = self._producer.flush(self.timeout_s)
        failures, self._failures = self._failures, []
        if left or failures:
            self.undelivered += left + len(failures)
            detail = f"; the first refusal: {failures[0]}" if failures else ""
            raise SourceError(
                f"{left + len(failures)} dead letter(s) of member {self.member_id!r} were not "
                f"delivered to topic {self.topic!r} within {self.timeout_s:g} s{detail}",
                uri=self._display,
            )

    def close(self) -> None:
        """Flush and drop the producer; a failure to deliver is logged, not raised."""
        if self._producer is None:
            return
        try:
            self.flush()
        except SourceError as exc:
            logger.error("%s", exc)
            self._producer.purge()  # drop what was not delivered instead of retrying on
        finally:
            self._producer = None

    def _store(self, letters: list[DeadLetter]) -> None:
        producer = self._ensure_producer()
        deadline = time.monotonic() + self.timeout_s
        for letter in letters:
            value = json.dumps(dead_letter_record(letter, self.member_id), default=str).encode()
            key = str(letter.partition).encode()
            while True:
                try:
                    producer.produce(self.topic, value, key=key, on_delivery=self._delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    if time.monotonic() > deadline:
                        raise SourceError(
                            f"dead letters to topic {self.topic!r} stalled: the producer's "
                            f"queue stayed full for {self.timeout_s:g} s",
                            uri=self._display,
                        ) from None
                    producer.poll(0.05)
        producer.poll(0)  # serve delivery reports of earlier writes

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            from confluent_kafka import KafkaException, Producer

            config: dict[str, Any] = {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 50,
                "log.connection.close": False,
                "logger": logging.getLogger("pipelines.sources.kafka.librdkafka"),
            }
            config.update(self.settings)
            try:
                self._producer = Producer(config)
            except KafkaException as exc:
                raise ConfigError(
                    f"librdkafka refused the settings of dead-letter sink {self._display!r}: "
                    f"{exc.args[0].str() if exc.args else exc}"
                ) from exc
        return self._producer

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self._failures.append(error.str())

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_producer"] = None  # not picklable; the copy makes its own on first write
        state["_failures"] = []
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._display!r}, member_id={self.member_id!r}, "
            f"count={self.count})"
        )


def open_dead_letter_sink(
    target: str | os.PathLike[str] | None, *, member_id: MemberId = None
) -> DeadLetterSink:
    """The sink a target names: None counts only, ``kafka://host:port/topic`` produces to
    a topic, anything else is a JSON-lines file path.

    Args:
        target: where dead letters go.
        member_id: the member whose records these are.

    Returns:
        A `DeadLetterSink` (a `KafkaDeadLetterSink` for a Kafka URI).

    Raises:
        ConfigError: on a bad path or Kafka URI.

    Example:
        >>> type(open_dead_letter_sink("kafka://localhost:9092/dead", member_id=1)).__name__
        'KafkaDeadLetterSink'
    """
    if isinstance(target, str) and target.lower().startswith("kafka://"):
        return KafkaDeadLetterSink(target, member_id=member_id)
    return DeadLetterSink(target, member_id=member_id)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(
            f"dead-letter sink option timeout_s={text!r} is not valid; expected a number of "
            "seconds > 0"
        )
    return value
