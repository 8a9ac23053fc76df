"""Differential-drive kinematics, the motor driver (with its command timeout) and wheel odometry.

Pure Python: no MuJoCo, no ROS. The simulator feeds encoder angles in and wheel speed targets out;
a real robot's driver would do the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from qwen_stack.geometry import wrap_angle


@dataclass(frozen=True)
class DiffDriveKinematics:
    wheel_radius: float      # m
    wheel_separation: float  # m, between the wheels' contact points

    def wheel_speeds(self, linear: float, angular: float) -> tuple[float, float]:
        """Body twist (m/s, rad/s) -> (left, right) wheel speeds in rad/s."""
        half = 0.5 * self.wheel_separation * angular
        return (linear - half) / self.wheel_radius, (linear + half) / self.wheel_radius

    def body_twist(self, left: float, right: float) -> tuple[float, float]:
        """(left, right) wheel speeds (rad/s) or angle increments -> (linear, angular)."""
        r = self.wheel_radius
        return r * (left + right) / 2.0, r * (right - left) / self.wheel_separation


@dataclass
class MotorDriver:
    """Holds the last velocity command; stops the wheels when it is older than `timeout`.

    Like a real motor driver's watchdog: the base stops by itself when commands go stale, and a
    bad command (not finite) is refused and stops the base. Speeds are clamped to the wheels'
    limit keeping the ratio between the wheels, so the path's curvature is preserved.
    """
    kinematics: DiffDriveKinematics
    timeout: float = 0.5            # s of sim time without a command -> stop
    max_wheel_speed: float = 20.0   # rad/s
    max_wheel_accel: float = 40.0   # rad/s^2, ramp of the wheel speed targets (2 m/s^2 at r=0.05)
    _left: float = 0.0
    _right: float = 0.0
    _stamp: float = -math.inf
    _out: tuple[float, float] = (0.0, 0.0)   # ramped targets last returned
    _out_time: float | None = None

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"MotorDriver.timeout must be > 0, got {self.timeout}")
        if not self.max_wheel_speed > 0:
            raise ValueError(f"MotorDriver.max_wheel_speed must be > 0, got {self.max_wheel_speed}")
        if not self.max_wheel_accel > 0:
            raise ValueError(f"MotorDriver.max_wheel_accel must be > 0, got {self.max_wheel_accel}")

    def command(self, linear: float, angular: float, now: float) -> str | None:
        """Accept a body twist at sim time `now`. Returns an error message (and stops) on bad input."""
        if not (math.isfinite(linear) and math.isfinite(angular)):
            self.stop()
            return f"velocity command not finite (linear={linear}, angular={angular}): stopping"
        left, right = self.kinematics.wheel_speeds(linear, angular)
        peak = max(abs(left), abs(right))
        if peak > self.max_wheel_speed:
            scale = self.max_wheel_speed / peak
            left, right = left * scale, right * scale
        self._left, self._right, self._stamp = left, right, now
        return None

    def stop(self) -> None:
        self._left = self._right = 0.0
        self._stamp = -math.inf

    def stale(self, now: float) -> bool:
        return now - self._stamp > self.timeout

    def commanded(self, now: float) -> tuple[float, float]:
        """(left, right) wheel speeds last commanded, zero once the command is stale (before the ramp)."""
        if self.stale(now):
            return 0.0, 0.0
        return self._left, self._right

    def wheel_targets(self, now: float) -> tuple[float, float]:
        """(left, right) wheel speed targets at sim time `now`: the command ramped at max_wheel_accel.

        Both wheels ramp over the same time so that the path's curvature is kept while ramping.
        """
        goal = self.commanded(now)
        dt = 0.0 if self._out_time is None else max(0.0, now - self._out_time)
        self._out_time = now
        dl, dr = goal[0] - self._out[0], goal[1] - self._out[1]
        peak = max(abs(dl), abs(dr))
        step = self.max_wheel_accel * dt
        if peak > step:
            dl, dr = dl * step / peak, dr * step / peak
        self._out = (self._out[0] + dl, self._out[1] + dr)
        return self._out


@dataclass
class WheelOdometry:
    """Dead reckoning from wheel encoder angles (midpoint integration of each increment)."""
    kinematics: DiffDriveKinematics
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    linear: float = 0.0   # m/s, from the last update
    angular: float = 0.0  # rad/s
    _last: tuple[float, float, float] | None = None  # (left angle, right angle, time)

    def update(self, left_angle: float, right_angle: float, now: float) -> None:
        if self._last is None:
            self._last = (left_angle, right_angle, now)
            return
        l0, r0, t0 = self._last
        ds, dyaw = self.kinematics.body_twist(left_angle - l0, right_angle - r0)
        mid = self.yaw + 0.5 * dyaw
        self.x += ds * math.cos(mid)
        self.y += ds * math.sin(mid)
        self.yaw = wrap_angle(self.yaw + dyaw)
        dt = now - t0
        if dt > 0:
            self.linear, self.angular = ds / dt, dyaw / dt
        self._last = (left_angle, right_angle, now)
