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

Given the odometry stamps, a controller times the loop's delay (a command step to its effect in
odometry) and computes each command for the pose the base will have when that command arrives:
the odometry pose moved on by the commands still on their way. Without it, a loop delay of 0.3 s
of sim time made rotate and go_to_pose overshoot at every stop and time out (the e2e mission
under load).
"""
from __future__ import annotations

import math
from collections import deque
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
    the skills_node section of config/sim.yaml (config.SkillsNodeConfig.limits builds them)."""
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


class _LoopDelay:
    """The command loop's delay, measured: from the odometry stamp a command step was computed on (a
    start, a stop, a reversal) to the first odometry stamp whose speed has moved from the speed
    measured at the step toward the new command by half the step or by a few rest speeds, whichever
    is less (the supervisor may slow the base below the command; the base's own ramp is ~0.02 s).
    It is odometry's way to this node plus the command's way to the base; on a loaded host both grow
    (in sim time, by the real-time factor too) and come in bursts, so the estimate is the longest of
    the last few steps. None until a first step was seen."""
    STEP = 3.0      # rest speeds a command must change by to be timed (well clear of odometry's noise)
    KEEP = 3        # measurements the estimate is the longest of
    LONGEST = 2.0   # s, a step not seen by then is not timed (it was overtaken by others)

    def __init__(self, limits: SkillLimits):
        self.limits = limits
        self.delay: float | None = None
        self._measured: deque[float] = deque(maxlen=self.KEEP)
        # (stamp, linear axis?, speed measured at the step, speed that shows its effect)
        self._probe: tuple[float, bool, float, float] | None = None
        self._last = STOP
        self._sent: deque[tuple[float, Twist2D]] = deque()  # (stamp computed on, command), oldest first

    def observe(self, stamp: float, velocity: Twist2D) -> None:
        if self._probe is None:
            return
        t0, linear, before, mark = self._probe
        if not 0.0 <= stamp - t0 <= self.LONGEST:
            self._probe = None                               # the clock went back, or the step never showed
            return
        got = velocity.linear if linear else velocity.angular
        if (got - mark) * (mark - before) >= 0:
            self._measured.append(stamp - t0)
            self.delay, self._probe = max(self._measured), None

    def sent(self, stamp: float, twist: Twist2D, velocity: Twist2D) -> None:
        """`twist` was computed on the odometry of `stamp`, which showed `velocity`."""
        lim = self.limits
        # steps in units of the rest speeds: a creep at the floor speed is a step too
        d_lin = (twist.linear - self._last.linear) / lim.rest_linear
        d_ang = (twist.angular - self._last.angular) / lim.rest_angular
        if max(abs(d_lin), abs(d_ang)) >= self.STEP:
            linear = abs(d_lin) >= abs(d_ang)
            before, target, rest = ((velocity.linear, twist.linear, lim.rest_linear) if linear
                                    else (velocity.angular, twist.angular, lim.rest_angular))
            shift = min(abs(target - before) / 2, self.STEP * rest)
            if shift > 0:
                step = (stamp, linear, before, before + math.copysign(shift, target - before))
                # a step back against the one being timed hides its effect: time the new one instead
                if self._probe is None or (self._probe[1] == linear
                                           and (self._probe[3] - self._probe[2]) * (step[3] - step[2]) < 0):
                    self._probe = step
        self._last = twist
        if self._sent and stamp < self._sent[-1][0]:
            self._sent.clear()                               # the clock went back
        self._sent.append((stamp, twist))
        horizon = stamp - 2.0 * (self.delay or 0.0) - 1.0
        while self._sent and self._sent[0][0] < horizon:
            self._sent.popleft()

    def moving_in_flight(self, stamp: float) -> bool:
        """A motion command computed within the last `delay` seconds may not have reached the base yet."""
        return bool(self.delay) and any(tw != STOP and t >= stamp - self.delay for t, tw in self._sent)

    def predict(self, pose: Pose2D, stamp: float) -> Pose2D:
        """The pose at stamp + delay: the odometry pose moved on by the commands still on their way
        (those computed in the last `delay` seconds, each until the next one was computed)."""
        if not self.delay:
            return pose
        start = stamp - self.delay
        cmds = [(t, tw) for t, tw in self._sent if t >= start]
        before = [(t, tw) for t, tw in self._sent if t < start]
        if before:                                           # the one the base executes now, until the next
            cmds.insert(0, (start, before[-1][1]))
        for i, (t, tw) in enumerate(cmds):
            end = cmds[i + 1][0] if i + 1 < len(cmds) else stamp
            if end > t:
                pose = _advance(pose, tw, end - t)
        return pose


class _Controller:
    """What the three controllers share: `update` runs the controller's own `_command` for this tick with the
    rest detection around it, so `done` is only ever set with the base at rest.

    With a stamp, the command is computed for the pose the base will have when it arrives: the
    odometry pose moved on by its velocity over the measured loop delay (a Smith predictor). Without
    that, a loop delay D makes every stop land v * D late: braking from cruise overshoots, and a creep
    at the floor speed overshoots past the settle band and back again until the skill times out (0.3 s
    of loop delay, 0.1 s of wall time at the tests' real-time factor of 3, was enough)."""

    def __init__(self, limits: SkillLimits):
        self.limits = limits
        self.done = False
        self.arrived = False  # the goal was within tolerance once: stopping, then only creeping back
        self._rest = _RestDetector(limits)
        self.loop = _LoopDelay(limits)

    def update(self, pose: Pose2D, velocity: Twist2D, stamp: float | None = None) -> Twist2D:
        """Twist to send for the odometry pose and velocity (body frame) of this tick, whose odometry
        stamp (s) lets the controller measure and bridge the loop delay (None: no delay assumed)."""
        at_rest = self._rest.observe(velocity)
        if stamp is not None:
            self.loop.observe(stamp, velocity)
            pose = self.loop.predict(pose, stamp)
            at_rest = at_rest and not self.loop.moving_in_flight(stamp)
        twist = self._rest.sent(self._command(pose, at_rest))
        if stamp is not None:
            self.loop.sent(stamp, twist, velocity)
        return twist

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
    backs up (never turns around) at the floor speed. Close to the goal and off to its side, it
    turns on the spot to face it (or back onto it) before driving.
    """
    TURN_IN_PLACE = 0.35  # rad of bearing error above which the robot turns on the spot first
    CLOSE = 0.10          # m: closer than this the robot never turns round on the spot toward the goal
    SIDEWAYS = 1.0        # rad: ... but it turns to face it (or back onto it) from this far off that axis

    def __init__(self, goal: Pose2D, use_theta: bool, speed: float, limits: SkillLimits):
        super().__init__(limits)
        self.goal, self.use_theta, self.speed = goal, use_theta, speed
        self.phase = "drive"
        self.aligned = False  # the same as `arrived`, for theta
        self._facing = False  # turning on the spot to face a close goal off to the side

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
            # close to the goal (or after arriving) the robot drives toward it or backs onto it,
            # whichever its heading is nearer to: the error of that axis
            axis = bearing if abs(bearing) <= math.pi / 2 else wrap_angle(bearing - math.pi)
            if abs(axis) > self.SIDEWAYS or (self._facing and abs(axis) > self.TURN_IN_PLACE):
                # a goal off to the side: driving moves toward it only by cos(bearing) while the
                # steering swings the heading one way and back by a loop delay's turn each time (it
                # never got there with 0.3 s of loop delay); face it (or back onto it) first
                self._facing = True
                return Twist2D(0.0, _profile(axis, lim.max_angular, lim.angular_accel, lim.min_angular))
            self._facing = False
            # cos(bearing) slows down while steering; close to the goal (or after arriving) a target
            # behind (an overshoot) gives a negative speed: back up, steering the rear toward it,
            # instead of turning around.
            cruise = lim.min_linear if self.arrived else self.speed
            v = _profile(dist, cruise, lim.linear_accel, lim.min_linear) * math.cos(bearing)
            w = lim.heading_gain * axis
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


def _advance(pose: Pose2D, velocity: Twist2D, dt: float) -> Pose2D:
    """Where a base moving at `velocity` (body frame) will be after dt seconds (an arc)."""
    dyaw = velocity.angular * dt
    mid = pose.yaw + dyaw / 2
    d = velocity.linear * dt
    return Pose2D(pose.x + d * math.cos(mid), pose.y + d * math.sin(mid), pose.yaw + dyaw)


def _clamp(v: float, limit: float) -> float:
    return max(-limit, min(limit, v))
