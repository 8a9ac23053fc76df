"""Closed-loop controllers behind the robot skills (drive a distance, rotate, go to a pose).

Pure: each controller takes the odometry pose and velocity at every tick and returns the body twist
to send (it never talks to the base itself: the skills node publishes that twist on the safety
supervisor's input topic). Requests are checked first: `check_*` return an error message or None,
and a rejected request never produces a command.

A controller is `done` only once the goal is within tolerance AND the base is at rest (odometry
speed below rest_linear / rest_angular on rest_ticks messages in a row, with only stops sent
meanwhile, so that no motion command is still on its way to the base): with the command loop's
latency (odometry and commands cross processes; a loaded host delivers them in bursts) the base can
still be moving fast when the goal comes within tolerance. On arrival the controller commands a
stop and waits; if the base ends outside settle_factor tolerances (it overshot), it creeps back at
the floor speed; once arrived, anywhere within settle_factor tolerances it only stops and waits (the
creep itself can overshoot by floor speed x loop delay, and must not oscillate until the skill
times out).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from qwen_stack.geometry import Pose2D, wrap_angle

__all__ = ["Pose2D", "Twist2D", "STOP", "SkillLimits", "DriveDistanceController", "RotateController",
           "GoToPoseController"]


@dataclass(frozen=True)
class Twist2D:
    linear: float   # m/s
    angular: float  # rad/s


STOP = Twist2D(0.0, 0.0)


@dataclass(frozen=True)
class SkillLimits:
    """Bounds and tuning shared by the skills: the top speeds are the robot's (config/robot.yaml), the rest
    the skills_node section of config/sim.yaml (node_config.SkillsNodeConfig.limits builds them)."""
    max_linear: float                # m/s, fastest a skill may drive: the robot's max_linear_vel
    max_angular: float               # rad/s, fastest a skill may turn: the robot's max_angular_vel
    default_linear: float = 0.3      # m/s when a request gives no speed (0)
    default_angular: float = 0.8     # rad/s when a request gives no speed (0)
    max_distance: float = 10.0       # m, longest drive/go_to_pose accepted
    linear_accel: float = 0.5        # m/s^2, braking profile (v <= sqrt(2 a d))
    angular_accel: float = 2.0       # rad/s^2
    min_linear: float = 0.03         # m/s, slowest command while not yet there (beats static friction)
    min_angular: float = 0.08        # rad/s
    position_tolerance: float = 0.01  # m, done when this close
    angle_tolerance: float = 0.005   # rad, done when this close (~0.3 deg)
    heading_gain: float = 2.5        # rad/s per rad of heading error while driving
    rest_linear: float = 0.01        # m/s, a goal is reached only when the base is slower than this
    rest_angular: float = 0.02       # rad/s, ... and turns slower than this
    settle_factor: float = 3.0       # after an overshoot, at rest within this many tolerances is reached
    rest_ticks: int = 3              # odometry messages in a row at rest (and only stops sent) = at rest

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"skill limit {name} must be a finite number > 0, got {value!r}")
        if self.default_linear > self.max_linear:
            raise ValueError("skill limit default_linear must be <= max_linear")
        if self.default_angular > self.max_angular:
            raise ValueError("skill limit default_angular must be <= max_angular")
        if self.settle_factor < 1:
            raise ValueError("skill limit settle_factor must be >= 1 (a band narrower than the tolerance)")
        if self.rest_ticks != int(self.rest_ticks):
            raise ValueError(f"skill limit rest_ticks must be a whole number of messages, got {self.rest_ticks!r}")


def _finite(**values: float) -> str | None:
    for name, v in values.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{name} must be a finite number, got {v!r}"
    return None


def _speed(requested: float, default: float, limit: float, name: str) -> tuple[float, str | None]:
    if requested < 0:
        return 0.0, f"{name} must be > 0 (or 0 for the default), got {requested}"
    if requested > limit:
        return 0.0, f"{name} {requested} exceeds the limit {limit}"
    return (requested or default), None


def _at_rest(velocity: Twist2D, limits: SkillLimits) -> bool:
    return abs(velocity.linear) <= limits.rest_linear and abs(velocity.angular) <= limits.rest_angular


class _RestDetector:
    """At rest: the base slower than the rest speeds on rest_ticks odometry messages in a row, no motion
    command sent meanwhile (one still in flight would move the base again)."""

    def __init__(self, limits: SkillLimits):
        self.limits, self.count = limits, 0

    def observe(self, velocity: Twist2D) -> bool:
        self.count = self.count + 1 if _at_rest(velocity, self.limits) else 0
        return self.count >= self.limits.rest_ticks

    def sent(self, twist: Twist2D) -> Twist2D:
        if twist != STOP:
            self.count = 0
        return twist


def _reached(error: float, tolerance: float, arrived: bool, limits: SkillLimits) -> bool:
    """Stop here (done once at rest): within tolerance, or within the settle band once arrived."""
    return abs(error) <= tolerance or (arrived and abs(error) <= limits.settle_factor * tolerance)


def _profile(remaining: float, cruise: float, accel: float, floor: float) -> float:
    """Signed speed toward `remaining`: cruise, braking so that it can stop in time, never below floor."""
    mag = min(cruise, math.sqrt(2.0 * accel * abs(remaining)))
    return math.copysign(max(mag, floor), remaining)


class _Controller:
    """What the three controllers share: `update` runs the controller's own `_command` for this tick with the
    rest detection around it, so `done` is only ever set with the base at rest."""

    def __init__(self, limits: SkillLimits):
        self.limits = limits
        self.done = False
        self.arrived = False  # the goal was within tolerance once: stopping, then only creeping back
        self._rest = _RestDetector(limits)

    def update(self, pose: Pose2D, velocity: Twist2D) -> Twist2D:
        """Twist to send for the odometry pose and velocity (body frame) of this tick."""
        return self._rest.sent(self._command(pose, self._rest.observe(velocity)))

    def _command(self, pose: Pose2D, at_rest: bool) -> Twist2D:
        raise NotImplementedError


class DriveDistanceController(_Controller):
    """Drive straight by a signed distance, holding the start heading; progress along that heading."""

    def __init__(self, start: Pose2D, distance: float, speed: float, limits: SkillLimits):
        super().__init__(limits)
        self.start, self.distance, self.speed = start, distance, speed
        self.travelled = 0.0

    @staticmethod
    def check(distance: float, speed: float, limits: SkillLimits) -> tuple[float, str | None]:
        """(speed to use, error or None)."""
        err = _finite(distance=distance, speed=speed)
        if err:
            return 0.0, err
        if abs(distance) > limits.max_distance:
            return 0.0, f"distance {distance} m exceeds the limit {limits.max_distance} m"
        return _speed(speed, limits.default_linear, limits.max_linear, "speed")

    def _command(self, pose: Pose2D, at_rest: bool) -> Twist2D:
        c, s = math.cos(self.start.yaw), math.sin(self.start.yaw)
        self.travelled = (pose.x - self.start.x) * c + (pose.y - self.start.y) * s
        remaining = self.distance - self.travelled
        if _reached(remaining, self.limits.position_tolerance, self.arrived, self.limits):
            self.arrived = True
            self.done = at_rest
            return STOP
        cruise = self.limits.min_linear if self.arrived else self.speed
        v = _profile(remaining, cruise, self.limits.linear_accel, self.limits.min_linear)
        w = self.limits.heading_gain * wrap_angle(self.start.yaw - pose.yaw)
        return Twist2D(v, _clamp(w, self.limits.max_angular))


class RotateController(_Controller):
    """Rotate in place by a signed angle (may exceed pi): the yaw increments are accumulated."""

    def __init__(self, start: Pose2D, angle: float, speed: float, limits: SkillLimits):
        super().__init__(limits)
        self.angle, self.speed = angle, speed
        self._last_yaw = start.yaw
        self.rotated = 0.0

    @staticmethod
    def check(angle: float, speed: float, limits: SkillLimits) -> tuple[float, str | None]:
        err = _finite(angle=angle, speed=speed)
        if err:
            return 0.0, err
        if abs(angle) > 4 * math.pi:
            return 0.0, f"angle {angle} rad exceeds two turns"
        return _speed(speed, limits.default_angular, limits.max_angular, "speed")

    def _command(self, pose: Pose2D, at_rest: bool) -> Twist2D:
        self.rotated += wrap_angle(pose.yaw - self._last_yaw)
        self._last_yaw = pose.yaw
        remaining = self.angle - self.rotated
        if _reached(remaining, self.limits.angle_tolerance, self.arrived, self.limits):
            self.arrived = True
            self.done = at_rest
            return STOP
        cruise = self.limits.min_angular if self.arrived else self.speed
        return Twist2D(0.0, _profile(remaining, cruise, self.limits.angular_accel, self.limits.min_angular))


class GoToPoseController(_Controller):
    """Turn toward the goal, drive to it steering on the bearing, then (optionally) turn to theta.

    Phases: 'drive' (turning on the spot first while the bearing error > TURN_IN_PLACE rad), 'align',
    'done'. Each phase ends only with the base at rest within tolerance; after an overshoot the base
    backs up (never turns around) at the floor speed.
    """
    TURN_IN_PLACE = 0.35  # rad of bearing error above which the robot turns on the spot first
    CLOSE = 0.10          # m: closer than this the robot never turns on the spot toward the goal

    def __init__(self, goal: Pose2D, use_theta: bool, speed: float, limits: SkillLimits):
        super().__init__(limits)
        self.goal, self.use_theta, self.speed = goal, use_theta, speed
        self.phase = "drive"
        self.aligned = False  # the same as `arrived`, for theta

    @staticmethod
    def check(start: Pose2D, goal: Pose2D, speed: float, limits: SkillLimits) -> tuple[float, str | None]:
        err = _finite(x=goal.x, y=goal.y, theta=goal.yaw, max_speed=speed)
        if err:
            return 0.0, err
        dist = math.hypot(goal.x - start.x, goal.y - start.y)
        if dist > limits.max_distance:
            return 0.0, f"goal is {dist:.2f} m away, beyond the limit {limits.max_distance} m"
        return _speed(speed, limits.default_linear, limits.max_linear, "max_speed")

    def _command(self, pose: Pose2D, at_rest: bool) -> Twist2D:
        lim = self.limits
        dx, dy = self.goal.x - pose.x, self.goal.y - pose.y
        dist = math.hypot(dx, dy)
        if self.phase == "drive" and _reached(dist, lim.position_tolerance, self.arrived, lim):
            self.arrived = True
            if not at_rest:
                return STOP
            self.phase = "align" if self.use_theta else "done"
        if self.phase == "drive":
            bearing = wrap_angle(math.atan2(dy, dx) - pose.yaw)
            if abs(bearing) > self.TURN_IN_PLACE and dist > self.CLOSE and not self.arrived:
                return Twist2D(0.0, _profile(bearing, lim.max_angular, lim.angular_accel, lim.min_angular))
            # cos(bearing) slows down while steering; close to the goal (or after arriving) a target
            # behind (an overshoot) gives a negative speed: back up, steering the rear toward it,
            # instead of turning around.
            cruise = lim.min_linear if self.arrived else self.speed
            v = _profile(dist, cruise, lim.linear_accel, lim.min_linear) * math.cos(bearing)
            w = lim.heading_gain * (bearing if abs(bearing) <= math.pi / 2 else wrap_angle(bearing - math.pi))
            return Twist2D(v, _clamp(w, lim.max_angular))
        if self.phase == "align":
            err = wrap_angle(self.goal.yaw - pose.yaw)
            if _reached(err, lim.angle_tolerance, self.aligned, lim):
                self.aligned = True
                if not at_rest:
                    return STOP
                self.phase = "done"
            else:
                cruise = lim.min_angular if self.aligned else lim.max_angular
                return Twist2D(0.0, _profile(err, cruise, lim.angular_accel, lim.min_angular))
        self.done = True
        return STOP


def _clamp(v: float, limit: float) -> float:
    return max(-limit, min(limit, v))
