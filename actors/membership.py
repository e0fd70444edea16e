"""Changing the ensemble's size while it runs, as pure logic: who joins, who leaves, which
partitions move where, where a new member goes, and how it starts.

`plan_scale` decides; the job (``pipelines/job.py``) carries the plan out with Ray:
members release partitions at a batch boundary (their offsets checkpointed and
committed), new owners open them at exactly those offsets, so no row is lost and none is
learned twice. The plan moves as few partitions as it can: a member keeps what it reads
up to its new share, and only the excess and a retired member's partitions move.

Example:
    >>> plan = plan_scale({0: [0, 2], 1: [1, 3]}, 4, weights={0: 0.5, 1: 0.5}, next_id=2)
    >>> plan.add, plan.retire, plan.assignment
    ([2, 3], [], {0: [0], 1: [1], 2: [2], 3: [3]})
    >>> plan_scale(plan.assignment, 3, weights={0: 0.4, 1: 0.1, 2: 0.3, 3: 0.2}, next_id=4).moves
    [(1, 1, 0)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from actors.errors import ConfigError

if TYPE_CHECKING:
    from actors.learner import OnlineLearner

__all__ = [
    "NEW_MEMBER_POLICIES",
    "LagAutoscaler",
    "MemberStart",
    "ScalePlan",
    "choose_node",
    "drift_scaling",
    "plan_scale",
]

NEW_MEMBER_POLICIES = ("fresh", "clone-best", "distill")
"""How a member added by scaling starts: fresh weights; a copy of the weights of the member
with the highest mixing weight; or a fresh network first fitted on the ensemble's own
answers over the coordinator's recent shared sample (knowledge, not bulk rows, flows)."""


@dataclass(frozen=True)
class ScalePlan:
    """What one scaling step does.

    Attributes:
        add: ids of the members to start.
        retire: ids of the members to stop (lowest weight first, unless named).
        moves: (partition, from member, to member) for every partition that moves.
        assignment: member id -> its partitions once the step is done.
    """

    add: list[int]
    retire: list[int]
    moves: list[tuple[int, int, int]]
    assignment: dict[int, list[int]]

    @property
    def changes(self) -> bool:
        return bool(self.add or self.retire or self.moves)


def plan_scale(
    assignment: dict[int, list[int]],
    members: int,
    *,
    weights: dict[int, float],
    next_id: int,
    retire: list[int] | None = None,
) -> ScalePlan:
    """Plan the step from the current `assignment` to `members` members.

    Args:
        assignment: member id -> partitions it reads now.
        members: the size wanted.
        weights: current mixing weight per member (picks whom to retire).
        next_id: the first id a new member may take (ids are never reused).
        retire: members to retire by name (first); the rest by lowest weight.

    Raises:
        ConfigError: for a size below 1 or above the partition count (a member needs a
            partition of its own), or a named member that is not in the ensemble.
    """
    partitions = sorted(p for owned in assignment.values() for p in owned)
    if members < 1:
        raise ConfigError(f"members must be >= 1, got {members}")
    if members > len(partitions):
        raise ConfigError(
            f"the source has {len(partitions)} partition(s), so at most {len(partitions)} "
            f"members can each read one; cannot scale to {members} (a Kafka topic's "
            "partition count is fixed; a synthetic or file source is split into "
            "--max-members partitions when the job starts)"
        )
    named = list(retire or [])
    unknown = [m for m in named if m not in assignment]
    if unknown:
        raise ConfigError(f"cannot retire {unknown}: the members are {sorted(assignment)}")
    leaving = max(0, len(assignment) - members)
    if len(named) > leaving:
        raise ConfigError(
            f"retiring {named} would leave {len(assignment) - len(named)} members, "
            f"fewer than the {members} asked for"
        )
    # Lowest weight first; among equals the newest (it has learned the least).
    by_weight = sorted(
        (m for m in assignment if m not in named), key=lambda m: (weights.get(m, 0.0), -m)
    )
    retiring = named + by_weight[: leaving - len(named)]
    added = list(range(next_id, next_id + max(0, members - len(assignment))))
    survivors = [m for m in sorted(assignment) if m not in retiring]
    everyone = survivors + added
    base, extra = divmod(len(partitions), len(everyone))
    # Members holding the most keep the larger shares: fewer partitions move.
    by_holding = sorted(everyone, key=lambda m: (-len(assignment.get(m, [])), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_holding)}
    final: dict[int, list[int]] = {}
    orphans: list[tuple[int, int]] = []  # (partition, from member)
    for m in retiring:
        orphans.extend((p, m) for p in assignment[m])
    for m in survivors:
        owned = sorted(assignment[m])
        final[m] = owned[: quota[m]]
        orphans.extend((p, m) for p in owned[quota[m] :])
    for m in added:
        final[m] = []
    orphans.sort()
    moves = []
    for m in everyone:
        while len(final[m]) < quota[m]:
            partition, donor = orphans.pop(0)
            final[m].append(partition)
            moves.append((partition, donor, m))
    return ScalePlan(
        add=added,
        retire=retiring,
        moves=moves,
        assignment={m: sorted(final[m]) for m in everyone},
    )


def choose_node(
    members_per_node: dict[str, int], free_cpus: dict[str, float], cpus: float
) -> str | None:
    """The node a new member should go to: the one with the fewest members among those
    with `cpus` free (ties: the most free CPUs, then the id); None if none has room.

    Ray's ``SPREAD`` strategy spreads the actors of one placement round but does not look
    at where earlier members are, so a scale-up names the emptier node itself (a soft
    affinity: Ray still places the member elsewhere if that node goes away)."""
    fits = [node for node, free in free_cpus.items() if free + 1e-9 >= cpus]
    if not fits:
        return None
    return min(fits, key=lambda n: (members_per_node.get(n, 0), -free_cpus[n], n))


@dataclass(frozen=True)
class MemberStart:
    """How a member added by scaling begins (used only when it has no checkpoint).

    Attributes:
        policy: one of `NEW_MEMBER_POLICIES`.
        weights: ``clone-best``: the weights to copy (normaliser included).
        x: ``distill``: recent shared-sample inputs.
        y: ``distill``: the ensemble's answers on them (class indices, or values).
        source_member: ``clone-best``: whose weights they are.
    """

    policy: str = "fresh"
    weights: list[np.ndarray] | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    source_member: int | None = None

    def __post_init__(self) -> None:
        if self.policy not in NEW_MEMBER_POLICIES:
            raise ConfigError(
                f"new-member policy ({self.policy!r}) must be one of "
                f"{', '.join(NEW_MEMBER_POLICIES)}"
            )

    def apply(self, learner: OnlineLearner) -> None:
        if self.policy == "clone-best" and self.weights is not None:
            learner.set_weights(self.weights)
        elif self.policy == "distill" and self.x is not None and self.y is not None and len(self.y):
            learner.pretrain(self.x, self.y)


@dataclass
class LagAutoscaler:
    """Sizes the ensemble by lag: one more member while the total lag stays above
    `high_lag_rows` and keeps growing, one fewer after `idle_s` with the lag under
    `low_lag_rows`; never outside [`min_members`, `max_members`], and at most one change
    per `cooldown_s` (a new member needs time to load and catch up before its effect on
    the lag shows).

    Example:
        >>> scaler = LagAutoscaler(1, 4, high_lag_rows=1000, cooldown_s=10)
        >>> scaler.decide(0.0, 2, 5000), scaler.decide(1.0, 2, 6000), scaler.decide(2.0, 3, 7000)
        (None, 3, None)
    """

    min_members: int
    max_members: int
    high_lag_rows: int = 50_000
    low_lag_rows: int = 0
    idle_s: float = 30.0
    cooldown_s: float = 30.0
    _last_change: float = field(default=-float("inf"), repr=False)
    _last_lag: int | None = field(default=None, repr=False)
    _idle_since: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_members <= self.max_members:
            raise ConfigError(
                f"autoscaling needs 1 <= min members ({self.min_members}) <= max members "
                f"({self.max_members})"
            )
        if self.low_lag_rows >= self.high_lag_rows:
            raise ConfigError(
                f"the idle lag ({self.low_lag_rows}) must be below the lag that adds a "
                f"member ({self.high_lag_rows})"
            )

    def decide(self, now: float, members: int, lag: int | None) -> int | None:
        """The member count to scale to now, or None to stay (`lag`: total rows behind)."""
        previous, self._last_lag = self._last_lag, lag
        if lag is None:
            return None
        self._idle_since = (self._idle_since or now) if lag <= self.low_lag_rows else None
        if now - self._last_change < self.cooldown_s:
            return None
        target = None
        growing = previous is not None and lag > previous
        if lag > self.high_lag_rows and growing and members < self.max_members:
            target = members + 1
        elif (
            self._idle_since is not None
            and now - self._idle_since >= self.idle_s
            and members > self.min_members
        ):
            target = members - 1
        if target is not None:
            self._last_change = now
            self._idle_since = None
        return target


def drift_scaling(
    members: list[dict], answered: dict[int, int], limit: int
) -> list[tuple[str, int]]:
    """Scaling steps due to drift events: ``("spawn", member)`` adds a challenger beside a
    drifted member (while the ensemble is below `limit`), ``("retire", member)`` retires a
    drifted member whose weight is 0 (at or below chance; never the last member).

    Args:
        members: current members' status entries (``id``, ``weight``, ``drift``).
        answered: member id -> drift actions already answered; updated here.
        limit: the most members the job may have.
    """
    steps: list[tuple[str, int]] = []
    size = len(members)
    for member in members:
        drift = member.get("drift") or {}
        action, acted = drift.get("action"), int(drift.get("acted", 0))
        new = acted - answered.get(member["id"], 0)
        answered[member["id"]] = acted
        if new <= 0:
            continue
        if action == "spawn" and size < limit:
            steps.append(("spawn", member["id"]))
            size += 1
        elif action == "retire" and float(member.get("weight") or 0.0) <= 0.0 and size > 1:
            steps.append(("retire", member["id"]))
            size -= 1
    return steps
