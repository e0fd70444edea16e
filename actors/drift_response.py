"""What a member does when its error stream drifts: the detector, the cool-down, the events.

Pure logic (no Ray, no TensorFlow): `observe` takes each step's per-row scores and says
which action is due; the member core carries it out on its learner. Everything here goes
into the member's checkpoint (`state` / `restore`), so a restarted member neither forgets
a boost in progress nor fires again on the drift it already answered.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from actors.drift import DriftDetector, detector_from_state, make_detector
from actors.specs import DriftSpec

__all__ = ["DriftResponder"]

RECENT_EVENTS = 50
"""Events kept in full (for status and the report); all are counted."""


class DriftResponder:
    """Runs a `DriftSpec` over a member's test-then-train scores.

    Args:
        spec: detector, action, cool-down and boost settings (`spec.detector` not None).
        regression: whether scores are squared errors (else 1 for a hit, 0 for a miss).
    """

    def __init__(self, spec: DriftSpec, regression: bool):
        assert spec.detector is not None
        self.spec = spec
        self.regression = regression
        self.detector: DriftDetector = make_detector(spec.detector, **dict(spec.params))
        self.detected = 0  # drifts the detector reported
        self.acted = 0  # of those, answered with the action (the rest fell in a cool-down)
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._quiet_until = -1  # rows learned before which a detection is not acted on
        self._boost_until = -1  # rows learned at which a boost ends

    def observe(self, scores: np.ndarray, rows_learned: int, recent: float | None) -> str | None:
        """Take one step's per-row scores; the action to carry out now, if any.

        Args:
            scores: the step's test-then-train scores (hits, or squared errors).
            rows_learned: the member's rows learned, this step included.
            recent: the member's recent accuracy (or error), for the event record.

        Returns:
            the spec's action (``forget``, ``reset``, ``boost-lr``, ``spawn``, ``retire``),
            ``end-boost`` (set the rate back), or None.
        """
        scores = np.asarray(scores, dtype=np.float64)
        errors = scores if self.regression else 1.0 - scores
        if self.detector.update(errors):
            self.detected += 1
            act = rows_learned >= self._quiet_until and self.spec.action != "none"
            event = {
                "rows": int(rows_learned),
                "detector": self.detector.name,
                "action": self.spec.action if act else "none",
                "suppressed": rows_learned < self._quiet_until,
                "recent": recent,
            }
            self.events.append(event)
            if act:
                self.acted += 1
                self._quiet_until = rows_learned + self.spec.cooldown_rows
                if self.spec.action == "boost-lr":
                    self._boost_until = rows_learned + self.spec.boost_rows
                return self.spec.action
        if self._boost_until >= 0 and rows_learned >= self._boost_until:
            self._boost_until = -1
            return "end-boost"
        return None

    @property
    def boosting(self) -> bool:
        return self._boost_until >= 0

    def record_outcome(self, **outcome: Any) -> None:
        """Add what carrying out the last action did (e.g. ``forgot_rows``) to its event."""
        if not self.events:
            raise RuntimeError("no drift event to add an outcome to")
        self.events[-1].update(outcome)

    def summary(self) -> dict[str, Any]:
        """For status and the report."""
        return {
            "detector": self.detector.name,
            "action": self.spec.action,
            "detected": self.detected,
            "acted": self.acted,
            "boosting": self.boosting,
            "events": list(self.events),
        }

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, meta) for the member's checkpoint."""
        arrays = {f"drift/{key}": value for key, value in self.detector.state().items()}
        meta = {
            "detected": self.detected,
            "acted": self.acted,
            "events": list(self.events),
            "quiet_until": self._quiet_until,
            "boost_until": self._boost_until,
        }
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Take back `state`; a checkpoint without drift state (detection newly turned
        on) leaves this responder fresh.

        Raises:
            ValueError: if the saved detector is of another kind than the configured one.
        """
        saved = {k[len("drift/") :]: v for k, v in arrays.items() if k.startswith("drift/")}
        if not saved:
            return
        detector = detector_from_state(saved)
        if detector.name != self.detector.name:
            raise ValueError(
                f"the checkpoint's drift detector is {detector.name!r}, this member's is "
                f"{self.detector.name!r}"
            )
        self.detector = detector
        self.detected, self.acted = int(meta["detected"]), int(meta["acted"])
        self.events.clear()
        self.events.extend(meta["events"])
        self._quiet_until = int(meta["quiet_until"])
        self._boost_until = int(meta["boost_until"])
