"""/tf, /tf_static and robot_description from a running sim_node, over real topics: the chain
odom -> base_link -> camera_pan_link -> camera_link -> camera_optical_frame (and -> laser) against the
simulator's kinematics written out by hand (config/robot.yaml's numbers), within 1 cm and 1 degree."""
from __future__ import annotations

import math
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml
from tests.ros_processes import SpinThread
from sim_ros_helpers import SIM_TEST_DOMAIN, call, private_env, start_node, stop
from sim_test_worlds import open_arena

rclpy = pytest.importorskip("rclpy")
tf2_msgs = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built (scripts/build_ros_ws.sh)")
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.paths import config_file  # noqa: E402
from qwen_stack.sim.robot_description import quat_matrix  # noqa: E402
from qwen_stack.robot import load_robot  # noqa: E402


def _rot(q) -> np.ndarray:
    return np.array(quat_matrix(q))


class TfProbe(Node):
    def __init__(self, context):
        super().__init__("tf_probe", context=context)
        self.lock = threading.Lock()
        self.tf: dict[tuple[str, str], object] = {}
        self.static: dict[tuple[str, str], object] = {}
        self.description: str | None = None
        self.truth = self.joints = None
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(tf2_msgs.TFMessage, "/tf", lambda m: self._store(self.tf, m), 100)
        self.create_subscription(tf2_msgs.TFMessage, "/tf_static", lambda m: self._store(self.static, m), latched)
        self.create_subscription(String, topics.ROBOT_DESCRIPTION, self._on_description, latched)
        self.create_subscription(Odometry, topics.SIM_GROUND_TRUTH, lambda m: setattr(self, "truth", m), 10)
        self.create_subscription(JointState, topics.JOINT_STATES, lambda m: setattr(self, "joints", m), 10)

    def _store(self, table, msg) -> None:
        with self.lock:
            for t in msg.transforms:
                table[(t.header.frame_id, t.child_frame_id)] = t

    def _on_description(self, msg) -> None:
        self.description = msg.data

    def chain(self, frames: list[str]):
        """Compose the transforms parent -> ... -> last of `frames`: (position, rotation)."""
        p, r = np.zeros(3), np.eye(3)
        with self.lock:
            both = {**self.tf, **self.static}
        for parent, child in zip(frames, frames[1:]):
            t = both[(parent, child)].transform
            p = p + r @ np.array([t.translation.x, t.translation.y, t.translation.z])
            r = r @ _rot((t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w))
        return p, r


@pytest.fixture(scope="module")
def sim(tmp_path_factory, ros_env):
    env = private_env(ros_env)
    folder = tmp_path_factory.mktemp("tf_ros")
    scenario = folder / "arena.yaml"
    scenario.write_text(yaml.safe_dump(open_arena(robot=(0.0, 0.0, 0.0))))  # world == odom at the start
    proc = start_node("qwen_stack.sim.node", ["--params-file", str(config_file("sim.yaml")),
                                               "-p", f"scenario:={scenario}"], env, folder / "sim.log")
    context = rclpy.Context()
    context.init(domain_id=SIM_TEST_DOMAIN)
    probe = TfProbe(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    spinner = SpinThread(executor)
    spinner.start()
    try:
        yield probe
    finally:
        stop(proc)
        executor.shutdown()
        probe.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=5)
        print((folder / "sim.log").read_text())


def _wait(pred, timeout=30.0, what="") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_robot_description_is_latched_urdf_with_every_tf_frame(sim):
    _wait(lambda: sim.description is not None and sim.static and sim.tf, what="robot_description, /tf, /tf_static")
    root = ET.fromstring(sim.description)
    links = {link.get("name") for link in root.findall("link")}
    with sim.lock:
        pairs = set(sim.tf) | set(sim.static)
    for parent, child in pairs:
        assert child in links and (parent in links or parent == "odom")
    assert ("odom", "base_link") in pairs


@pytest.mark.parametrize("pan", [0.9, -0.6])
def test_tf_chain_matches_the_simulator(sim, pan):
    lookat = pytest.importorskip("qwen_stack_interfaces.srv").LookAt
    helper = Node("tf_test_client", context=sim.context)
    try:
        executor = SingleThreadedExecutor(context=sim.context)
        executor.add_node(helper)
        spinner = SpinThread(executor)
        spinner.start()
        assert call(helper, lookat, topics.SIM_SET_PAN, lookat.Request(pan=pan)).success
        executor.shutdown()
    finally:
        helper.destroy_node()

    def settled():
        j = sim.joints
        return j is not None and abs(j.position[list(j.name).index("camera_pan_joint")] - pan) < 0.005
    _wait(settled, what=f"camera pan at {pan}")
    time.sleep(0.3)  # a few more /tf messages with the settled pan
    spec, truth = load_robot(), sim.truth.pose.pose
    yaw = 2 * math.atan2(truth.orientation.z, truth.orientation.w)
    with sim.lock:
        j = sim.joints
    pan_now = j.position[list(j.name).index("camera_pan_joint")]
    # By hand: base (x, y, wheel_radius) rotated by yaw; the pan axis at camera_xyz; the lens camera_lens_x
    # ahead along the tilted, panned camera x.
    tilt, c, s = math.radians(spec.camera_tilt_deg), math.cos(yaw), math.sin(yaw)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    forward_in_base = np.array([math.cos(tilt) * math.cos(pan_now), math.cos(tilt) * math.sin(pan_now), -math.sin(tilt)])
    base = np.array([truth.position.x, truth.position.y, spec.wheel_radius])
    expect_cam = base + rz @ (np.array(spec.camera_xyz) + spec.camera_lens_x * forward_in_base)
    p, r = sim.chain(["odom", "base_link", "camera_pan_link", "camera_link", "camera_optical_frame"])
    assert np.linalg.norm(p - expect_cam) < 0.01
    # the optical z axis looks along the camera's forward; yaw of that axis within 1 degree
    look = r[:, 2]
    expect_look = rz @ forward_in_base
    assert math.degrees(math.acos(np.clip(look @ expect_look, -1, 1))) < 1.0
    lp, _ = sim.chain(["odom", "base_link", "laser"])
    assert np.linalg.norm(lp - (base + rz @ np.array(spec.laser_xyz))) < 0.01
