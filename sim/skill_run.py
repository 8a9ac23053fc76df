"""One motion skill from its first odometry sample to its end, ROS-free: odometry in, a command or the outcome out.

The skills node (a thin shell) feeds every odometry sample to `SkillRun.step` and sends what it answers; this
module holds the rules. A skill ends:
- done: the controller says so (skill_control answers done only with the base at rest);
- the process is stopping, or the e-stop is latched;
- the sim clock jumped back (a reset: the deadline would otherwise lie in the old time and never come);
- timed out in sim time: expected duration + margin, extended by the time the base ran slower than half the
  command (the supervisor's slowdown zone scales it to 0.3; it stops the base on stale inputs), at most
  SLOWED_CAP expected durations: a skill is timed against what the base was let do;
- held still: the base stood at rest under a command to move for HELD_STILL_S of sim time (the supervisor
  stops it while something is in its stop zone; a go-to-pose whose goal is against an object sat there until
  its stretched deadline, 48 s a try, before this rule).
The expected durations of the three motion skills are here too (expected_* below).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from qwen_stack.sim.skill_control import Twist2D

SLOWED_CAP = 3.0   # a skill's deadline grows by its slowed time, up to this many expected durations
HELD_STILL_S = 5.0         # s of sim time at rest under a command to move that end a skill
REST_LINEAR, REST_ANGULAR = 0.01, 0.02   # m/s, rad/s: "at rest" (the supervisor's creep is 0.05 m/s)
MOVE_LINEAR, MOVE_ANGULAR = 0.03, 0.1    # m/s, rad/s: "a command to move" (a controller settling asks less)


@dataclass(frozen=True)
class Tick:
    command: Twist2D | None                # to send now
    outcome: tuple[bool, str] | None = None   # (success, message) once the skill has ended


def slower_than_half(command: Twist2D, velocity: Twist2D, limits) -> bool:
    """The base moves at less than half `command` (or against it) on the command's main axis."""
    if command.linear == 0.0 and command.angular == 0.0:
        return False
    lin, ang = abs(command.linear) / limits.max_linear, abs(command.angular) / limits.max_angular
    want, got = (command.linear, velocity.linear) if lin >= ang else (command.angular, velocity.angular)
    return got * want < 0.5 * want * want


class SkillRun:
    def __init__(self, controller, t0: float, expected_s: float, margin_s: float, limits) -> None:
        self.controller, self.limits = controller, limits
        self.t0 = self.t_prev = t0
        self.expected_s = expected_s
        self.deadline = t0 + expected_s + margin_s
        self.slowed = 0.0                     # s of sim time the base ran below half the command
        self.still = 0.0                      # s of sim time the base has stood at rest under a command to move
        self.command: Twist2D | None = None   # the last command sent

    def step(self, pose, velocity: Twist2D, t: float, *, estop_latched: bool = False,
             stopping: bool = False) -> Tick:
        """One odometry sample (pose, velocity, its stamp t in sim seconds)."""
        if stopping:
            return Tick(None, (False, "the skills node is stopping: stopped"))
        if estop_latched:
            return Tick(None, (False, "e-stop latched: stopped"))
        if t < self.t_prev:
            return Tick(None, (False, f"the clock jumped back ({self.t_prev:.2f} s -> {t:.2f} s) during the skill: "
                                      "stopped"))
        if self.command is not None and slower_than_half(self.command, velocity, self.limits):
            self.slowed += t - self.t_prev
        moving_asked = self.command is not None and (abs(self.command.linear) >= MOVE_LINEAR
                                                     or abs(self.command.angular) >= MOVE_ANGULAR)
        at_rest = abs(velocity.linear) < REST_LINEAR and abs(velocity.angular) < REST_ANGULAR
        self.still = self.still + (t - self.t_prev) if moving_asked and at_rest else 0.0
        self.t_prev = t
        if self.still >= HELD_STILL_S:
            return Tick(None, (False, f"held still for {self.still:.1f} s (sim time) under a command to move: "
                                      "something in the safety supervisor's stop zone blocks the way: stopped"))
        if t > self.deadline + min(self.slowed, SLOWED_CAP * self.expected_s):
            return Tick(None, (False, f"timed out after {t - self.t0:.1f} s (sim time; {self.slowed:.1f} s of it "
                                      "below half the commanded speed): stopped"))
        # the odometry stamp lets the controller time the loop and bridge its delay
        self.command = self.controller.update(pose, velocity, t)
        return Tick(self.command, (True, "done") if self.controller.done else None)


def expected_drive_s(distance: float, speed: float, limits) -> float:
    return abs(distance) / max(speed, 1e-3) + speed / limits.linear_accel


def expected_rotate_s(angle: float, speed: float, limits) -> float:
    return abs(angle) / max(speed, 1e-3) + speed / limits.angular_accel


def expected_go_to_pose_s(distance: float, speed: float, limits) -> float:
    """Drive at `speed`, plus up to two half turns (toward the goal, to its heading)."""
    return distance / max(speed, 1e-3) + 2 * math.pi / limits.default_angular
