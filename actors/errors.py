"""Exceptions raised by online-ensemble.

One root, a shallow tree::

    OnlineEnsembleError
    ├── ConfigError        a setting or flag is invalid (the CLI prints it as one line)
    ├── SourceError        a stream source cannot be opened or read
    ├── SchemaError        data does not match the declared schema
    ├── CheckpointError    a checkpoint cannot be written or read
    ├── ModelError         a model does not fit the task (input width, output units)
    └── RequestError       a prediction request is malformed (carries the HTTP status)

Every exception carries enough context (member id, partition, offset, the value received)
to act on without a debugger.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ModelError",
    "OnlineEnsembleError",
    "RequestError",
    "SchemaError",
    "SourceError",
]


class OnlineEnsembleError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(OnlineEnsembleError, ValueError):
    """A setting, flag or config file is invalid."""


class SourceError(OnlineEnsembleError):
    """A stream source cannot be opened or read."""

    def __init__(self, message: str, *, uri: str | None = None, partition: int | None = None):
        context = []
        if uri is not None:
            context.append(f"source {uri!r}")
        if partition is not None:
            context.append(f"partition {partition}")
        super().__init__(f"{message} ({', '.join(context)})" if context else message)
        self.uri = uri
        self.partition = partition


class SchemaError(OnlineEnsembleError, ValueError):
    """Data does not match the declared stream schema."""


class CheckpointError(OnlineEnsembleError):
    """A checkpoint cannot be written or read; the message names where."""


class ModelError(OnlineEnsembleError, ValueError):
    """A model does not fit the task: wrong input width or output units."""


class RequestError(OnlineEnsembleError, ValueError):
    """A prediction request is malformed; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.message = message
