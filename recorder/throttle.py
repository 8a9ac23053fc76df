"""Per-topic rate limit for the recorder (the camera is recorded at a few Hz, not at its full rate)."""
from __future__ import annotations


class RateThrottle:
    """Keeps at most `rate_hz` messages per second on average; rate 0 keeps everything.

    Slots are spaced by 1/rate from the last kept message's slot, not from its arrival, so a 15 Hz
    stream throttled to 5 Hz keeps every third frame even with arrival jitter; after a gap the schedule
    restarts at the next arrival instead of letting a burst through.
    """

    def __init__(self, rate_hz: float):
        if not rate_hz >= 0:
            raise ValueError(f"rate must be >= 0, got {rate_hz!r}")
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self._next: float | None = None
        self.kept = self.dropped = 0

    def accept(self, t: float) -> bool:
        """`t`: arrival time in seconds (monotonic)."""
        if self.period == 0.0:
            self.kept += 1
            return True
        # a message up to a quarter period early takes the slot: arrival jitter must not push the pick to the
        # next frame (15 Hz into 5 Hz would otherwise alternate gaps of 0.27 and 0.13 s)
        if self._next is not None and t < self._next - 0.25 * self.period:
            self.dropped += 1
            return False
        slot = self._next if self._next is not None and t - self._next < self.period else t
        self._next = slot + self.period
        self.kept += 1
        return True
