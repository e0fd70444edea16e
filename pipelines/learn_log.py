"""An audit trail of learned offsets: which rows each member learned, and how often.

With `MemberConfig.learn_log` set, a member appends one JSON line per training step::

    {"member": 1, "partition": 3, "runs": [[4096, 4351], [4353, 4400]]}

``runs`` are inclusive ranges of the source offsets whose rows reached the learner (rows
sampled away or dead-lettered are not in them; for sequence models the context rows of a
partition's first window are). Restarts append to the same file, so a row learned twice
(read again after the last checkpoint) shows up twice: `learned_offsets` counts that.
Lines are appended in one system call each, so members may share a file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

__all__ = ["LearnLog", "learned_offsets", "offset_runs"]


def offset_runs(offsets: np.ndarray) -> list[list[int]]:
    """Inclusive ``[first, last]`` runs of consecutive values of sorted unique `offsets`."""
    unique = np.unique(np.asarray(offsets, np.int64))
    if unique.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(unique) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [unique.size - 1]])
    return [[int(unique[a]), int(unique[b])] for a, b in zip(starts, ends, strict=True)]


class LearnLog:
    """Appends a member's learned offset runs to a JSON-lines file.

    Args:
        path: the file (created with its folder on first write).
        member_id: written with every line.
    """

    def __init__(self, path: str | os.PathLike[str], member_id: int) -> None:
        self.path = Path(path)
        self.member_id = member_id

    def write(self, partition: int | None, offsets: np.ndarray) -> None:
        line = {"member": self.member_id, "partition": partition, "runs": offset_runs(offsets)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)


def learned_offsets(path: str | os.PathLike[str]) -> dict[int, Counter[int]]:
    """How many times each (partition, offset) was learned, from a learn log."""
    counts: dict[int, Counter[int]] = {}
    with open(path, encoding="utf-8") as lines:
        for text in lines:
            entry = json.loads(text)
            counter = counts.setdefault(int(entry["partition"]), Counter())
            for first, last in entry["runs"]:
                counter.update(range(first, last + 1))
    return counts
