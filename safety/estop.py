"""E-stop latch: latched by any origin, reset only by an explicit call with a reason.

A reset never resumes motion by itself: the core disarms every motion source at reset and a
source moves again only after it has sent a (near-)zero command received after the reset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qwen_stack.safety.inputs import EStopEvent

MAX_REASON_CHARS = 1000          # a longer reset reason is refused (it goes into the history and the audit log)


@dataclass
class EStopLatch:
    latched: bool = False
    cause: EStopEvent | None = None          # the event that latched it (first one wins)
    reset_time: float = float("-inf")        # time of the last successful reset
    history: list = field(default_factory=list)  # (stamp, "latch"/"reset", origin, reason)

    def latch(self, event: EStopEvent) -> bool:
        """Latch (idempotent). Returns True when this event changed the state."""
        self.history.append((event.stamp, "latch", event.origin, event.reason))
        if self.latched:
            return False
        self.latched, self.cause = True, event
        return True

    def reset(self, reason: str, operator: str, now: float, blocked_by: str | None = None) -> tuple[bool, str]:
        """Explicit reset. Refused without a reason, when not latched, or when `blocked_by` names a
        condition that still holds (e.g. silent operator heartbeat)."""
        if not self.latched:
            return False, "e-stop is not latched"
        if not isinstance(reason, str) or not reason.strip():
            return False, "reset refused: a reason is required"
        if len(reason) > MAX_REASON_CHARS:
            return False, f"reset refused: reason longer than {MAX_REASON_CHARS} characters"
        if not isinstance(operator, str) or len(operator) > 200:
            return False, "reset refused: operator name must be a string of at most 200 characters"
        if blocked_by:
            return False, f"reset refused: {blocked_by}"
        self.latched, self.cause, self.reset_time = False, None, now
        self.history.append((now, "reset", operator or "unknown", reason.strip()))
        return True, ("e-stop reset; motion stays stopped until each source sends a zero command "
                      "and then a new one")
