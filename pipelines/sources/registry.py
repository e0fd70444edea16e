"""Which source opens which URI: `SCHEMES` and `open_source`.

``synthetic://...`` opens the synthetic generators; ``file://...``, a plain path, and the
remote filesystems `pyarrow.fs` understands (``s3://``, ``gs://``, ``hdfs://``, ...) open
the file source; ``kafka://host:port/topic?...`` opens a Kafka topic (it needs the
``kafka`` extra, confluent-kafka, which is imported only when a Kafka URI is opened).

Example:
    >>> from pipelines.sources.base import SourceSpec
    >>> source = open_source(SourceSpec("synthetic://hyperplane?rows=100", partitions=2))
    >>> source.partitions()
    [0, 1]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from actors.errors import ConfigError
from pipelines.sources.base import SourceSpec, StreamSource
from pipelines.sources.files import open_file_source
from pipelines.sources.synthetic import open_synthetic_source

__all__ = ["SCHEMES", "SourceOpener", "open_source"]

logger = logging.getLogger(__name__)

SourceOpener = Callable[[SourceSpec], StreamSource]


def _open_kafka(spec: SourceSpec) -> StreamSource:
    """Open a ``kafka://`` source (see `pipelines.sources.kafka`), importing it on demand.

    Raises:
        ConfigError: if confluent-kafka is not installed, or as `open_kafka_source` does.
        SourceError: if the brokers do not answer.
    """
    try:
        from pipelines.sources.kafka import open_kafka_source
    except ImportError as exc:
        raise ConfigError(
            f"Kafka sources need confluent-kafka ({exc}); install it with "
            "pip install 'online-ensemble[kafka]'"
        ) from exc
    return open_kafka_source(spec)


SCHEMES: dict[str, SourceOpener] = {
    "synthetic": open_synthetic_source,
    "file": open_file_source,
    "": open_file_source,
    "s3": open_file_source,
    "gs": open_file_source,
    "gcs": open_file_source,
    "hdfs": open_file_source,
    "viewfs": open_file_source,
    "abfs": open_file_source,
    "abfss": open_file_source,
    "kafka": _open_kafka,
}
"""Scheme (lower case, ``""`` for a plain path) -> function that opens a `SourceSpec`."""


def open_source(spec: SourceSpec) -> StreamSource:
    """Open the stream source `spec.uri` names.

    Args:
        spec: the source spec.

    Returns:
        The opened `StreamSource`.

    Raises:
        ConfigError: on an unknown scheme, a path or topic that does not exist, a bad
            option, or a Kafka URI without confluent-kafka installed.
        SourceError: if a source that exists cannot be read (or its brokers reached).
    """
    scheme = urlsplit(spec.uri).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, e.g. C:\data
        scheme = ""
    opener = SCHEMES.get(scheme)
    if opener is None and _pyarrow_understands(spec.uri):
        opener = open_file_source
    if opener is None:
        raise ConfigError(
            f"unknown source scheme {scheme!r} in {spec.uri!r}; supported: {_supported()}"
        )
    logger.debug("opening source %s with %s", spec.uri, getattr(opener, "__name__", opener))
    return opener(spec)


def _pyarrow_understands(uri: str) -> bool:
    """Whether `pyarrow.fs` has a filesystem for `uri`'s scheme (not listed in SCHEMES)."""
    try:
        pafs.FileSystem.from_uri(uri.split("?", 1)[0])
    except pa.ArrowInvalid as exc:
        return "unrecognized filesystem" not in str(exc).lower()
    except (ImportError, OSError, pa.ArrowException):
        return True  # the scheme is known; the file source reports why it cannot be opened
    return True


def _supported() -> str:
    names = ["synthetic://", "file:// (or a path)"]
    names += [f"{s}://" for s in SCHEMES if s not in ("", "file", "synthetic", "kafka")]
    names.append("kafka://host:port/topic")
    return ", ".join(names)
