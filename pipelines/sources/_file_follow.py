"""Watching a directory for data files as they land: the `follow` mode of the file source.

`DirectoryWatcher` lists the directory (recursively) at most every `poll_s` seconds and
keeps, per partition, an append-only log of the files it has seen land. Files already
present at the first listing are part of the stream too.

Two rules keep offsets stable while files keep arriving and across restarts:

- **Assignment** is by a stable hash of the file's path relative to the directory
  (`partition_of`: CRC-32 mod partitions), so a file never moves to another partition
  when others land. (Round-robin over sorted names would reshuffle every partition
  each time a file sorted before the others; Python's `hash` is salted per process.)
- **Order** within a partition is by (modification time, relative path)
  (`LandedFile.order_key`), so a reader restarted at offset N lists the same files in the
  same order and skips exactly the N records it had read.

That needs the writer to keep a contract: a file appears under its visible name only when
it is complete (write it under a hidden name, leading ``.`` or ``_``, and rename it into
place; a rename keeps the modification time), it does not change afterwards, it stays in
the directory, and files land in modification-time order (one writer renaming as it
finishes does this). The watcher warns about files that change or disappear; the reader
warns about a file that lands with a modification time before one it has already begun.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from actors.errors import SourceError

__all__ = ["DirectoryWatcher", "LandedFile", "hidden", "partition_of"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandedFile:
    """A data file seen in the followed directory.

    Args:
        path: the file's path as the filesystem names it.
        relative: its path relative to the directory, ``/``-separated.
        mtime_ns: its modification time (0 where the filesystem reports none).
        size: its size in bytes.
    """

    path: str
    relative: str
    mtime_ns: int
    size: int

    @property
    def order_key(self) -> tuple[int, str]:
        """Where the file sorts within its partition: modification time, then path."""
        return (self.mtime_ns, self.relative)


def partition_of(relative: str, partitions: int) -> int:
    """The partition a file belongs to: CRC-32 of its relative path, mod `partitions`.

    Example:
        >>> partition_of("2024/01/part-0.parquet", 4)
        2
    """
    return zlib.crc32(relative.encode("utf-8")) % partitions


class DirectoryWatcher:
    """Lists a directory at most every `poll_s` and logs newly landed files by partition.

    Thread-safe: the readers of one source, each maybe on its own prefetch thread, share
    one watcher, so a directory is listed once per poll however many partitions are open.

    Args:
        filesystem: the filesystem the directory is on.
        root: the directory.
        partitions: how many partitions files are assigned to.
        accept: whether a relative path names a data file of the stream (its format);
            hidden names (a part starting with ``.`` or ``_``) are refused before it.
        poll_s: least time between listings.
        uri: the source URI, for messages.
    """

    def __init__(
        self,
        filesystem: pafs.FileSystem,
        root: str,
        partitions: int,
        accept: Callable[[str], bool],
        poll_s: float,
        uri: str,
    ) -> None:
        self.filesystem = filesystem
        self.root = root.rstrip("/")
        self.partitions = partitions
        self.accept = accept
        self.poll_s = poll_s
        self.uri = uri
        self._lock = threading.Lock()
        self._known: dict[str, LandedFile] = {}
        self._landed: list[list[LandedFile]] = [[] for _ in range(partitions)]
        self._warned: set[str] = set()
        self._last_listing: float | None = None
        self._failing = False

    def poll(self, force: bool = False) -> bool:
        """List the directory if `poll_s` has passed since the last listing, or if `force`.

        The first listing raises if the directory cannot be listed; later ones log a
        warning and leave the known files as they were (a transient error on a remote
        filesystem must not stop a member).

        Returns:
            Whether it listed.

        Raises:
            SourceError: if the first listing fails.
        """
        with self._lock:
            first = self._last_listing is None
            if not force and not first and self.seconds_to_next_poll() > 0:
                return False
            self._last_listing = time.monotonic()
            try:
                listed = self._list()
            except (pa.ArrowException, OSError) as exc:
                if first:
                    raise SourceError(f"cannot list {self.root!r}: {exc}", uri=self.uri) from exc
                if not self._failing:
                    logger.warning(
                        "%s: cannot list %r (%s); retrying every %.2fs",
                        self.uri,
                        self.root,
                        exc,
                        self.poll_s,
                    )
                self._failing = True
                return True
            if self._failing:
                logger.info("%s: listing %r works again", self.uri, self.root)
                self._failing = False
            self._record(listed)
            return True

    def seconds_to_next_poll(self) -> float:
        """How long until a `poll` lists again (0 when it would list now)."""
        if self._last_listing is None:
            return 0.0
        return max(0.0, self._last_listing + self.poll_s - time.monotonic())

    def landed(self, partition: int, since: int = 0) -> list[LandedFile]:
        """Files of `partition` in the order they were seen, from the `since`-th on.

        Files seen in one listing are in `LandedFile.order_key` order; a later listing's
        files come after, whatever their key (the reader sorts them in).
        """
        with self._lock:
            return self._landed[partition][since:]

    def _list(self) -> list[LandedFile]:
        selector = pafs.FileSelector(self.root, recursive=True)
        files = []
        for info in self.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            relative = info.path[len(self.root) :].lstrip("/")
            if hidden(relative) or not self.accept(relative):
                continue
            mtime_ns = info.mtime_ns if info.mtime_ns is not None else 0
            size = info.size if info.size is not None else -1
            files.append(LandedFile(info.path, relative, int(mtime_ns), int(size)))
        return files

    def _record(self, listed: list[LandedFile]) -> None:
        present = {f.relative for f in listed}
        for landed in sorted(listed, key=lambda f: f.order_key):
            known = self._known.get(landed.relative)
            if known is None:
                self._known[landed.relative] = landed
                self._landed[partition_of(landed.relative, self.partitions)].append(landed)
            elif (known.size, known.mtime_ns) != (landed.size, landed.mtime_ns):
                self._warn_once(
                    landed.relative,
                    "%s: %s changed after it landed (size %d -> %d bytes); rows counted or "
                    "read from it may be wrong. Write files under a hidden name (leading '.' "
                    "or '_') and rename them into place when complete",
                    self.uri,
                    landed.relative,
                    known.size,
                    landed.size,
                )
        for relative in self._known.keys() - present:
            self._warn_once(
                relative,
                "%s: %s was removed after it landed; a reader restarted from a checkpoint "
                "will count offsets without it. Leave landed files in the directory",
                self.uri,
                relative,
            )

    def _warn_once(self, relative: str, message: str, *args: object) -> None:
        if relative not in self._warned:
            self._warned.add(relative)
            logger.warning(message, *args)


def hidden(relative: str) -> bool:
    """Whether a relative path is hidden: a part of it starts with ``.`` or ``_``."""
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)
