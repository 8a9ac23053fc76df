"""Coalescing of the model's streamed deltas into action feedback (ROS-free).

The backends stream thinking and text a few characters at a time. Every delta goes to agent/thinking,
but the RunTask feedback gets them merged: a burst of tiny feedback messages would overrun the action's
keep-last queue and the client would lose the tool calls between them. A merged message is sent when
the kind changes (thinking -> text), when it grows past `max_chars`, when its first delta is older than
`max_age_s`, and before any other event (a tool call never overtakes the text that led to it)."""
from __future__ import annotations

import time
from typing import Callable


class DeltaCoalescer:
    def __init__(self, emit: Callable[[str, str], None], max_chars: int = 400, max_age_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit, self.max_chars, self.max_age_s, self.clock = emit, max_chars, max_age_s, clock
        self.kind, self.text, self.since = "", "", 0.0

    def add(self, kind: str, text: str) -> None:
        if self.kind not in ("", kind):
            self.flush()
        if not self.text:
            self.since = self.clock()
        self.kind = kind
        self.text += text
        if len(self.text) > self.max_chars or self.clock() - self.since > self.max_age_s:
            self.flush()

    def flush(self) -> None:
        """Send what is pending (nothing when empty)."""
        if self.text:
            self.emit(self.kind, self.text)
        self.kind, self.text = "", ""
