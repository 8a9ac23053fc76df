"""Supervisor parameters: one flat dataclass built from ROS parameters (or the same YAML file),
validated at start. Every bad value is refused with a message that names the parameter.

The robot's motion limits and laser mount are not supervisor parameters: they are the robot
description's (config/robot.yaml, the node's robot_file parameter) and reach the core as
SafetyConfig.robot (max_linear_vel, ..., laser_x read through it). The supervisor's own footprint,
robot_radius, may be larger than the robot's (a margin) and is checked against it.

The YAML is a ROS parameters file (config/safety.yaml): `/**: ros__parameters: {...}` or
`safety_supervisor: ros__parameters: {...}`; nested keys flatten to dotted names (keep_out.table).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from qwen_stack.robot import ROBOT_FILE, RobotConfigError, RobotSpec, load_robot
from qwen_stack.safety.geometry import points_in_polygon, polygon_from_flat, ray_extent

NODE_NAME = "safety_supervisor"
# parameters every rclpy node declares by itself; not ours to validate
_ROS_OWN_PARAMS = ("use_sim_time", "start_type_description_service")


class ConfigError(ValueError):
    """Invalid supervisor configuration; the message names every offending parameter."""


@dataclass
class SafetyConfig:
    # --- timing ---
    control_rate_hz: float = 20.0          # fixed rate of the control loop (watchdog, output refresh)
    teleop_timeout: float = 0.5            # s without a teleop command: teleop input is stale
    autonomy_timeout: float = 0.5          # s without an autonomy command: autonomy input is stale
    teleop_lock_timeout: float = 1.0       # s a held lock may go unrefreshed before it counts as lost (fail safe: STOP)
    scan_timeout: float = 0.5              # s: older laser scan -> STOP "invalid source"
    odom_timeout: float = 0.5              # s: older odometry -> STOP "invalid source"
    require_scan: bool = True              # false only for a base without a laser (disables obstacle zones)
    # --- the robot (velocity and acceleration limits, laser mount): its description, read from robot_file ---
    robot_file: str = ROBOT_FILE           # config/ name or path; the stack sets it for every node
    # --- motion shaping (base frame, differential drive) ---
    max_linear_jerk: float = 0.0           # m/s^3, 0 disables (soft: yields to limits and to not overshooting)
    max_angular_jerk: float = 0.0          # rad/s^3, 0 disables
    odom_lag_tolerance: float = 0.2        # m/s: if odometry lags the last sent command by more, do not speed up
    # --- robot and prediction ---
    robot_radius: float = 0.25             # m, circular footprint used by every geometric check (>= the robot's)
    prediction_horizon: float = 1.0        # s the command is projected ahead for geofence/keep-out/approach
    prediction_steps: int = 10             # samples along the horizon
    # --- geofence and keep-out zones (odom frame) ---
    geofence: list = field(default_factory=lambda: [-5.0, -5.0, 5.0, -5.0, 5.0, 5.0, -5.0, 5.0])
    keep_out_zones: str = ""               # space-separated names; each needs keep_out.<name>: [x0, y0, ...]
    keep_out: dict = field(default_factory=dict)   # name -> flat polygon (filled from keep_out.<name>)
    # --- obstacle zones from the laser (base frame), nav2 collision-monitor style; the laser: the robot's ---
    min_points: int = 1                    # scan points inside a zone needed to trigger it
    stop_zone: list = field(default_factory=lambda: [0.45, 0.3, 0.45, -0.3, -0.35, -0.3, -0.35, 0.3])
    slowdown_zone: list = field(default_factory=lambda: [1.0, 0.5, 1.0, -0.5, -0.6, -0.5, -0.6, 0.5])
    slowdown_ratio: float = 0.3            # fraction of the command kept while the slowdown zone is occupied
    time_before_collision: float = 1.0     # s: approach check slows so collision is never closer than this
    stopping_reaction_time: float = 0.1    # s: latency assumed in the stopping-distance speed cap
    # --- creep (field switching: a smaller protective field at creep speed, for docking at an object) ---
    creep_speed: float = 0.0               # m/s; > 0: stop-zone points with creep_zone clear cap |v| to this instead
                                           # of stopping (0: any stop-zone point stops, the plain nav2 behaviour)
    creep_angular_vel: float = 0.3         # rad/s cap while creeping
    creep_zone: list = field(default_factory=lambda: [0.28, 0.26, 0.28, -0.26, -0.27, -0.26, -0.27, 0.26])
    load_mask_radius: float = 0.0          # m; > 0: while gripper/held names an object, scan points this close to
                                           # the pick site are the load, not obstacles (0: never masked)
    # --- e-stop and operator ---
    heartbeat_enabled: bool = False        # latch the e-stop when the operator heartbeat is silent
    heartbeat_timeout: float = 1.0         # s of heartbeat silence that latch the e-stop
    rearm_max_speed: float = 0.01          # after a reset, a source must send |v| below this before it moves again
    # --- actions ---
    policy_file: str = "safety_policy.yaml"  # actuating-services policy (config/ name or path)
    approval_timeout: float = 30.0         # s an approval request waits; silence means denied
    # --- reporting ---
    audit_log_path: str = "~/.ros/qwen_stack/safety_audit.jsonl"  # JSON lines; "" disables (not recommended)
    audit_fsync: bool = False              # fsync each record (survives power loss; costs ~ms per record)
    audit_log_sensors: bool = True         # also log a one-line summary of every scan and odometry message
    audit_rotate_mb: float = 64.0          # start a new file before the current one would pass this (0: never)
    audit_retention_mb: float = 1024.0     # rotated files kept in all, oldest deleted first (0: keep all)
    diagnostics_period: float = 1.0        # s between /diagnostics summaries and second-publisher checks

    # the robot description (robot_file), given by config_from_params
    robot: RobotSpec | None = field(default=None, repr=False)
    # derived, filled by validate()
    geofence_poly: np.ndarray | None = field(default=None, repr=False)
    keep_out_polys: dict = field(default_factory=dict, repr=False)
    stop_poly: np.ndarray | None = field(default=None, repr=False)
    slowdown_poly: np.ndarray | None = field(default=None, repr=False)
    stop_cap_forward: float = field(default=math.inf, repr=False)
    stop_cap_reverse: float = field(default=math.inf, repr=False)
    creep_poly: np.ndarray | None = field(default=None, repr=False)

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz

    # The robot's limits and laser mount, as the core reads them (one copy: the robot description's).
    max_linear_vel = property(lambda self: self.robot.max_linear_vel)        # m/s forward
    max_reverse_vel = property(lambda self: self.robot.max_reverse_vel)      # m/s backward (magnitude)
    max_angular_vel = property(lambda self: self.robot.max_angular_vel)      # rad/s
    max_linear_accel = property(lambda self: self.robot.max_linear_accel)    # m/s^2 speeding up
    max_linear_decel = property(lambda self: self.robot.max_linear_decel)    # m/s^2 slowing down (a stop is not delayed)
    max_angular_accel = property(lambda self: self.robot.max_angular_accel)  # rad/s^2
    max_angular_decel = property(lambda self: self.robot.max_angular_decel)  # rad/s^2
    laser_x = property(lambda self: self.robot.laser_xyz[0])                 # m, laser in the base frame
    laser_y = property(lambda self: self.robot.laser_xyz[1])
    laser_yaw = property(lambda self: 0.0)                                   # the robot's laser faces base_link's +x


_POSITIVE = ("control_rate_hz", "teleop_timeout", "autonomy_timeout", "teleop_lock_timeout", "scan_timeout",
             "odom_timeout", "robot_radius", "prediction_horizon",
             "heartbeat_timeout", "approval_timeout", "diagnostics_period", "time_before_collision")
_NON_NEGATIVE = ("max_linear_jerk", "max_angular_jerk", "odom_lag_tolerance",
                 "stopping_reaction_time", "rearm_max_speed", "audit_rotate_mb", "audit_retention_mb",
                 "creep_speed", "creep_angular_vel", "load_mask_radius")
_DERIVED = ("robot", "geofence_poly", "keep_out_polys", "stop_poly", "slowdown_poly", "stop_cap_forward",
            "stop_cap_reverse", "creep_poly")
# Names the supervisor once took as parameters and now reads from the robot description.
ROBOT_LIMITS = ("max_linear_vel", "max_reverse_vel", "max_angular_vel", "max_linear_accel", "max_linear_decel",
                "max_angular_accel", "max_angular_decel", "laser_x", "laser_y", "laser_yaw")


def _stop_speed_cap(margin: float, decel: float, reaction: float) -> float:
    """Largest v with v*reaction + v^2/(2 decel) <= margin."""
    if margin <= 0:
        return 0.0
    # v^2/(2d) + r v - m = 0  ->  v = d(-r + sqrt(r^2 + 2m/d))
    return decel * (-reaction + math.sqrt(reaction * reaction + 2.0 * margin / decel))


def validate(cfg: SafetyConfig) -> list[str]:
    """Check every parameter and fill the derived fields; returns error messages (empty when valid)."""
    errors: list[str] = []
    if cfg.robot is None:
        return ["robot: no robot description (config_from_params loads robot_file)"]
    for name in _POSITIVE + _NON_NEGATIVE:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            errors.append(f"{name}: must be a finite number, got {value!r}")
        elif name in _POSITIVE and value <= 0:
            errors.append(f"{name}: must be > 0, got {value}")
        elif value < 0:
            errors.append(f"{name}: must be >= 0, got {value}")
    if not errors and cfg.robot_radius < cfg.robot.footprint_radius:
        errors.append(f"robot_radius: {cfg.robot_radius} is smaller than the robot's footprint_radius "
                      f"{cfg.robot.footprint_radius} (robot_file {cfg.robot_file})")
    if not isinstance(cfg.prediction_steps, int) or isinstance(cfg.prediction_steps, bool) \
            or not 1 <= cfg.prediction_steps <= 100:
        errors.append(f"prediction_steps: must be an integer in 1..100, got {cfg.prediction_steps!r}")
    if not isinstance(cfg.min_points, int) or isinstance(cfg.min_points, bool) or cfg.min_points < 1:
        errors.append(f"min_points: must be an integer >= 1, got {cfg.min_points!r}")
    if isinstance(cfg.slowdown_ratio, bool) or not isinstance(cfg.slowdown_ratio, (int, float)) \
            or not 0.0 <= cfg.slowdown_ratio <= 1.0:
        errors.append(f"slowdown_ratio: must be in [0, 1], got {cfg.slowdown_ratio!r}")
    for name in ("require_scan", "heartbeat_enabled", "audit_fsync", "audit_log_sensors"):
        if not isinstance(getattr(cfg, name), bool):
            errors.append(f"{name}: must be true or false, got {getattr(cfg, name)!r}")
    for name in ("policy_file", "audit_log_path", "keep_out_zones", "robot_file"):
        if not isinstance(getattr(cfg, name), str):
            errors.append(f"{name}: must be a string, got {getattr(cfg, name)!r}")
    if not errors and cfg.control_period > min(cfg.teleop_timeout, cfg.autonomy_timeout):
        errors.append(f"control_rate_hz: period {cfg.control_period:.3f} s exceeds an input timeout; "
                      "the watchdog could not act in time")

    cfg.geofence_poly, err = polygon_from_flat(cfg.geofence, "geofence")
    if err:
        errors.append(err)
    cfg.stop_poly, err = polygon_from_flat(cfg.stop_zone, "stop_zone")
    if err:
        errors.append(err)
    cfg.slowdown_poly, err = polygon_from_flat(cfg.slowdown_zone, "slowdown_zone")
    if err:
        errors.append(err)
    names = cfg.keep_out_zones.split() if isinstance(cfg.keep_out_zones, str) else []
    if len(set(names)) != len(names):
        errors.append(f"keep_out_zones: repeated name in {names}")
    cfg.keep_out_polys = {}
    for name in names:
        if name not in cfg.keep_out:
            errors.append(f"keep_out.{name}: listed in keep_out_zones but not given")
            continue
        poly, err = polygon_from_flat(cfg.keep_out[name], f"keep_out.{name}")
        if err:
            errors.append(err)
        else:
            cfg.keep_out_polys[name] = poly
    for name in cfg.keep_out:
        if name not in names:
            errors.append(f"keep_out.{name}: given but not listed in keep_out_zones")

    if cfg.stop_poly is not None and not errors:
        if not points_in_polygon(np.zeros((1, 2)), cfg.stop_poly)[0]:
            errors.append("stop_zone: must contain the robot's origin (base frame)")
        else:
            front = ray_extent(cfg.stop_poly, 0.0) - cfg.robot_radius
            rear = ray_extent(cfg.stop_poly, math.pi) - cfg.robot_radius
            if front <= 0:
                errors.append(f"stop_zone: must reach beyond robot_radius ahead of the robot (margin {front:.3f} m)")
            if rear <= 0 and cfg.max_reverse_vel > 0:
                errors.append(f"stop_zone: must reach beyond robot_radius behind the robot (margin {rear:.3f} m) "
                              "when max_reverse_vel > 0")
            cfg.stop_cap_forward = _stop_speed_cap(front, cfg.max_linear_decel, cfg.stopping_reaction_time)
            cfg.stop_cap_reverse = _stop_speed_cap(rear, cfg.max_linear_decel, cfg.stopping_reaction_time)
    if not errors and cfg.creep_speed > 0:
        errors += _check_creep_zone(cfg)
    if not errors and cfg.load_mask_radius > cfg.robot.pick_reach:
        # a blind spot that size is no longer "the load": the mask must stay a small circle at the pick site
        errors.append(f"load_mask_radius: {cfg.load_mask_radius} m is more than the robot's pick_reach "
                      f"{cfg.robot.pick_reach} m")
    return errors


def _check_creep_zone(cfg: SafetyConfig) -> list[str]:
    """The creep zone is a protective field for creep speed: inside the stop zone, around the robot, and deep
    enough that the base stops inside it from creep_speed (reaction time and braking), ahead and behind."""
    cfg.creep_poly, err = polygon_from_flat(cfg.creep_zone, "creep_zone")
    if err:
        return [err]
    if not points_in_polygon(np.zeros((1, 2)), cfg.creep_poly)[0]:
        return ["creep_zone: must contain the robot's origin (base frame)"]
    errors = []
    if not np.all(points_in_polygon(cfg.creep_poly, cfg.stop_poly)):
        errors.append("creep_zone: must lie inside stop_zone (a protective field for a lower speed is smaller)")
    for name, angle, needed in (("ahead of", 0.0, True), ("behind", math.pi, cfg.max_reverse_vel > 0)):
        margin = ray_extent(cfg.creep_poly, angle) - cfg.robot_radius
        if needed and _stop_speed_cap(margin, cfg.max_linear_decel, cfg.stopping_reaction_time) < cfg.creep_speed:
            errors.append(f"creep_zone: the base cannot stop from creep_speed {cfg.creep_speed} m/s within its "
                          f"margin {margin:.3f} m beyond robot_radius {name} the robot")
    return errors


def ros_parameter_defaults() -> dict:
    """name -> default of every parameter the supervisor takes (keep_out.<zone> polygons come on top);
    the launchers check a stack's parameters against it (qwen_stack/parameter_schema.py)."""
    out = {}
    for f in dataclasses.fields(SafetyConfig):
        if f.name not in _DERIVED and f.name != "keep_out":
            out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


def config_from_params(params: dict, robot: RobotSpec | None = None) -> SafetyConfig:
    """Flat parameter dict (dotted names) -> validated SafetyConfig on `robot` (None: the one robot_file
    names); raises ConfigError."""
    known = {f.name: f for f in dataclasses.fields(SafetyConfig) if f.name not in _DERIVED and f.name != "keep_out"}
    kwargs: dict = {}
    keep_out: dict = {}
    errors: list[str] = []
    for name, value in params.items():
        if name in _ROS_OWN_PARAMS or name.startswith("qos_overrides."):
            continue
        if name in ROBOT_LIMITS:
            errors.append(f"{name}: not a supervisor parameter: it is the robot's (robot_file "
                          f"{params.get('robot_file', ROBOT_FILE)}); change it there")
        elif name.startswith("keep_out."):
            keep_out[name[len("keep_out."):]] = value
        elif name in known:
            default = known[name].default if known[name].default is not dataclasses.MISSING else None
            # ROS gives integers for whole-number YAML floats; accept them where a float is expected
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            kwargs[name] = list(value) if isinstance(value, tuple) else value
        else:
            errors.append(f"{name}: unknown parameter")
    if robot is None:
        try:
            robot = load_robot(kwargs.get("robot_file", ROBOT_FILE))
        except (RobotConfigError, TypeError) as exc:
            raise ConfigError(f"invalid safety supervisor parameters:\n  robot_file: {exc}") from None
    cfg = SafetyConfig(**kwargs, keep_out=keep_out, robot=robot)
    errors += validate(cfg)
    if errors:
        raise ConfigError("invalid safety supervisor parameters:\n  " + "\n  ".join(errors))
    return cfg


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def params_from_file(path: str | Path, node_name: str = NODE_NAME) -> dict:
    """Flat parameters for `node_name` from a ROS parameters file ('/**' entries, then the node's own)."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a ROS parameters file (top level must be a mapping)")
    params: dict = {}
    for key in ("/**", node_name, "/" + node_name):
        section = doc.get(key)
        if isinstance(section, dict):
            params.update(_flatten(section.get("ros__parameters", {}) or {}))
    return params


def load_config(path: str | Path, overrides: dict | None = None, robot: RobotSpec | None = None) -> SafetyConfig:
    """A parameters file (+ overrides) on `robot` (None: the file's robot_file, else config/robot.yaml)."""
    params = params_from_file(path)
    params.update(overrides or {})
    return config_from_params(params, robot)
