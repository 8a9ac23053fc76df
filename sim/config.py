"""Settings of sim_node and skills_node: validated dataclasses, documented in config/sim.yaml.

Bad values are refused at start with a message naming the parameter (the node exits with code 2).
The robot itself (geometry, sensor mounts, speed limits) is not here: both nodes read it from
`robot_file` (config/robot.yaml, qwen_stack/robot.py), which the stack sets once for every node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from qwen_stack.robot import ROBOT_FILE, RobotSpec
from qwen_stack.sim.robot_description import Frames
from qwen_stack.sim.skill_control import SkillLimits

_FRAMES = Frames()   # the URDF's frame names: the defaults of the frame parameters below

MAX_CAMERA_SIZE = (640, 480)  # the offscreen buffer the world is built with
MAX_CAMERA_RATE = 30.0


class SimConfigError(ValueError):
    """A sim_node/skills_node parameter that cannot be used; the message names it."""


def _from_dict(cls, values: dict[str, Any], who: str):
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise SimConfigError(f"unknown {who} parameters: {sorted(unknown)}")
    return cls(**values)


def _bad(who: str, obj: Any, name: str, why: str) -> None:
    raise SimConfigError(f"{who} parameter '{name}' = {getattr(obj, name)!r}: {why}")


def _positive(who: str, obj: Any, *names: str, upper: float = math.inf) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 < v <= upper):
            _bad(who, obj, name, f"must be a number in (0, {upper}]")


@dataclass(frozen=True)
class SimNodeConfig:
    scenario: str = "fetch_red_cube"
    seed: int = -1
    real_time_factor: float = 1.0
    physics_timestep: float = 0.002
    cmd_vel_timeout: float = 0.5
    camera_width: int = 320
    camera_height: int = 240
    camera_rate: float = 15.0
    jpeg_quality: int = 80
    publish_raw_image: bool = True
    publish_compressed_image: bool = True
    laser_rate: float = 10.0
    laser_beams: int = 360
    laser_range_max: float = 8.0
    odom_rate: float = 30.0
    joint_state_rate: float = 30.0
    clock_rate: float = 100.0
    ground_truth_rate: float = 30.0
    objects_rate: float = 2.0
    publish_tf: bool = True
    world_frame: str = "world"
    odom_frame: str = _FRAMES.odom
    base_frame: str = _FRAMES.base
    camera_pan_frame: str = _FRAMES.camera_pan
    camera_frame: str = _FRAMES.camera
    camera_optical_frame: str = _FRAMES.camera_optical
    laser_frame: str = _FRAMES.laser
    fault_fail_grasps: int = 0
    fault_move_on_approach: str = ""
    robot_file: str = ROBOT_FILE      # the robot description (config/ name or path); the stack sets it

    def __post_init__(self) -> None:
        who = "sim_node"
        if not isinstance(self.robot_file, str) or not self.robot_file.strip():
            _bad(who, self, "robot_file", "must name the robot description (config/robot.yaml)")
        if isinstance(self.fault_fail_grasps, bool) or not isinstance(self.fault_fail_grasps, int) \
                or self.fault_fail_grasps < 0:
            _bad(who, self, "fault_fail_grasps", "must be an integer >= 0")
        if not isinstance(self.fault_move_on_approach, str):
            _bad(who, self, "fault_move_on_approach", "must be an object name or empty")
        if not isinstance(self.scenario, str) or not self.scenario.strip():
            _bad(who, self, "scenario", "must name a scenario in sim/scenarios or a YAML path")
        if not isinstance(self.seed, int) or self.seed < -1:
            _bad(who, self, "seed", "must be an integer >= 0, or -1 for the scenario's own seed")
        _positive(who, self, "real_time_factor", upper=100.0)
        _positive(who, self, "physics_timestep", upper=0.01)
        _positive(who, self, "cmd_vel_timeout", upper=10.0)
        _positive(who, self, "camera_rate", upper=MAX_CAMERA_RATE)
        _positive(who, self, "laser_rate", "odom_rate", "joint_state_rate", "ground_truth_rate", upper=200.0)
        _positive(who, self, "clock_rate", upper=1000.0)
        _positive(who, self, "objects_rate", upper=50.0)
        _positive(who, self, "laser_range_max", upper=100.0)
        if not (isinstance(self.camera_width, int) and 16 <= self.camera_width <= MAX_CAMERA_SIZE[0]):
            _bad(who, self, "camera_width", f"must be an integer in [16, {MAX_CAMERA_SIZE[0]}]")
        if not (isinstance(self.camera_height, int) and 16 <= self.camera_height <= MAX_CAMERA_SIZE[1]):
            _bad(who, self, "camera_height", f"must be an integer in [16, {MAX_CAMERA_SIZE[1]}]")
        if not (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            _bad(who, self, "jpeg_quality", "must be an integer in [1, 100]")
        if not (isinstance(self.laser_beams, int) and 2 <= self.laser_beams <= 4096):
            _bad(who, self, "laser_beams", "must be an integer in [2, 4096]")
        for name in ("world_frame", "odom_frame", "base_frame", "camera_pan_frame", "camera_frame",
                     "camera_optical_frame",
                     "laser_frame"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                _bad(who, self, name, "must be a non-empty frame name")
        if self.clock_rate > 1.0 / self.physics_timestep + 1e-6:
            _bad(who, self, "clock_rate", "cannot exceed the physics rate (1 / physics_timestep)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SimNodeConfig":
        return _from_dict(cls, values, "sim_node")


@dataclass(frozen=True)
class SkillsNodeConfig:
    """The skills' tuning. Their top speeds are the robot's (robot_file); limits(robot) checks the rest
    against it: default speeds within the top speeds, the braking profile no harder than the base brakes."""
    default_linear: float = 0.3
    default_angular: float = 0.8
    max_distance: float = 10.0
    linear_accel: float = 0.5
    angular_accel: float = 2.0
    position_tolerance: float = 0.01
    angle_tolerance: float = 0.005
    rest_linear: float = 0.01
    rest_angular: float = 0.02
    settle_factor: float = 3.0
    rest_ticks: int = 3
    odom_timeout: float = 2.0
    skill_timeout_margin: float = 10.0
    sim_service_timeout: float = 5.0
    robot_file: str = ROBOT_FILE      # the robot description (config/ name or path); the stack sets it

    def __post_init__(self) -> None:
        who = "skills_node"
        _positive(who, self, *(f.name for f in fields(self) if f.name != "robot_file"))
        if not isinstance(self.robot_file, str) or not self.robot_file.strip():
            _bad(who, self, "robot_file", "must name the robot description (config/robot.yaml)")
        if self.settle_factor < 1:
            _bad(who, self, "settle_factor", "must be >= 1 (a band narrower than the tolerance)")

    def limits(self, robot: RobotSpec) -> SkillLimits:
        """The skills' limits on `robot`; SimConfigError naming the parameter that exceeds the robot's limit."""
        who = "skills_node"
        for name, value, limit, robot_name in (
                ("default_linear", self.default_linear, robot.max_linear_vel, "max_linear_vel"),
                ("default_angular", self.default_angular, robot.max_angular_vel, "max_angular_vel"),
                ("linear_accel", self.linear_accel, robot.max_linear_decel, "max_linear_decel"),
                ("angular_accel", self.angular_accel, robot.max_angular_decel, "max_angular_decel")):
            if value > limit:
                _bad(who, self, name, f"above the robot's {robot_name} ({limit:g}, robot_file {self.robot_file})")
        try:
            return SkillLimits(max_linear=robot.max_linear_vel, max_angular=robot.max_angular_vel,
                               default_linear=self.default_linear, default_angular=self.default_angular,
                               max_distance=self.max_distance, linear_accel=self.linear_accel,
                               angular_accel=self.angular_accel, position_tolerance=self.position_tolerance,
                               angle_tolerance=self.angle_tolerance, rest_linear=self.rest_linear,
                               rest_angular=self.rest_angular, settle_factor=self.settle_factor,
                               rest_ticks=self.rest_ticks)
        except ValueError as exc:
            raise SimConfigError(f"{who}: {exc}") from None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SkillsNodeConfig":
        return _from_dict(cls, values, "skills_node")
