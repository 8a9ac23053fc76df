"""When each sensor of the simulator is due, in sim time (pure; used by sim_node and bench/sim_rate.py)."""
from __future__ import annotations

import math

EPS = 1e-9  # s; sim time is a sum of float timesteps


class SensorSchedule:
    """Fixed-rate deadlines. A deadline that was missed entirely is skipped, not published twice."""

    def __init__(self, rates_hz: dict[str, float], start: float = 0.0):
        bad = {k: r for k, r in rates_hz.items() if not (math.isfinite(r) and r > 0)}
        if bad:
            raise ValueError(f"sensor rates must be > 0 Hz: {bad}")
        self.period = {k: 1.0 / r for k, r in rates_hz.items()}
        self.due = {k: start for k in rates_hz}

    def next_due(self) -> float:
        return min(self.due.values())

    def pop_due(self, now: float) -> set[str]:
        """Names due at sim time `now`; their deadlines move on by one period (or past `now`)."""
        fired = set()
        for k, due in self.due.items():
            if due <= now + EPS:
                fired.add(k)
                nxt = due + self.period[k]
                self.due[k] = nxt if nxt > now + EPS else now + self.period[k]
        return fired
