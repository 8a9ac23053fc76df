"""Ordered safety verdicts: the most restrictive one wins, and every verdict says why."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

# bounds of what a verdict carries (it is published and written to the audit log): a reason's length and
# the number of reasons; anything longer is cut with a note of how much was cut
MAX_REASON_CHARS = 300
MAX_REASONS = 16


def num(x, digits: int = 3) -> str:
    """A number for a reason text, bounded in length: fixed point for ordinary magnitudes, else scientific
    (`1e308` with .3f prints 309 digits; a 5,000-digit integer cannot even be printed by str())."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return bounded(repr(x), 40)
    if isinstance(x, int) and abs(x) >= 10 ** 15:
        return f"{'-' if x < 0 else ''}<integer of {len(format(abs(x), 'x')) * 4} bits>"
    x = float(x)
    if math.isfinite(x) and abs(x) < 1e6:
        return f"{x:.{digits}f}"
    return f"{x:.{digits}g}"


def bounded(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` cut to `limit` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


class VerdictLevel(enum.IntEnum):
    """Verdict levels, ordered from permissive to restrictive (values match SafetyVerdict.msg)."""

    ALLOW = 0      # input passes unchanged
    LIMIT = 1      # input clamped to a limit (velocity, acceleration, stopping-distance cap)
    SLOWDOWN = 2   # input scaled down because of an obstacle (slowdown zone, time to collision)
    STOP = 3       # output is zero (stop zone, watchdog, stale sensor, non-finite input, geofence)
    REJECT = 4     # input refused outright (not the active source, action outside policy)
    ESTOP = 5      # e-stop latched: every output zero, every action refused


@dataclass(frozen=True)
class Verdict:
    """A level with its named reasons (empty for ALLOW)."""

    level: VerdictLevel = VerdictLevel.ALLOW
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        reasons = [bounded(str(r)) for r in self.reasons[:MAX_REASONS]]
        if len(self.reasons) > MAX_REASONS:
            reasons.append(f"... and {len(self.reasons) - MAX_REASONS} more reasons")
        object.__setattr__(self, "reasons", tuple(reasons))

    @property
    def name(self) -> str:
        return self.level.name


ALLOW = Verdict()


def combine(verdicts: list[Verdict] | tuple[Verdict, ...]) -> Verdict:
    """Most restrictive level wins; reasons of every non-ALLOW verdict are kept, most restrictive first."""
    if not verdicts:
        return ALLOW
    level = max(v.level for v in verdicts)
    ordered = sorted(verdicts, key=lambda v: -int(v.level))
    reasons = tuple(r for v in ordered for r in v.reasons)
    return Verdict(level, reasons)


class VerdictCollector:
    """Accumulates (level, reason) pairs during one step; `verdict()` combines them."""

    __slots__ = ("level", "reasons")

    def __init__(self) -> None:
        self.level = VerdictLevel.ALLOW
        self.reasons: list[tuple[int, str]] = []

    def add(self, level: VerdictLevel, reason: str) -> None:
        if level > self.level:
            self.level = level
        self.reasons.append((int(level), reason))

    def verdict(self) -> Verdict:
        # stable sort: most restrictive reasons first, then in the order they were found
        reasons = tuple(r for _, r in sorted(self.reasons, key=lambda lr: -lr[0]))
        return Verdict(self.level, reasons)
