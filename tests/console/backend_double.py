"""BackendDouble: a ConsoleBackend test double that records what it would send to ROS.

Used by the API tests and the browser tests that run without a ROS graph. Every `_send_*` is
recorded in `sent` as (what, value, time.monotonic()); service-like calls answer with the
configured outcomes. `ticking()` runs teleop_tick at teleop_publish_hz in a thread, as the ROS
bridge's timer does.
"""
from __future__ import annotations

import contextlib
import threading
import time

from qwen_stack.console.backend import ConsoleBackend, Outcome
from qwen_stack.console.config import ConsoleSettings
from qwen_stack.console.teleop import TeleopCommand


class BackendDouble(ConsoleBackend):
    def __init__(self, settings: ConsoleSettings | None = None) -> None:
        super().__init__(settings or ConsoleSettings())
        self.sent: list[tuple[str, object, float]] = []
        self.ticks: list[float] = []   # when ticking() called teleop_tick
        self.reset_outcome = Outcome(True, "e-stop reset")
        self.approval_outcome = Outcome(True, "answer recorded")
        self.task_outcome = Outcome(True, "goal accepted")
        self.cancel_outcome = Outcome(True, "cancel requested")

    def _record(self, what: str, value: object = None) -> None:
        self.sent.append((what, value, time.monotonic()))

    def sent_of(self, what: str) -> list:
        return [v for w, v, _ in self.sent if w == what]

    def times_of(self, what: str) -> list[float]:
        return [t for w, _, t in self.sent if w == what]

    @contextlib.contextmanager
    def ticking(self):
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(1.0 / self.settings.teleop_publish_hz):
                self.ticks.append(time.monotonic())
                self.teleop_tick()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=2)

    def _send_estop(self) -> None:
        self._record("estop", True)

    def _send_teleop(self, cmd: TeleopCommand) -> None:
        self._record("teleop", cmd)

    def _send_teleop_lock(self, held: bool) -> None:
        self._record("teleop_lock", held)

    def send_heartbeat(self) -> None:
        self._record("heartbeat")

    def control_heartbeat(self, control_id: object) -> None:
        t = time.monotonic()                     # taken before: the backend's own stamp is no earlier
        super().control_heartbeat(control_id)   # recorded only when accepted (the holder's)
        self.sent.append(("control_heartbeat", control_id, t))

    async def reset_estop(self, reason: str, operator: str) -> Outcome:
        self._record("reset_estop", (reason, operator))
        return self.reset_outcome

    async def send_approval(self, request_id: str, approved: bool, operator: str) -> Outcome:
        self._record("approval", (request_id, approved, operator))
        return self.approval_outcome

    async def start_task(self, instruction: str) -> Outcome:
        self._record("start_task", instruction)
        self.hub.update(self.state.on_task, instruction, "sending")
        self.hub.update(self.state.on_task, instruction, "running" if self.task_outcome.ok else "rejected")
        return self.task_outcome

    async def cancel_task(self) -> Outcome:
        self._record("cancel_task")
        return self.cancel_outcome
