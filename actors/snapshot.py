"""The versioned ensemble snapshot the coordinator hands to Serve.

It holds object references, not arrays: each member put its weights into Ray's object
store once, and every replica fetches them from there. The coordinator never copies
them per request, and a replica never talks to a member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EnsembleSnapshot", "MemberSnapshot"]


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
        mixing: mixing weights, same order, summing to 1.
    """

    version: int
    member_ids: tuple[int, ...]
    member_refs: tuple[Any, ...]
    mixing: np.ndarray
