"""Builders shared by the safety tests (a robot and a config with round numbers, a clear scan, odometry at a
pose, a robot description file for a live node)."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import yaml

from qwen_stack.robot import RobotSpec, load_robot, robot_to_dict
from qwen_stack.safety.config import ROBOT_LIMITS, config_from_params
from qwen_stack.safety.inputs import LaserScanData, OdometryData, VelocityCommand
from qwen_stack.safety.supervisor_core import SafetyCore

# The robot of these tests: its limits, the laser on base_link's origin, a 0.2 m footprint (a smaller chassis).
BASE_ROBOT = {
    "max_linear_vel": 0.5, "max_reverse_vel": 0.2, "max_angular_vel": 1.0,
    "max_linear_accel": 1.0, "max_linear_decel": 2.0, "max_angular_accel": 2.0, "max_angular_decel": 4.0,
    "laser_xyz": (0.0, 0.0, 0.11), "footprint_radius": 0.2, "chassis_half_size": (0.13, 0.10, 0.04),
}
BASE_PARAMS = {
    "control_rate_hz": 10.0, "teleop_timeout": 0.5, "autonomy_timeout": 0.5, "teleop_lock_timeout": 1.0,
    "scan_timeout": 0.5, "odom_timeout": 0.5,
    "robot_radius": 0.2, "prediction_horizon": 1.0, "prediction_steps": 10,
    "geofence": [-5.0, -5.0, 5.0, -5.0, 5.0, 5.0, -5.0, 5.0],
    "stop_zone": [0.4, 0.3, 0.4, -0.3, -0.4, -0.3, -0.4, 0.3],
    "slowdown_zone": [1.0, 0.5, 1.0, -0.5, -1.0, -0.5, -1.0, 0.5],
    "slowdown_ratio": 0.5, "time_before_collision": 1.0, "stopping_reaction_time": 0.0,
    "audit_log_path": "",
}


def test_robot(**changes) -> RobotSpec:
    """The shipped robot description with BASE_ROBOT's numbers and `changes` on top."""
    return dataclasses.replace(load_robot(), **{**BASE_ROBOT, **changes})


test_robot.__test__ = False   # a builder, not a test


def make_config(**overrides):
    """BASE_PARAMS on the test robot; an override named like a robot limit changes the robot."""
    robot = {k: overrides.pop(k) for k in list(overrides) if k in ROBOT_LIMITS}
    if "laser_x" in robot or "laser_y" in robot:
        robot["laser_xyz"] = (robot.pop("laser_x", 0.0), robot.pop("laser_y", 0.0), 0.11)
    params = dict(BASE_PARAMS)
    params.update(overrides)
    return config_from_params(params, test_robot(**robot))


def robot_file(folder: Path, **changes) -> Path:
    """`folder/robot.yaml`: the shipped robot description with `changes`, for a live node's robot_file."""
    p = folder / "robot.yaml"
    p.write_text(yaml.safe_dump(robot_to_dict(dataclasses.replace(load_robot(), **changes))))
    return p


def clear_scan(stamp: float, n: int = 360, dist: float = float("inf")) -> LaserScanData:
    return LaserScanData(-math.pi, 2 * math.pi / n, 0.05, 10.0, np.full(n, dist), stamp)


def scan_with_point(stamp: float, angle: float, dist: float, n: int = 360) -> LaserScanData:
    ranges = np.full(n, np.inf)
    inc = 2 * math.pi / n
    ranges[int(round((angle + math.pi) / inc)) % n] = dist
    return LaserScanData(-math.pi, inc, 0.05, 10.0, ranges, stamp)


def odom(stamp: float, x=0.0, y=0.0, theta=0.0, v=0.0, w=0.0) -> OdometryData:
    return OdometryData(x, y, theta, v, w, stamp)


def ready_core(cfg=None, t: float = 0.0) -> SafetyCore:
    core = SafetyCore(cfg or make_config(), start_time=t)
    core.on_scan(clear_scan(t))
    core.on_odom(odom(t))
    return core


def cmd(v: float, w: float = 0.0, source: str = "autonomy", stamp: float = 0.0) -> VelocityCommand:
    return VelocityCommand(v, w, source, stamp)
