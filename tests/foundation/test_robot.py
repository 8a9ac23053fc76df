"""The robot description (config/robot.yaml -> qwen_stack.robot.RobotSpec): it loads, and every bad value,
missing or unknown key is refused with a message naming the key."""
from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from qwen_stack.robot import RobotConfigError, RobotSpec, load_robot, robot_from_dict, robot_to_dict


def _doc() -> dict:
    return robot_to_dict(load_robot())


def test_shipped_description_loads_and_every_key_is_commented():
    r = load_robot()
    assert isinstance(r, RobotSpec)
    # derived facts, by hand from the file: the camera's pan axis 0.15 above base_link, base_link 0.05 up
    assert r.base_height == r.wheel_radius == 0.05
    assert r.camera_height == pytest.approx(0.20)
    assert r.camera_pitch == pytest.approx(math.radians(15.0))
    from qwen_stack.paths import config_file

    lines = config_file("robot.yaml").read_text().splitlines()
    for f in dataclasses.fields(RobotSpec):
        line = next(ln for ln in lines if ln.startswith(f.name + ":"))
        assert "#" in line, f"robot.yaml: {f.name} has no comment"


def test_round_trip_through_yaml(tmp_path):
    f = tmp_path / "robot.yaml"
    f.write_text(yaml.safe_dump(_doc()))
    assert load_robot(str(f)) == load_robot()


def test_whole_numbers_are_read_as_floats():
    doc = {**_doc(), "base_mass": 4, "laser_xyz": [0, 0, 1]}
    r = robot_from_dict(doc)
    assert type(r.base_mass) is float and all(type(v) is float for v in r.laser_xyz)


def test_missing_and_unknown_keys_are_named():
    doc = _doc()
    del doc["pick_x"]
    doc["pik_x"] = 0.2
    with pytest.raises(RobotConfigError, match=r"unknown key\(s\) \['pik_x'\]; missing key\(s\) \['pick_x'\]"):
        robot_from_dict(doc, "robot.yaml")


@pytest.mark.parametrize("name", ["footprint_radius", "wheel_radius", "wheel_separation", "max_wheel_speed",
                                  "pick_x", "pick_reach", "camera_fovy_deg", "max_linear_vel", "max_angular_vel",
                                  "max_linear_accel", "max_linear_decel", "max_angular_accel", "max_angular_decel"])
@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf, True, "1"])
def test_non_positive_or_non_numbers_are_refused(name, bad):
    with pytest.raises(RobotConfigError, match=rf"{name}: must be"):
        robot_from_dict({**_doc(), name: bad})


@pytest.mark.parametrize("name", ["max_reverse_vel", "pan_limit", "camera_lens_x", "front_caster_gap"])
def test_negative_values_are_refused(name):
    with pytest.raises(RobotConfigError, match=rf"{name}: must be >= 0"):
        robot_from_dict({**_doc(), name: -0.1})


@pytest.mark.parametrize("change, named", [
    ({"laser_xyz": [0.05, 0.0]}, "laser_xyz: must be 3 finite numbers"),
    ({"camera_xyz": [0.1, 0.0, math.nan]}, "camera_xyz: must be 3 finite numbers"),
    ({"chassis_half_size": [0.15, 0.0, 0.04]}, "chassis_half_size: must be > 0"),
    ({"caster_radius": 0.05}, "caster_radius: must be smaller than wheel_radius"),
    ({"footprint_radius": 0.2}, "footprint_radius: the chassis reaches 0.211 m"),
    ({"camera_tilt_deg": 90.0}, "camera_tilt_deg: must be within"),
    ({"pan_limit": 3.5}, "pan_limit: at most pi"),
    ({"max_linear_vel": 1.5}, "max_linear_vel: the wheels reach 1 m/s"),
    ({"max_reverse_vel": 1.5}, "max_linear_vel: the wheels reach 1 m/s"),
    ({"max_angular_vel": 8.0}, "max_angular_vel: the wheels reach"),
    ({"camera_pan_joint": 3}, "camera_pan_joint: must be a joint name"),
])
def test_inconsistent_descriptions_are_refused(change, named):
    with pytest.raises(RobotConfigError, match=named):
        robot_from_dict({**_doc(), **change})


def test_every_error_is_reported_at_once_with_the_file():
    with pytest.raises(RobotConfigError) as exc:
        robot_from_dict({**_doc(), "wheel_radius": -1.0, "max_linear_vel": 0.0}, "my_robot.yaml")
    assert str(exc.value).startswith("my_robot.yaml: ") and "wheel_radius" in str(exc.value) \
        and "max_linear_vel" in str(exc.value)


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(RobotConfigError, match="cannot read the robot description"):
        load_robot(str(tmp_path / "nothere.yaml"))
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    with pytest.raises(RobotConfigError, match="expected a mapping"):
        load_robot(str(tmp_path / "list.yaml"))
