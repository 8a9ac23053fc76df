"""Invalid configurations are refused with a message naming the parameter; the shipped YAML files load."""
from __future__ import annotations

import math

import pytest
import yaml

from qwen_stack.paths import config_file
from qwen_stack.safety.config import ConfigError, config_from_params, load_config, params_from_file

from .helpers import BASE_PARAMS, robot_file, test_robot


def test_shipped_config_loads_and_every_parameter_is_commented():
    cfg = load_config(config_file("safety.yaml"))
    assert cfg.max_linear_vel > 0 and cfg.geofence_poly is not None
    text = config_file("safety.yaml").read_text().splitlines()
    params = params_from_file(config_file("safety.yaml"))
    for name in params:
        line = next(ln for ln in text if ln.strip().startswith(name.split(".")[-1] + ":"))
        assert "#" in line, f"parameter {name} has no comment"


def _refused(**overrides) -> str:
    params = dict(BASE_PARAMS)
    params.update(overrides)
    with pytest.raises(ConfigError) as exc:
        config_from_params(params, test_robot())
    return str(exc.value)


@pytest.mark.parametrize("name", ["robot_radius", "control_rate_hz",
                                  "teleop_timeout", "autonomy_timeout", "scan_timeout", "odom_timeout",
                                  "prediction_horizon", "heartbeat_timeout", "approval_timeout",
                                  "time_before_collision"])
@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf])
def test_non_positive_or_non_finite_limits_are_refused(name, bad):
    assert name in _refused(**{name: bad})


@pytest.mark.parametrize("name", ["max_linear_jerk", "odom_lag_tolerance",
                                  "stopping_reaction_time", "rearm_max_speed", "audit_rotate_mb",
                                  "audit_retention_mb"])
def test_negative_values_are_refused(name):
    assert f"{name}: must be >= 0" in _refused(**{name: -0.1})


@pytest.mark.parametrize("poly, why", [
    ([0.0, 0.0, 1.0, 0.0], "open polygon"),
    ([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], "open polygon"),
    ([0.0, 0.0, 1.0, 0.0, 2.0, 0.0], "zero area"),
    ([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0], "edges cross"),
    ([0.0, 0.0, 1.0, 0.0, 1.0], "odd number"),
    ([0.0, 0.0, 1.0, math.nan, 1.0, 1.0], "non-finite"),
    (["a", 0.0, 1.0, 0.0, 1.0, 1.0], "flat list of numbers"),
    ([0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0], "repeated vertex"),
])
@pytest.mark.parametrize("param", ["geofence", "stop_zone", "slowdown_zone"])
def test_bad_polygons_are_refused(param, poly, why):
    msg = _refused(**{param: poly})
    assert param in msg and why in msg


def test_closed_polygon_with_repeated_first_vertex_is_accepted():
    cfg = config_from_params({**BASE_PARAMS, "geofence": [-5, -5, 5, -5, 5, 5, -5, 5, -5, -5]}, test_robot())
    assert len(cfg.geofence_poly) == 4


def test_stop_zone_must_contain_robot_and_leave_a_margin():
    assert "stop_zone: must contain the robot's origin" in _refused(stop_zone=[1.0, 1.0, 2.0, 1.0, 2.0, 2.0])
    assert "stop_zone: must reach beyond robot_radius ahead" in _refused(robot_radius=0.5)


def test_keep_out_names_and_polygons_must_match():
    assert "keep_out.box: listed in keep_out_zones but not given" in _refused(keep_out_zones="box")
    assert "keep_out.box: given but not listed" in _refused(**{"keep_out.box": [0, 0, 1, 0, 1, 1]})
    assert "keep_out.box: open polygon" in _refused(keep_out_zones="box", **{"keep_out.box": [0, 0, 1, 0]})
    assert "keep_out_zones: repeated name" in _refused(keep_out_zones="a a", **{"keep_out.a": [0, 0, 1, 0, 1, 1]})


def test_unknown_parameter_and_wrong_types_are_refused():
    assert "max_linear_velocity: unknown parameter" in _refused(max_linear_velocity=1.0)
    assert "require_scan: must be true or false" in _refused(require_scan="yes")
    assert "prediction_steps: must be an integer in 1..100" in _refused(prediction_steps=0)
    assert "min_points: must be an integer >= 1" in _refused(min_points=0)
    assert "slowdown_ratio: must be in [0, 1]" in _refused(slowdown_ratio=1.5)
    assert "robot_file: must be a string" in _refused(robot_file=3)


@pytest.mark.parametrize("name", ["max_linear_vel", "max_reverse_vel", "max_angular_vel", "max_linear_accel",
                                  "max_linear_decel", "max_angular_accel", "max_angular_decel", "laser_x",
                                  "laser_y", "laser_yaw"])
def test_the_robots_limits_and_laser_are_not_supervisor_parameters(name):
    """They are the robot description's (its checks: tests/foundation/test_robot.py); given here they are refused."""
    assert f"{name}: not a supervisor parameter: it is the robot's" in _refused(**{name: 0.3})


def test_limits_and_laser_are_the_robots():
    robot = test_robot(max_linear_vel=0.4, max_angular_decel=2.5, laser_xyz=(0.05, -0.01, 0.11))
    cfg = config_from_params(dict(BASE_PARAMS), robot)
    assert (cfg.max_linear_vel, cfg.max_angular_decel) == (0.4, 2.5)
    assert (cfg.laser_x, cfg.laser_y, cfg.laser_yaw) == (0.05, -0.01, 0.0)
    shipped = load_config(config_file("safety.yaml"))          # robot_file: config/robot.yaml
    from qwen_stack.robot import load_robot

    assert shipped.robot == load_robot() and shipped.max_reverse_vel == load_robot().max_reverse_vel


def test_robot_radius_covers_the_robots_footprint():
    assert "robot_radius: 0.15 is smaller than the robot's footprint_radius 0.2" in _refused(robot_radius=0.15)


def test_robot_file_is_read_and_a_bad_one_named(tmp_path):
    f = robot_file(tmp_path, max_linear_vel=0.3)
    assert config_from_params({**BASE_PARAMS, "robot_radius": 0.25, "robot_file": str(f)}).max_linear_vel == 0.3
    with pytest.raises(ConfigError, match="robot_file: cannot read the robot description"):
        config_from_params({**BASE_PARAMS, "robot_file": str(tmp_path / "none.yaml")})


def test_control_period_longer_than_timeout_is_refused():
    assert "control_rate_hz" in _refused(control_rate_hz=1.0)


def test_every_error_is_reported_at_once():
    msg = _refused(max_linear_vel=-1.0, robot_radius=-2.0, geofence=[0, 0])
    assert "max_linear_vel" in msg and "robot_radius" in msg and "geofence" in msg


def test_params_file_styles(tmp_path):
    for top in ("/**", "safety_supervisor"):
        f = tmp_path / "p.yaml"
        f.write_text(yaml.safe_dump({top: {"ros__parameters": {**BASE_PARAMS, "slowdown_ratio": 0.4,
                                                               "keep_out_zones": "box",
                                                               "keep_out": {"box": [1, 1, 2, 1, 2, 2]}}}}))
        cfg = load_config(f, robot=test_robot())
        assert cfg.slowdown_ratio == 0.4 and "box" in cfg.keep_out_polys


def test_zones_json_carries_the_validated_polygons():
    import json

    from qwen_stack.safety.reporting import zones_json

    cfg = config_from_params({**BASE_PARAMS, "keep_out_zones": "box", "keep_out.box": [0, 0, 1, 0, 1, 1]},
                             test_robot())
    zones = json.loads(zones_json(cfg))
    assert zones["keep_out"] == {"box": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]}
    assert zones["stop_zone"] == [[float(x), float(y)] for x, y in cfg.stop_poly]
    assert zones["robot_radius"] == cfg.robot_radius and zones["laser"] == {"x": 0.0, "y": 0.0, "yaw": 0.0}
