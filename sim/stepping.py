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


class RealTimePacer:
    """Keeps sim time = wall time x real_time_factor: for each turn of the stepping loop, how long to sleep or
    how many physics steps to take (never past the next sensor deadline, so sensors are read on time). Behind
    by more than max_lag_s (the machine cannot keep up), it re-anchors instead of spiralling: the simulation
    then runs slower than real time, and says so."""

    def __init__(self, real_time_factor: float, timestep: float, max_lag_s: float, wall0: float, sim0: float):
        self.rtf, self.timestep, self.max_lag_s = real_time_factor, timestep, max_lag_s
        self.wall0, self.sim0 = wall0, sim0

    def next(self, wall: float, sim_time: float, next_due: float) -> tuple[float, int, bool]:
        """-> (sleep_s, steps, re_anchored); either sleep_s > 0 and steps == 0, or steps >= 1."""
        target = self.sim0 + (wall - self.wall0) * self.rtf
        if sim_time >= target:
            return min(0.002, (sim_time - target) / self.rtf + 1e-4), 0, False
        lagging = target - sim_time > self.max_lag_s
        if lagging:
            self.wall0, self.sim0 = wall, sim_time
            target = sim_time + self.timestep
        until = min(target, next_due)
        return 0.0, max(1, math.ceil((until - sim_time) / self.timestep - EPS)), lagging
