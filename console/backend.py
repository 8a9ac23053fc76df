"""What the web layer may ask of the robot side: the ConsoleBackend base class.

The ROS bridge (console/ros_bridge.py) implements it over topics, services and the agent's
action; tests use a double that records what would have been sent. The teleop rules (take
over, deadman, hand back) live here once, so both behave alike.
"""
from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass

from qwen_stack.console.events import EventHub, FrameHub
from qwen_stack.console.config import ConsoleSettings
from qwen_stack.console.state import ConsoleState
from qwen_stack.console.teleop import ZERO, TeleopCommand, TeleopControl


@dataclass(frozen=True)
class Outcome:
    """Answer of a robot-side request (service or action). The three cases never blur: `ok` is what the
    robot side answered; `unavailable`: nothing was sent (HTTP 503); `unknown`: the request was sent but no
    answer came in time, so it may have been carried out (HTTP 504, `ok` reported as null)."""
    ok: bool
    message: str
    unavailable: bool = False
    unknown: bool = False


class ConsoleBackend(abc.ABC):
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.state = ConsoleState(settings.recent_verdicts, settings.recent_tool_calls, settings.thinking_max_chars,
                                  settings.max_text_chars, map_period_s=1.0 / settings.map_hz)
        self.hub = EventHub(self.state)
        self.frames = FrameHub()               # the camera (JPEG)
        self.annotated = FrameHub()            # perception's view: the camera with its boxes and labels (JPEG)
        self._teleop = TeleopControl(settings.teleop_max_linear, settings.teleop_max_angular, settings.teleop_deadman_s,
                                     settings.teleop_session_timeout_s)
        # Web thread takes over/commands, ROS timer thread publishes: every change and the publish it
        # causes happen under this lock, so the supervisor sees them in the order they were decided
        # (a tick's stale command can never land after a hand back's zero).
        self._teleop_lock = threading.Lock()

    # --- what a concrete backend sends --------------------------------------------------------
    @abc.abstractmethod
    def _send_estop(self) -> None: ...

    @abc.abstractmethod
    def _send_teleop(self, cmd: TeleopCommand) -> None: ...

    @abc.abstractmethod
    def _send_teleop_lock(self, held: bool) -> None: ...

    @abc.abstractmethod
    def send_heartbeat(self) -> None: ...

    @abc.abstractmethod
    async def reset_estop(self, reason: str, operator: str) -> Outcome: ...

    @abc.abstractmethod
    async def send_approval(self, request_id: str, approved: bool, operator: str) -> Outcome: ...

    @abc.abstractmethod
    async def start_task(self, instruction: str) -> Outcome: ...

    @abc.abstractmethod
    async def cancel_task(self) -> Outcome: ...

    # --- shared rules -------------------------------------------------------------------------
    def trigger_estop(self) -> None:
        """Latch the supervisor's e-stop; a held teleop command is dropped so nothing resumes after a reset."""
        self._send_estop()
        self._release_if(lambda t: t.in_control)

    def _release_if(self, condition) -> bool:
        """Drop control if `condition(teleop)` holds (checked under the lock): zero first, then the lock
        released, then the pages told. True when released."""
        with self._teleop_lock:
            release = condition(self._teleop)
            if release:
                self._teleop.force_release()
                self._send_teleop(ZERO)
                self._send_teleop_lock(False)
        if release:
            self.hub.update(self.state.on_teleop, False)
        return release

    async def approve(self, request_id: str, approved: bool, operator: str) -> Outcome | None:
        """None when no such request is pending (expired or answered)."""
        if not self.hub.read(lambda state: request_id in state.approvals):
            return None
        outcome = await self.send_approval(request_id, approved, operator)
        if outcome.ok:
            self.hub.update(self.state.on_approval_resolved, request_id, "approved" if approved else "denied")
        return outcome

    def take_over(self) -> str:
        with self._teleop_lock:
            control_id = self._teleop.take_over(time.monotonic())
            self._send_teleop_lock(True)
            self._send_teleop(ZERO)
        self.hub.update(self.state.on_teleop, True)
        return control_id

    def hand_back(self, control_id: str) -> None:
        with self._teleop_lock:
            self._teleop.hand_back(control_id)
            self._send_teleop(ZERO)
            self._send_teleop_lock(False)
        self.hub.update(self.state.on_teleop, False)

    def teleop_command(self, control_id: str, linear: object, angular: object,
                       seq: object = None) -> TeleopCommand | None:
        """The command as clamped and sent, or None when `seq` shows a newer one already arrived
        (requests on separate connections can overtake each other: an old drive command must never
        land after the release's zero)."""
        with self._teleop_lock:
            cmd = self._teleop.command(control_id, linear, angular, time.monotonic(), seq)
            if cmd is not None:
                self._send_teleop(cmd)   # now, not at the next tick: a release must stop at once
        return cmd

    def control_heartbeat(self, control_id: object) -> None:
        """The page holding control is alive (TeleopError 409 when `control_id` does not hold control)."""
        with self._teleop_lock:
            self._teleop.heartbeat(control_id, time.monotonic())

    def teleop_tick(self) -> None:
        """Called at teleop_publish_hz: releases control whose session went silent, else keeps the
        supervisor's teleop input fresh while in control."""
        if self._release_if(lambda t: t.session_expired(time.monotonic())):
            return
        with self._teleop_lock:
            out = self._teleop.output(time.monotonic())
            if out is not None:
                self._send_teleop(out)
                self._send_teleop_lock(True)

    def expire_approvals(self) -> None:
        self.hub.update(self.state.expire_approvals, time.time())

    def close(self) -> None:
        """Hand back control on shutdown (zero, then lock released)."""
        self._release_if(lambda t: t.in_control)
