"""Short histories of odometry and pan, read at a camera frame's stamp (pure).

A frame is placed with the robot pose and pan of its own instant: the robot may turn at
0.8 rad/s, and 30 ms of lag would move an object 2 m away by 5 cm. Values are interpolated
between the two samples around the stamp; a stamp outside the history by more than
`tolerance` gets None (the sensor is stale or has not spoken). Sensor time can jump back (the
simulator restarts, a bag loops): a sample older than the newest by more than `reset_after`
clears the history instead of mixing two timelines.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from typing import Sequence


class TimedSeries:
    def __init__(self, angle_index: Sequence[int] = (), maxlen: int = 200, reset_after: float = 1.0):
        self.angle_index = tuple(angle_index)   # components that are angles (interpolated on the circle)
        self.reset_after = reset_after
        self._t: deque[float] = deque(maxlen=maxlen)
        self._v: deque[tuple[float, ...]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def push(self, t: float, value: Sequence[float]) -> None:
        with self._lock:
            if self._t and t < self._t[-1] - self.reset_after:
                self._t.clear()
                self._v.clear()
            if self._t and t <= self._t[-1]:
                return                          # out of order or duplicate: keep the series sorted
            self._t.append(float(t))
            self._v.append(tuple(float(x) for x in value))

    def latest_time(self) -> float | None:
        with self._lock:
            return self._t[-1] if self._t else None

    def at(self, t: float, tolerance: float) -> tuple[float, ...] | None:
        with self._lock:
            if not self._t:
                return None
            ts, vs = list(self._t), list(self._v)
        if t <= ts[0]:
            return vs[0] if ts[0] - t <= tolerance else None
        if t >= ts[-1]:
            return vs[-1] if t - ts[-1] <= tolerance else None
        i = bisect.bisect_left(ts, t)
        t0, t1, a, b = ts[i - 1], ts[i], vs[i - 1], vs[i]
        if t1 - t0 > 2 * tolerance:
            return None                         # a gap in the data: no honest value in between
        w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        out = []
        for k, (x, y) in enumerate(zip(a, b)):
            if k in self.angle_index:
                d = math.atan2(math.sin(y - x), math.cos(y - x))
                out.append(math.atan2(math.sin(x + w * d), math.cos(x + w * d)))
            else:
                out.append(x + w * (y - x))
        return tuple(out)

    def rate_at(self, t: float, index: int = 0, span: float = 0.1) -> float | None:
        """Rate of change of one component around t (per second, over about `span` within the
        history), or None when the history does not cover t."""
        with self._lock:
            if len(self._t) < 2:
                return None
            first, last = self._t[0], self._t[-1]
        t0, t1 = max(first, t - span / 2), min(last, t + span / 2)
        if t1 - t0 < 1e-6 or t - last > span or first - t > span:
            return None
        a, b = self.at(t0, span), self.at(t1, span)
        if a is None or b is None:
            return None
        d = b[index] - a[index]
        if index in self.angle_index:
            d = math.atan2(math.sin(d), math.cos(d))
        return d / (t1 - t0)
