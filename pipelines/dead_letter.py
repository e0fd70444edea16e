"""Where rejected records go: a dead-letter sink that counts them and may keep them.

A member validates every batch (`StreamSchema.validate`) and hands the rejected rows
to its sink. `DeadLetterSink(path)` appends one JSON object per record to a local file;
`DeadLetterSink(None)` only counts; `MemoryDeadLetterSink` keeps the records in a list,
for tests. A JSON line looks like::

    {"member": 0, "partition": 2, "offset": 1041, "reason": "null value in column 'x3'",
     "record": "{'x0': 0.1, ..., 'x3': None, 'label': 1.0}"}

Each `write` opens the file, appends all its lines in one system call, and closes it, so
a sink pickles (Ray ships it to the member actor) and several members on one machine can
share a file without interleaving lines.

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
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from actors.errors import ConfigError
from pipelines.schema import DeadLetter

__all__ = ["DeadLetterSink", "MemoryDeadLetterSink", "dead_letter_record"]


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
