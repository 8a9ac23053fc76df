"""robot_description (URDF) and the TF tree made from it, against the simulator's own kinematics (the parts'
sensor mounts: all from config/robot.yaml, tests/foundation/test_robot_facts.py)."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from qwen_stack.sim.robot_description import Frames, joint_transform, joints, quat_matrix, quat_mul, urdf
from qwen_stack.sim.scenario import layout_from_dict
from qwen_stack.robot import RobotSpec, load_robot
from qwen_stack.sim.simulator import Simulator
from qwen_stack.sim.world import joint_names
from sim_test_worlds import open_arena


def _rot(q) -> np.ndarray:
    return np.array(quat_matrix(q))


def test_urdf_is_one_tree_with_every_joint_the_simulator_reports():
    root = ET.fromstring(urdf())
    links = {link.get("name") for link in root.findall("link")}
    children = {j.find("child").get("link") for j in root.findall("joint")}
    parents = {j.find("parent").get("link") for j in root.findall("joint")}
    assert links - children == {"base_link"}                 # one root
    assert parents | children <= links and len(children) == len(root.findall("joint"))  # each link one parent
    moving = {j.get("name") for j in root.findall("joint") if j.get("type") != "fixed"}
    assert moving == set(joint_names(load_robot()))


def test_urdf_origins_are_the_joint_list():
    root = ET.fromstring(urdf())
    for j in joints(load_robot()):
        el = next(e for e in root.findall("joint") if e.get("name") == j.name)
        origin = el.find("origin")
        assert [float(v) for v in origin.get("xyz").split()] == pytest.approx(j.xyz, abs=1e-6)
        assert [float(v) for v in origin.get("rpy").split()] == pytest.approx(j.rpy, abs=1e-6)


def _chain(base_xyz, base_yaw, positions: dict[str, float], child: str, spec: RobotSpec):
    """world/odom -> child through the joint list: (position, rotation matrix)."""
    by_child = {j.child: j for j in joints(spec)}
    path, frame = [], child
    while frame != Frames().base:
        path.append(by_child[frame])
        frame = by_child[frame].parent
    p, q = np.array(base_xyz, float), (0.0, 0.0, math.sin(base_yaw / 2), math.cos(base_yaw / 2))
    for j in reversed(path):
        xyz, jq = joint_transform(j, positions.get(j.name, 0.0))
        p = p + _rot(q) @ np.array(xyz)
        q = quat_mul(q, jq)
    return p, _rot(q)


@pytest.mark.parametrize("pan", [0.0, 0.8, -1.4])
def test_tf_chain_matches_the_simulators_kinematics(pan):
    """Camera and laser poses composed from the URDF's joints equal MuJoCo's, within 1 cm and 1 degree."""
    spec = load_robot()
    sim = Simulator(layout_from_dict(open_arena(robot=(-0.5, 0.3, 0.7))))
    try:
        sim.set_pan(pan)
        sim.set_cmd_vel(0.2, 0.3)
        sim.step_for(1.5)
        sim.set_cmd_vel(0.0, 0.0)
        sim.step_for(0.5)
        truth = sim.ground_truth()
        names, pos, _ = sim.joint_states()
        positions = dict(zip(names, pos))
        base = (truth.x, truth.y, spec.wheel_radius)
        cam_p, cam_r = _chain(base, truth.yaw, positions, "camera_optical_frame", spec)
        cam_id = sim.model.camera("camera").id
        mj_p, mj_r = sim.data.cam_xpos[cam_id], sim.data.cam_xmat[cam_id].reshape(3, 3)
        assert np.linalg.norm(cam_p - mj_p) < 0.01
        # MuJoCo's camera looks along its -z, with +y up; the optical frame looks along +z with +y down.
        angle = math.degrees(math.acos(np.clip(cam_r[:, 2] @ -mj_r[:, 2], -1, 1)))
        assert angle < 1.0
        assert math.degrees(math.acos(np.clip(cam_r[:, 1] @ -mj_r[:, 1], -1, 1))) < 1.0
        laser_p, _ = _chain(base, truth.yaw, positions, "laser", spec)
        assert np.linalg.norm(laser_p - sim.data.site_xpos[sim.model.site("laser").id]) < 0.01
    finally:
        sim.close()
