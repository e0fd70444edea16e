"""Durable, atomic checkpoints of plain arrays and JSON metadata, on any filesystem.

A checkpoint is two files in ``ROOT/NAME/``: ``ckpt-SEQUENCE.npz`` (NumPy arrays, saved
and loaded without pickle) and ``ckpt-SEQUENCE.json``, the manifest: the metadata, the
array names and the SHA-256 of the ``.npz``. The manifest is written last, so a
checkpoint exists only once it is complete: a crash at any point leaves either the
previous checkpoint or the new one, never a torn file that is believed.

On a local filesystem each file is written to a hidden temporary name, fsynced, renamed
into place and the directory fsynced (DESIGN rule 6). Object stores (``s3://``, ``gs://``)
have no atomic rename, but an object appears whole when its upload completes; there the
manifest-last order alone carries atomicity. Loading checks the digest and refuses a
mismatch, and falls back to the next older checkpoint.

Why not a library: Keras' ``.keras`` files hold a network, not optimizer moments next to
stream offsets, and orbax/tensorstore would add a heavy dependency for a few arrays. This
module stays a thin layer over `numpy.savez` and `pyarrow.fs`.

Example:
    >>> import numpy as np, tempfile
    >>> store = CheckpointStore(tempfile.mkdtemp(), keep=2)
    >>> store.save("member-0", {"w": np.ones(3, np.float32)}, {"offsets": {"0": 128}})
    1
    >>> loaded = store.latest("member-0")
    >>> loaded.meta["offsets"], loaded.arrays["w"].tolist()
    ({'0': 128}, [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from actors.errors import CheckpointError, ConfigError

__all__ = ["Checkpoint", "CheckpointStore"]

logger = logging.getLogger(__name__)

_MANIFEST = re.compile(r"^ckpt-(\d{12})\.json$")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """One loaded checkpoint: its sequence number, arrays and metadata."""

    sequence: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


class CheckpointStore:
    """Checkpoints of several named owners (``member-0``, ``coordinator``) under one root.

    Args:
        root: a local directory, a ``file://`` URI or any `pyarrow.fs` URI.
        keep: checkpoints retained per name; older ones are deleted after a save.

    Raises:
        ConfigError: if `root` is not a filesystem URI pyarrow understands, or keep < 1.
    """

    def __init__(self, root: str, keep: int = 2) -> None:
        if keep < 1:
            raise ConfigError(f"keep ({keep}) must be >= 1")
        try:
            self._fs, path = pafs.FileSystem.from_uri(root)
        except (pa.ArrowInvalid, ValueError):
            self._fs, path = pafs.LocalFileSystem(), os.path.abspath(root)
        self.root = root
        self.keep = keep
        self._path = path.rstrip("/")
        self._local = isinstance(self._fs, pafs.LocalFileSystem)

    def save(self, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
        """Write a new checkpoint of `name`; returns its sequence number.

        Raises:
            CheckpointError: if the files cannot be written (the previous one stays valid).
        """
        pickled = sorted(key for key, value in arrays.items() if np.asarray(value).dtype == object)
        if pickled:
            raise CheckpointError(
                f"checkpoint arrays {pickled} hold Python objects; a checkpoint holds plain "
                "numeric arrays only (it is loaded without pickle)"
            )
        directory = f"{self._path}/{name}"
        sequence = self._last_sequence(directory) + 1
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub misreads **kwds
        data = buffer.getvalue()
        manifest = {
            "format": FORMAT_VERSION,
            "sequence": sequence,
            "arrays": sorted(arrays),
            "sha256": hashlib.sha256(data).hexdigest(),
            "meta": meta,
        }
        stem = f"{directory}/ckpt-{sequence:012d}"
        try:
            self._fs.create_dir(directory, recursive=True)
            self._write(f"{stem}.npz", data)
            self._write(f"{stem}.json", json.dumps(manifest, default=_plain).encode())
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint {stem} under {self.root!r}: {exc}"
            ) from exc
        self._prune(directory)
        return sequence

    def latest(self, name: str) -> Checkpoint | None:
        """The newest intact checkpoint of `name`, or None if there is none.

        A checkpoint whose data does not match its manifest's digest is skipped with a
        warning, and the next older one is tried.
        """
        directory = f"{self._path}/{name}"
        for sequence in reversed(self._sequences(directory)):
            loaded = self._load(directory, sequence)
            if loaded is not None:
                return loaded
        return None

    def names(self) -> list[str]:
        """Owners with at least one complete checkpoint under the root."""
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(self._path, allow_not_found=True))
        except OSError as exc:
            raise CheckpointError(f"cannot list checkpoints in {self.root!r}: {exc}") from exc
        folders = (i.base_name for i in infos if i.type == pafs.FileType.Directory)
        return sorted(name for name in folders if self.sequences(name))

    def sequences(self, name: str) -> list[int]:
        """Sequence numbers of the complete (manifest written) checkpoints of `name`."""
        return self._sequences(f"{self._path}/{name}")

    def _load(self, directory: str, sequence: int) -> Checkpoint | None:
        stem = f"{directory}/ckpt-{sequence:012d}"
        try:
            manifest = json.loads(self._read(f"{stem}.json"))
            data = self._read(f"{stem}.npz")
        except (OSError, ValueError) as exc:
            logger.warning("checkpoint %s is unreadable (%s); trying an older one", stem, exc)
            return None
        if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
            logger.warning("checkpoint %s does not match its SHA-256; trying an older one", stem)
            return None
        # allow_pickle=False: a checkpoint holds plain arrays; object arrays are refused.
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            logger.warning(
                "checkpoint %s cannot be loaded safely (%s); trying an older one", stem, exc
            )
            return None
        return Checkpoint(sequence=sequence, arrays=arrays, meta=manifest.get("meta", {}))

    def _sequences(self, directory: str) -> list[int]:
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        except OSError as exc:
            raise CheckpointError(f"cannot list checkpoints in {directory!r}: {exc}") from exc
        found = (_MANIFEST.match(info.base_name) for info in infos)
        return sorted(int(match.group(1)) for match in found if match)

    def _last_sequence(self, directory: str) -> int:
        """Highest sequence with any file (even a torn one), so a new save never reuses it."""
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        except OSError:
            return 0
        numbers = [
            int(match.group(1))
            for info in infos
            if (match := re.match(r"^\.?ckpt-(\d{12})\.", info.base_name))
        ]
        return max(numbers, default=0)

    def _write(self, path: str, data: bytes) -> None:
        if not self._local:
            with self._fs.open_output_stream(path) as out:
                out.write(data)
            return
        directory, base = os.path.split(path)
        temporary = os.path.join(directory, f".{base}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power loss
        finally:
            os.close(dir_fd)

    def _read(self, path: str) -> bytes:
        with self._fs.open_input_stream(path) as stream:
            return bytes(stream.read())

    def _prune(self, directory: str) -> None:
        for sequence in self._sequences(directory)[: -self.keep]:
            stem = f"{directory}/ckpt-{sequence:012d}"
            for suffix in (".json", ".npz"):  # manifest first: never a manifest without data
                try:
                    self._fs.delete_file(stem + suffix)
                except OSError as exc:
                    logger.warning("cannot delete old checkpoint file %s%s: %s", stem, suffix, exc)


def _plain(value: Any) -> Any:
    """JSON for NumPy scalars and arrays in checkpoint metadata."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"checkpoint metadata cannot hold {type(value).__name__}")
