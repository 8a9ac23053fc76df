"""sim_node/skills_node settings, the shipped config/sim.yaml, and the sensor schedule."""
from __future__ import annotations

import dataclasses
from dataclasses import fields

import pytest
import yaml

from qwen_stack.paths import config_file
from qwen_stack.robot import load_robot
from qwen_stack.sim.config import SimConfigError, SimNodeConfig, SkillsNodeConfig
from qwen_stack.sim.stepping import SensorSchedule


def _sections():
    data = yaml.safe_load(config_file("sim.yaml").read_text())
    return data["/**/sim"]["ros__parameters"], data["/**/skills"]["ros__parameters"]


def test_shipped_config_matches_the_dataclasses_and_defaults():
    sim, skills = _sections()
    # robot_file is the stack's (config/stack.yaml robot:, tests/foundation/test_robot_facts.py), not sim.yaml's
    assert set(sim) == {f.name for f in fields(SimNodeConfig)} - {"robot_file"}
    assert set(skills) == {f.name for f in fields(SkillsNodeConfig)} - {"robot_file"}
    assert SimNodeConfig.from_dict(sim) == SimNodeConfig()
    assert SkillsNodeConfig.from_dict(skills) == SkillsNodeConfig()


def test_every_parameter_in_sim_yaml_has_a_comment():
    for line in config_file("sim.yaml").read_text().splitlines():
        stripped = line.strip()
        if ":" in stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in stripped, f"parameter without a comment: {line!r}"


@pytest.mark.parametrize("name, value", [
    ("camera_width", 1280), ("camera_height", 0), ("camera_rate", 60.0), ("camera_rate", 0.0),
    ("laser_rate", -1.0), ("real_time_factor", float("nan")), ("seed", -5), ("scenario", ""),
    ("jpeg_quality", 101), ("laser_beams", 1), ("odom_frame", ""), ("clock_rate", 1000.0),
    ("cmd_vel_timeout", 0.0),
])
def test_bad_sim_values_name_the_parameter(name, value):
    with pytest.raises(SimConfigError, match=f"'{name}'"):
        SimNodeConfig(**{name: value})


@pytest.mark.parametrize("name, value", [("default_linear", 0.0), ("odom_timeout", -1.0), ("settle_factor", 0.5),
                                         ("robot_file", "")])
def test_bad_skills_values_are_refused(name, value):
    with pytest.raises(SimConfigError, match=name):
        SkillsNodeConfig(**{name: value})


@pytest.mark.parametrize("name, value, robot_limit", [
    ("default_linear", 0.6, "max_linear_vel"), ("default_angular", 1.2, "max_angular_vel"),
    ("linear_accel", 1.5, "max_linear_decel"), ("angular_accel", 3.5, "max_angular_decel")])
def test_skills_stay_within_the_robots_limits(name, value, robot_limit):
    robot = load_robot()
    with pytest.raises(SimConfigError, match=rf"'{name}' = {value}: above the robot's {robot_limit}"):
        SkillsNodeConfig(**{name: value}).limits(robot)


def test_skills_top_speeds_are_the_robots():
    robot = load_robot()
    limits = SkillsNodeConfig().limits(robot)
    assert (limits.max_linear, limits.max_angular) == (robot.max_linear_vel, robot.max_angular_vel)
    faster = dataclasses.replace(robot, max_linear_vel=0.8, max_angular_vel=1.6)
    assert SkillsNodeConfig().limits(faster).max_angular == 1.6


def test_unknown_parameters_are_refused():
    with pytest.raises(SimConfigError, match="camera_fps"):
        SimNodeConfig.from_dict({"camera_fps": 15})


def test_largest_camera_is_accepted():
    cfg = SimNodeConfig(camera_width=640, camera_height=480, camera_rate=30.0)
    assert (cfg.camera_width, cfg.camera_height, cfg.camera_rate) == (640, 480, 30.0)


def test_sensor_schedule_rates_and_skips():
    s = SensorSchedule({"camera": 15.0, "laser": 10.0})
    fired = {"camera": 0, "laser": 0}
    t, dt = 0.0, 0.002
    while t < 2.0 - 1e-9:
        for name in s.pop_due(t):
            fired[name] += 1
        t += dt
    assert fired == {"camera": 30, "laser": 20}
    # A long stall does not replay the missed deadlines.
    assert s.pop_due(10.0) == {"camera", "laser"}
    assert s.pop_due(10.0) == set()
    assert s.next_due() == pytest.approx(10.0 + 1 / 15.0)
    with pytest.raises(ValueError):
        SensorSchedule({"camera": 0.0})
