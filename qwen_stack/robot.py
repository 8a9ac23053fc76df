"""The robot description: config/robot.yaml as one frozen RobotSpec, the only place a robot fact lives.

Every part reads its footprint, wheel geometry, sensor mounts and motion limits from here: the
MuJoCo world and the Gazebo files (sim/), the URDF on robot_description, the safety supervisor's
limits and laser mount, the skills' top speeds, perception's and the agent's camera and laser
geometry. A part may keep a stricter operating value of its own (the supervisor's inflated
footprint, the skills' gentler braking, the console's teleop clamp) only when its settings check
it against the robot at load.

Frames (REP 103): base_link on the wheel axle's midpoint, x forward, y left, z up; base_link is
`wheel_radius` above the floor. Lengths in metres, angles in radians unless the name ends in _deg.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

ROBOT_FILE = "robot.yaml"   # in config/; nodes take another through their robot_file parameter

# Parameters under which the parts once took a copy of a robot fact -> the key in robot.yaml now. The
# launchers refuse them with this pointer (qwen_stack/parameter_schema.py); none may come back.
FORMER_COPIES = {
    "camera_mount_xyz": "camera_xyz", "camera_pan_axis_xyz": "camera_xyz", "camera_pitch": "camera_tilt_deg",
    "camera_optical_offset": "camera_lens_x", "laser_mount_xy": "laser_xyz", "laser_x": "laser_xyz",
    "laser_y": "laser_xyz", "laser_yaw": "laser_xyz (the laser faces base_link's +x)",
    "base_height": "wheel_radius", "max_linear": "max_linear_vel", "max_angular": "max_angular_vel",
    "robot_radius": "footprint_radius (the supervisor keeps a robot_radius of its own, >= it)",
}


class RobotConfigError(ValueError):
    """A robot description that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class RobotSpec:
    """What the robot is. No defaults on purpose: the numbers live in config/robot.yaml only."""
    # --- footprint and drive ---
    footprint_radius: float            # circle about base_link holding the whole body
    wheel_radius: float                # also base_link's height above the floor
    wheel_separation: float            # between the wheels' contact points
    wheel_half_width: float
    max_wheel_speed: float             # rad/s the motors reach
    motor_kv: float                    # simulated velocity servo gain, N*m per rad/s
    motor_max_torque: float            # N*m
    # --- chassis (the simulated body) ---
    chassis_half_size: tuple[float, float, float]
    chassis_offset_x: float            # chassis centre ahead of the axle (negative: behind)
    caster_radius: float
    caster_x: float                    # rear caster, carries the back
    front_caster_x: float              # front caster: a pitch stop when the base brakes
    front_caster_gap: float            # front caster above the floor at rest
    base_mass: float                   # kg
    wheel_mass: float                  # kg
    # --- sensors and gripper (base_link) ---
    laser_xyz: tuple[float, float, float]    # scanner origin; it faces base_link's +x
    camera_xyz: tuple[float, float, float]   # camera pan axis origin
    camera_pan_joint: str              # joint_states name of the pan joint; "" = a fixed camera at pan 0
    pan_limit: float                   # rad each way
    camera_tilt_deg: float             # camera pitched down about its y (+ looks down)
    camera_lens_x: float               # optical centre ahead of the pan axis, along the tilted camera x
    camera_fovy_deg: float             # vertical field of view
    pick_x: float                      # magnetic pick site ahead of the axle
    pick_reach: float                  # objects centred this close to the pick site can be attached
    # --- motion limits (the safety supervisor enforces them; nothing may command more) ---
    max_linear_vel: float              # m/s forward
    max_reverse_vel: float             # m/s backward (magnitude; 0 forbids reversing)
    max_angular_vel: float             # rad/s
    max_linear_accel: float            # m/s^2 speeding up
    max_linear_decel: float            # m/s^2 slowing down
    max_angular_accel: float           # rad/s^2
    max_angular_decel: float           # rad/s^2

    def __post_init__(self) -> None:
        errors = robot_errors(self)
        if errors:
            raise RobotConfigError("invalid robot description:\n  " + "\n  ".join(errors))

    @property
    def base_height(self) -> float:
        """base_link above the floor: the wheel axle."""
        return self.wheel_radius

    @property
    def camera_pitch(self) -> float:
        """Camera tilt in radians, + looks down."""
        return math.radians(self.camera_tilt_deg)

    @property
    def camera_height(self) -> float:
        """Camera pan axis above the floor."""
        return self.base_height + self.camera_xyz[2]


_VECTORS = {"chassis_half_size": 3, "laser_xyz": 3, "camera_xyz": 3}
_POSITIVE = ("footprint_radius", "wheel_radius", "wheel_separation", "wheel_half_width", "max_wheel_speed",
             "motor_kv", "motor_max_torque", "caster_radius", "base_mass", "wheel_mass", "camera_fovy_deg",
             "pick_x", "pick_reach", "max_linear_vel", "max_angular_vel", "max_linear_accel", "max_linear_decel",
             "max_angular_accel", "max_angular_decel")
_NON_NEGATIVE = ("front_caster_gap", "pan_limit", "camera_lens_x", "max_reverse_vel")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def robot_errors(r: RobotSpec) -> list[str]:
    """Every problem of a description, each naming its key (empty when it can be used)."""
    errors: list[str] = []
    for f in dataclasses.fields(r):
        v = getattr(r, f.name)
        if f.name in _VECTORS:
            if not (isinstance(v, tuple) and len(v) == _VECTORS[f.name] and all(_number(x) for x in v)):
                errors.append(f"{f.name}: must be {_VECTORS[f.name]} finite numbers, got {v!r}")
        elif f.name == "camera_pan_joint":
            if not isinstance(v, str) or v != v.strip():
                errors.append(f"camera_pan_joint: must be a joint name or \"\", got {v!r}")
        elif not _number(v):
            errors.append(f"{f.name}: must be a finite number, got {v!r}")
        elif f.name in _POSITIVE and v <= 0:
            errors.append(f"{f.name}: must be > 0, got {v}")
        elif f.name in _NON_NEGATIVE and v < 0:
            errors.append(f"{f.name}: must be >= 0, got {v}")
    if errors:
        return errors
    if any(v <= 0 for v in r.chassis_half_size):
        errors.append(f"chassis_half_size: must be > 0 each, got {r.chassis_half_size}")
    if r.caster_radius >= r.wheel_radius:
        errors.append(f"caster_radius: must be smaller than wheel_radius ({r.caster_radius} >= {r.wheel_radius})")
    reach = math.hypot(r.chassis_half_size[0] - r.chassis_offset_x, r.chassis_half_size[1])
    if reach > r.footprint_radius:
        errors.append(f"footprint_radius: the chassis reaches {reach:.3f} m from base_link, beyond {r.footprint_radius}")
    if not abs(r.camera_tilt_deg) < 90:
        errors.append(f"camera_tilt_deg: must be within (-90, 90), got {r.camera_tilt_deg}")
    if not r.camera_fovy_deg < 180:
        errors.append(f"camera_fovy_deg: must be below 180, got {r.camera_fovy_deg}")
    if r.pan_limit > math.pi:
        errors.append(f"pan_limit: at most pi each way, got {r.pan_limit}")
    wheel_top = r.max_wheel_speed * r.wheel_radius
    if max(r.max_linear_vel, r.max_reverse_vel) > wheel_top:
        errors.append(f"max_linear_vel: the wheels reach {wheel_top:g} m/s at most (max_wheel_speed x wheel_radius)")
    if r.max_angular_vel * r.wheel_separation / 2 > wheel_top:
        errors.append(f"max_angular_vel: the wheels reach {wheel_top / (r.wheel_separation / 2):g} rad/s at most")
    return errors


def _float(v: Any) -> Any:
    """YAML writes 2.0 as 2 at times: whole numbers become floats; anything else is left for the checks."""
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def robot_from_dict(doc: Any, where: str = ROBOT_FILE) -> RobotSpec:
    """A RobotSpec from a parsed robot.yaml: every key required, none unknown; errors name the key."""
    if not isinstance(doc, Mapping):
        raise RobotConfigError(f"{where}: expected a mapping of robot facts, got {type(doc).__name__}")
    names = [f.name for f in dataclasses.fields(RobotSpec)]
    unknown = sorted(set(doc) - set(names))
    missing = [n for n in names if n not in doc]
    if unknown or missing:
        parts = ([f"unknown key(s) {unknown}"] if unknown else []) + ([f"missing key(s) {missing}"] if missing else [])
        raise RobotConfigError(f"{where}: " + "; ".join(parts))
    values = {n: tuple(_float(x) for x in doc[n]) if n in _VECTORS and isinstance(doc[n], list) else _float(doc[n])
              for n in names}
    try:
        return RobotSpec(**values)
    except RobotConfigError as exc:
        raise RobotConfigError(f"{where}: {exc}") from None


def robot_path(name: str | Path = ROBOT_FILE) -> Path:
    """The robot file: a config/ name or a path."""
    from qwen_stack.paths import config_file

    return config_file(str(name))


def load_robot(name: str | Path = ROBOT_FILE) -> RobotSpec:
    """The robot described by `name` (a config/ name or a path); RobotConfigError when it cannot be used."""
    path = robot_path(name)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RobotConfigError(f"cannot read the robot description {path}: {exc}") from None
    return robot_from_dict(doc, str(path))


def robot_to_dict(r: RobotSpec) -> dict[str, Any]:
    """The description as robot.yaml writes it (tuples as lists): to write a variant for a test or a tool."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(r).items()}
