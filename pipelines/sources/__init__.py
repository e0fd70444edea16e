"""Stream sources: synthetic generators, files, (later) Kafka. See `open_source`."""

from pipelines.sources.base import PartitionReader, SourceBatch, SourceSpec, StreamSource
from pipelines.sources.registry import SCHEMES, open_source

__all__ = [
    "SCHEMES",
    "PartitionReader",
    "SourceBatch",
    "SourceSpec",
    "StreamSource",
    "open_source",
]
