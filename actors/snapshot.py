"""The versioned ensemble snapshot the coordinator hands to Serve.

It holds object references, not arrays: each member put its weights into Ray's object
store once, and every replica fetches them from there. The coordinator never copies
them per request, and a replica never talks to a member.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = ["EnsembleSnapshot", "MemberSnapshot", "SharedSample"]


class SharedSample(NamedTuple):
    """Rows a member sampled for the shared evaluation before it learned them.

    Attributes:
        x: inputs: rows, or windows (k, window, n_features) for a sequence model.
        y: (k,) labels: float class indices or regression targets.
        partitions: (k,) int64 source partition of each row (-1: unknown).
    """

    x: np.ndarray
    y: np.ndarray
    partitions: np.ndarray


@dataclass(frozen=True)
class MemberSnapshot:
    """One member's weights at one point of its training."""

    member_id: int
    version: int  # the member's own publish counter
    rows: int  # rows the member had learned when it took the snapshot
    weights: list[np.ndarray]
    source: str = "current"  # "best" while the member serves its best snapshot


@dataclass(frozen=True)
class EnsembleSnapshot:
    """What one ensemble version is: member snapshot refs and mixing weights.

    Attributes:
        version: increases with every change; a replica never serves an older one.
        member_ids: ids of the members in the snapshot, in mixing order.
        member_refs: ObjectRefs to each member's `MemberSnapshot` (same order).
        mixing: mixing weights, same order, summing to 1: the ensemble's weights over
            the whole shared sample, for a request that names no partition.
        partitions: every source partition the job's members read; a request may name
            one of them to be mixed with that partition's weights.
        partition_mixing: partition -> mixing weights (same order, summing to 1) from
            the members' scores on that partition's shared-sample rows alone. Only
            partitions with a record of their own are here; a partition in
            `partitions` but not here is mixed with `mixing`.
    """

    version: int
    member_ids: tuple[int, ...]
    member_refs: tuple[Any, ...]
    mixing: np.ndarray
    partitions: tuple[int, ...] = ()
    partition_mixing: Mapping[int, np.ndarray] = field(default_factory=dict)
