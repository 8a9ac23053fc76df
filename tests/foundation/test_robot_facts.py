"""One robot description: every part reads its robot facts from config/robot.yaml, and no two parts can read
different numbers.

Three guards: (1) no configuration file and no node parameter repeats a robot fact (a copy that could
drift: the agent's camera pitch once defaulted to 0.0 against 15 degrees, the supervisor's laser to x = 0.0
against 0.05, the skills turned at 1.5 rad/s against the supervisor's 1.0), and the launchers refuse the
names the parts used to take; (2) the stack gives every node that reads the robot the same file;
(3) each part's effective numbers, built the way its node builds them, are the robot's - and the camera
pose that perception and the agent compute is the one the URDF (and so the simulator) has.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import yaml

from qwen_stack.launcher import parse_overrides
from qwen_stack.parameter_schema import PARAMETER_SCHEMAS, schema_for
from qwen_stack.paths import config_dir, config_file
from qwen_stack.robot import FORMER_COPIES as FORMER_KEYS, RobotSpec, load_robot
from qwen_stack.sim.robot_description import joint_transform, joints, quat_matrix, quat_mul
from qwen_stack.stack_config import ROBOT_PARAMETER, StackConfigError, load_stack

ROBOT_FACTS = {f.name for f in dataclasses.fields(RobotSpec)}
# The names the parts took robot facts under before there was one description: none may come back.
FORMER_COPIES = {
    "qwen_node": ["camera_mount_xyz", "camera_pitch", "camera_pan_joint", "laser_mount_xy"],
    "perception": ["base_height", "camera_pan_axis_xyz", "camera_optical_offset", "camera_pitch", "camera_pan_joint",
                   "laser_xyz", "robot_radius", "pick_x"],
    "safety_supervisor": ["max_linear_vel", "max_reverse_vel", "max_angular_vel", "max_linear_accel",
                          "max_linear_decel", "max_angular_accel", "max_angular_decel", "laser_x", "laser_y",
                          "laser_yaw"],
    "skills": ["max_linear", "max_angular"],
}
FORMER_NAMES = set().union(*FORMER_COPIES.values()) - {"robot_radius"}   # the supervisor keeps its own, larger one
assert FORMER_NAMES <= set(FORMER_KEYS) | ROBOT_FACTS   # the launchers point each one to its robot.yaml key

STACK = load_stack("stack.yaml")
ROBOT = load_robot(str(STACK.robot_file))


def _keys(doc, prefix: str = "") -> set[str]:
    """Every key of a YAML document, nested ones by their last name and by their dotted path."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out |= {str(k), f"{prefix}{k}"} | _keys(v, f"{prefix}{k}.")
    elif isinstance(doc, list):
        for v in doc:
            out |= _keys(v, prefix)
    return out


def _config_files() -> list:
    return sorted(p for p in config_dir().rglob("*.yaml") if p.name != "robot.yaml")


# --- (1) no copies -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", _config_files(), ids=lambda p: p.name)
def test_no_configuration_file_repeats_a_robot_fact(path):
    keys = _keys(yaml.safe_load(path.read_text()))
    assert not keys & ROBOT_FACTS, f"{path.name} repeats robot facts {sorted(keys & ROBOT_FACTS)}: robot.yaml's"
    assert not keys & FORMER_NAMES, f"{path.name} has former copies {sorted(keys & FORMER_NAMES)}: robot.yaml's"
    if path.name != "stack.yaml":
        assert ROBOT_PARAMETER not in keys, f"{path.name}: robot_file is the stack's (stack.yaml robot:)"
    if path.name == "tools.yaml":
        assert "ranges" not in keys, "tools.yaml: a tool's limits are the safety policy's alone"


@pytest.mark.parametrize("executable", sorted(PARAMETER_SCHEMAS))
def test_no_node_takes_a_robot_fact_as_a_parameter(executable):
    """The parameters are the settings dataclasses' fields: this also keeps robot numbers out of code defaults."""
    names = set(schema_for(executable).defaults)
    assert not names & (ROBOT_FACTS | FORMER_NAMES), sorted(names & (ROBOT_FACTS | FORMER_NAMES))


@pytest.mark.parametrize("node, name", [(n, k) for n, ks in FORMER_COPIES.items() for k in ks
                                        if not (n == "safety_supervisor" and k == "robot_radius")])
def test_the_launchers_refuse_a_former_copy(node, name):
    """A key removed from a node's YAML is not silently accepted anywhere: the launch stops, naming it."""
    value = "[0.1, 0.0, 0.15]" if name.endswith(("xyz", "xy")) else ("x" if name.endswith("joint") else "0.2")
    with pytest.raises(StackConfigError, match=rf"{node}\.{name}: .* has no parameter '{name}' \(a robot fact: "
                                               rf".* in the robot description, config/robot.yaml\)"):
        load_stack("stack.yaml", overrides=parse_overrides([f"{node}.{name}:={value}"]))


# --- (2) one robot for the whole stack -----------------------------------------------------------------------
def test_every_node_that_reads_the_robot_is_given_the_stacks_one():
    readers = {name for name, spec in STACK.nodes.items() if ROBOT_PARAMETER in spec.schema.defaults}
    assert readers == {"sim", "skills", "safety_supervisor", "qwen_node", "perception", "console"}
    for name in readers:
        assert STACK.nodes[name].parameters()[ROBOT_PARAMETER] == str(STACK.robot_file), name
    assert STACK.robot_file == config_file("robot.yaml").resolve()


# --- (3) each part's effective numbers -----------------------------------------------------------------------
def _section(name: str, node: str) -> dict:
    from qwen_stack.stack_config import read_ros_params_file

    return read_ros_params_file(config_file(name), node)


def _optical_centre_from_urdf(robot: RobotSpec, pan: float) -> np.ndarray:
    """base_link -> camera_optical_frame through the URDF's joints, lifted by base_link's height: above the floor."""
    by_child = {j.child: j for j in joints(robot)}
    chain, frame = [], "camera_optical_frame"
    while frame in by_child:
        chain.append(by_child[frame])
        frame = by_child[frame].parent
    p, q = np.zeros(3), (0.0, 0.0, 0.0, 1.0)
    for j in reversed(chain):
        xyz, jq = joint_transform(j, pan if j.name == robot.camera_pan_joint else 0.0)
        p = p + np.array(quat_matrix(q)) @ np.array(xyz)
        q = quat_mul(q, jq)
    return p + np.array([0.0, 0.0, robot.wheel_radius])


def test_the_supervisor_enforces_the_robots_limits_from_its_laser():
    from qwen_stack.safety.config import load_config

    cfg = load_config(config_file("safety.yaml"), {ROBOT_PARAMETER: str(STACK.robot_file)})
    for name in ("max_linear_vel", "max_reverse_vel", "max_angular_vel", "max_linear_accel", "max_linear_decel",
                 "max_angular_accel", "max_angular_decel"):
        assert getattr(cfg, name) == getattr(ROBOT, name), name
    assert (cfg.laser_x, cfg.laser_y, cfg.laser_yaw) == (ROBOT.laser_xyz[0], ROBOT.laser_xyz[1], 0.0)
    assert cfg.robot_radius >= ROBOT.footprint_radius


def test_the_skills_drive_within_the_robots_limits():
    from qwen_stack.sim.config import SkillsNodeConfig

    cfg = SkillsNodeConfig.from_dict(_section("sim.yaml", "skills"))
    limits = cfg.limits(ROBOT)
    assert (limits.max_linear, limits.max_angular) == (ROBOT.max_linear_vel, ROBOT.max_angular_vel)
    assert limits.linear_accel <= ROBOT.max_linear_decel and limits.angular_accel <= ROBOT.max_angular_decel


def test_the_console_clamps_teleop_within_the_robots_limits():
    from qwen_stack.console.config import ConsoleSettings

    s = ConsoleSettings.from_params_file(config_file("console.yaml")).within_robot(ROBOT)
    assert s.teleop_max_linear <= ROBOT.max_linear_vel and s.teleop_max_angular <= ROBOT.max_angular_vel


def test_the_models_tool_limits_are_within_the_robots():
    """The tools' schemas (the safety policy's ranges) never offer the model more than the robot can do."""
    from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry

    from tests.agent.srv_files import srv_file_request_fields

    reg = ToolRegistry.from_dict(yaml.safe_load(config_file("tools.yaml").read_text()), srv_file_request_fields,
                                 yaml.safe_load(config_file("safety_policy.yaml").read_text()))
    props = lambda tool: reg[tool].parameters["properties"]   # noqa: E731
    assert props("drive_distance")["speed"]["maximum"] <= ROBOT.max_linear_vel
    assert props("rotate")["speed"]["maximum"] <= ROBOT.max_angular_vel
    assert max(-props("look_at")["pan"]["minimum"], props("look_at")["pan"]["maximum"]) <= ROBOT.pan_limit


@pytest.mark.parametrize("pan", [0.0, 0.7, -1.3])
def test_perception_and_the_agent_put_the_camera_where_the_urdf_does(pan):
    """Perception's camera pose and the agent's grounding mount, from their shipped configuration, against the
    URDF chain (which the simulator's camera matches: tests/sim/test_robot_description.py), within 1 mm."""
    from qwen_stack.perception.config import NODE_PARAMETERS, config_from_dict
    from qwen_stack.perception.pipeline import Perceiver
    from qwen_stack.qwen_node.agent.grounding import CameraMount

    want = _optical_centre_from_urdf(ROBOT, pan)
    values = {k: v for k, v in _section("perception.yaml", "perception").items() if k not in NODE_PARAMETERS}
    perceived = Perceiver(config_from_dict(values, load_robot(str(STACK.robot_file)))).camera_pose(pan)
    assert np.allclose(perceived.origin, want, atol=1e-3), (perceived.origin, want)
    agent = CameraMount.of_robot(load_robot(STACK.nodes["qwen_node"].parameters()[ROBOT_PARAMETER]))
    assert np.allclose(agent.optical_centre(pan), want, atol=1e-3), (agent.optical_centre(pan), want)
    assert agent.pitch == pytest.approx(math.radians(ROBOT.camera_tilt_deg))


def test_the_simulated_robot_and_the_gazebo_files_are_the_description():
    from qwen_stack.sim.gazebo_world import GAZEBO_DIR, ROBOT_MODEL, robot_sdf
    from qwen_stack.sim.scenario import layout_from_dict
    from qwen_stack.sim.world import build_mjcf

    import mujoco

    arena = {"name": "facts", "seed": 0, "robot_start": {"x": 0.0, "y": 0.0, "yaw": 0.0}}
    m = mujoco.MjModel.from_xml_string(build_mjcf(layout_from_dict(arena), ROBOT))
    assert np.allclose(m.site("laser").pos, ROBOT.laser_xyz) and m.site("pick").pos[0] == pytest.approx(ROBOT.pick_x)
    assert np.allclose(m.body("camera_pan_link").pos, ROBOT.camera_xyz)
    assert m.cam_fovy[m.camera("camera").id] == pytest.approx(ROBOT.camera_fovy_deg)
    assert m.jnt_range[m.joint(ROBOT.camera_pan_joint).id][1] == pytest.approx(ROBOT.pan_limit)
    assert m.body("base_link").pos[2] == pytest.approx(ROBOT.wheel_radius)
    assert (GAZEBO_DIR / f"{ROBOT_MODEL}.sdf").read_text() == robot_sdf(ROBOT)


def test_the_brains_symbolic_world_grasps_within_the_robots_reach():
    from qwen_stack.qwen_node.brain import world

    assert world.PICK_REACH == ROBOT.pick_reach
