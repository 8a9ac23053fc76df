"""Operator take-over with a deadman: pure rules, no ROS, no web.

One holder at a time owns control (a random control id handed out by `take_over`). While held,
the console publishes `output(now)` at a fixed rate on the supervisor's teleop input: the last
command if it is fresher than the deadman time, else zero. The page sends numbered commands while
a key or stick is held and an explicit zero on release (the numbers keep an overtaken drive command
from landing after the zero), so a lost page, tab or network means zero
within `deadman_s`. Bad input (non-finite numbers, wrong control id) is refused and never moves
the robot; good input is clamped to the configured limits.

Control itself is bound to a live session: the holder's page sends a heartbeat carrying its control
id; with none for `session_timeout_s` (tab closed, network lost), `session_expired(now)` is true and
the caller releases control. Times are monotonic seconds: a stamp from the future (never expected)
counts as silence, so no clock step can keep control alive.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class TeleopCommand:
    linear: float = 0.0   # m/s, + forward
    angular: float = 0.0  # rad/s, + counter-clockwise


ZERO = TeleopCommand()


class TeleopError(ValueError):
    """A refused teleop request; `status` is the HTTP status the web layer answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def clamp_command(linear: object, angular: object, max_linear: float, max_angular: float) -> TeleopCommand:
    """The command to send for a request, clamped to the limits; TeleopError for non-numbers."""
    values = []
    for name, v in (("linear", linear), ("angular", angular)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TeleopError(f"'{name}' must be a finite number, got {v!r}", 422)
        values.append(float(v))
    lin, ang = values
    return TeleopCommand(max(-max_linear, min(max_linear, lin)), max(-max_angular, min(max_angular, ang)))


class TeleopControl:
    def __init__(self, max_linear: float, max_angular: float, deadman_s: float,
                 session_timeout_s: float = math.inf) -> None:
        self.max_linear, self.max_angular, self.deadman_s = max_linear, max_angular, deadman_s
        self.session_timeout_s = session_timeout_s
        self._control_id: str | None = None
        self._command = ZERO
        self._command_time = -math.inf
        self._heartbeat_time = -math.inf
        self._last_seq = -1

    @property
    def in_control(self) -> bool:
        return self._control_id is not None

    def take_over(self, now: float) -> str:
        """Start holding control (the session counts as alive at `now`); a second take-over while held is
        refused (409) until the holder hands back or its session expires."""
        if self._control_id is not None:
            raise TeleopError("control is already held by another console session; it must hand back first", 409)
        self._control_id = secrets.token_urlsafe(16)
        self._command, self._command_time = ZERO, -math.inf
        self._last_seq = -1
        self._heartbeat_time = now
        return self._control_id

    def heartbeat(self, control_id: object, now: float) -> None:
        """The holder's page is alive; TeleopError (409) when `control_id` does not hold control."""
        self._check_holder(control_id)
        self._heartbeat_time = max(self._heartbeat_time, now)

    def session_expired(self, now: float) -> bool:
        """True while held with no heartbeat for longer than session_timeout_s (or a heartbeat stamped
        after `now`: a clock that went back proves nothing about the page)."""
        if self._control_id is None:
            return False
        age = now - self._heartbeat_time
        return age < 0 or age > self.session_timeout_s

    def _check_holder(self, control_id: object) -> None:
        if self._control_id is None:
            raise TeleopError("nobody holds control: take over first", 409)
        if not isinstance(control_id, str) or control_id != self._control_id:
            raise TeleopError("this control id does not hold control", 409)

    def hand_back(self, control_id: object) -> None:
        self._check_holder(control_id)
        self._control_id = None
        self._command, self._command_time = ZERO, -math.inf

    def force_release(self) -> None:
        """Drop control whoever holds it (E-stop pressed, console shutting down)."""
        self._control_id = None
        self._command, self._command_time = ZERO, -math.inf

    def command(self, control_id: object, linear: object, angular: object, now: float,
                seq: object = None) -> TeleopCommand | None:
        """Record a command from the holder; returns it as clamped. `seq` (optional, counts up per
        take-over) orders commands that may arrive out of order: one numbered at or below the last
        accepted is older than what the robot already does and is ignored (None)."""
        self._check_holder(control_id)
        cmd = clamp_command(linear, angular, self.max_linear, self.max_angular)
        if seq is not None:
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise TeleopError(f"'seq' must be a non-negative integer, got {seq!r}", 422)
            if seq <= self._last_seq:
                return None
            self._last_seq = seq
        self._command, self._command_time = cmd, now
        return cmd

    def output(self, now: float) -> TeleopCommand | None:
        """What to publish now: None when not in control, zero when the last command is stale."""
        if self._control_id is None:
            return None
        if now - self._command_time > self.deadman_s:
            return ZERO
        return self._command
