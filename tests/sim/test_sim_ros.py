"""sim_node and skills_node over real ROS topics (subprocesses), driven from this test process.

The safety supervisor is replaced by `SupervisorRelayDouble` (cmd_vel/autonomy -> cmd_vel), a
test double; the lead reruns these checks with the real supervisor.
"""
from __future__ import annotations

import importlib
import json
import math
import threading
import time

import cv2
import numpy as np
import pytest
import yaml
from tests.ros_processes import SpinThread
from sim_ros_helpers import SIM_TEST_DOMAIN, call, private_env, start_node, stop
from sim_test_worlds import RED_CUBE, open_arena

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, LaserScan  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.paths import config_file  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

BLUE_SQUARE = {"name": "blue_square", "half_size": [0.25, 0.25], "rgba": [0.1, 0.2, 0.9], "x": -1.2, "y": 1.6}


def _interfaces():
    return pytest.importorskip("qwen_stack_interfaces.srv",
                               reason="qwen_stack_interfaces not built (scripts/build_ros_ws.sh)")


class SupervisorRelayDouble(Node):
    """TEST DOUBLE of the safety supervisor: forwards cmd_vel/autonomy to cmd_vel unchanged."""

    def __init__(self, context):
        super().__init__("supervisor_relay_double", context=context)
        self.forwarded = 0
        self.pub = self.create_publisher(Twist, topics.BASE_CMD_VEL, 10)
        self.create_subscription(Twist, topics.AUTONOMY_CMD_VEL, self._relay, 10)

    def _relay(self, msg: Twist) -> None:
        self.forwarded += 1
        self.pub.publish(msg)


class Probe(Node):
    """Records the latest message of every sim topic."""

    def __init__(self, context):
        super().__init__("sim_test_probe", context=context)
        self.last, self.count, self.lock = {}, {}, threading.Lock()
        sensor = qos_profile_sensor_data
        for name, type_, topic, qos in (
                ("clock", Clock, topics.CLOCK, 10), ("image", Image, topics.CAMERA_IMAGE, sensor),
                ("jpeg", CompressedImage, topics.CAMERA_COMPRESSED, sensor),
                ("info", CameraInfo, topics.CAMERA_INFO, sensor), ("scan", LaserScan, topics.SCAN, sensor),
                ("odom", Odometry, topics.ODOM, 10), ("joints", JointState, topics.JOINT_STATES, 10),
                ("truth", Odometry, topics.SIM_GROUND_TRUTH, 10), ("objects", String, topics.SIM_OBJECTS, 10)):
            self.create_subscription(type_, topic, self._recorder(name), qos)

    def _recorder(self, name):
        def record(msg):
            with self.lock:
                self.last[name] = msg
                self.count[name] = self.count.get(name, 0) + 1
        return record

    def wait_for(self, names, n=2, timeout=30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if all(self.count.get(k, 0) >= n for k in names):
                    return
            time.sleep(0.05)
        raise AssertionError(f"topics without {n} messages after {timeout} s: "
                             f"{[k for k in names if self.count.get(k, 0) < n]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, ros_env):
    """sim_node (+ skills_node when the interfaces are built) and the test-side nodes."""
    ros_env = private_env(ros_env)
    folder = tmp_path_factory.mktemp("sim_ros")
    scenario = folder / "test_fetch.yaml"
    scenario.write_text(yaml.safe_dump(open_arena(robot=(0.0, 0.0, 0.0), objects=[dict(RED_CUBE, x=0.36, y=0.0)],
                                                  areas=[BLUE_SQUARE])))
    params = ["--params-file", str(config_file("sim.yaml"))]
    procs = [start_node("qwen_stack.sim.node", params + ["-p", f"scenario:={scenario}"], ros_env, folder / "sim.log")]
    try:
        importlib.import_module("qwen_stack_interfaces.srv")
        procs.append(start_node("qwen_stack.sim.skills_node", params, ros_env, folder / "skills.log"))
    except ImportError:
        pass
    context = rclpy.Context()
    context.init(domain_id=SIM_TEST_DOMAIN)
    relay, probe = SupervisorRelayDouble(context), Probe(context)
    client_node = Node("sim_test_client", context=context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    for n in (relay, probe, client_node):
        executor.add_node(n)
    spinner = SpinThread(executor)
    spinner.start()
    try:
        end = time.monotonic() + 30.0
        while "clock" not in probe.count and time.monotonic() < end:
            for p in procs:
                assert p.poll() is None, f"node exited with {p.returncode}: {(folder / 'sim.log').read_text()}"
            time.sleep(0.1)
        yield {"relay": relay, "probe": probe, "client": client_node, "procs": procs, "folder": folder,
               "context": context}
    finally:
        for p in procs:
            stop(p)
        executor.shutdown()
        for n in (relay, probe, client_node):
            n.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=5)
        for log in sorted(folder.glob("*.log")):  # shown by pytest when a test failed
            print(f"--- {log.name}\n{log.read_text()}")


def test_sim_node_publishes_every_sensor_in_sim_time(stack):
    probe = stack["probe"]
    probe.wait_for(["clock", "image", "jpeg", "info", "scan", "odom", "joints", "truth", "objects"])
    with probe.lock:
        last = dict(probe.last)
    img = last["image"]
    assert (img.width, img.height, img.encoding, img.header.frame_id) == (320, 240, "rgb8", "camera_optical_frame")
    assert len(img.data) == 320 * 240 * 3
    jpeg = cv2.imdecode(np.frombuffer(bytes(last["jpeg"].data), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == (240, 320, 3)
    info = last["info"]
    assert (info.width, info.height) == (320, 240) and info.k[0] == pytest.approx(120 / math.tan(math.radians(30)))
    scan = last["scan"]
    assert len(scan.ranges) == 360 and scan.header.frame_id == "laser"
    # Straight behind the robot (beam 0, angle -pi): the west wall, 3 m from the centre; laser 5 cm ahead.
    assert scan.ranges[0] == pytest.approx(3.0 + 0.05, abs=0.03)
    odom = last["odom"]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    assert set(last["joints"].name) == {"left_wheel_joint", "right_wheel_joint", "camera_pan_joint"}
    assert last["truth"].header.frame_id == "world"
    objects = json.loads(last["objects"].data)
    assert [o["name"] for o in objects["objects"]] == ["red_cube"] and objects["areas"][0]["name"] == "blue_square"
    # Stamps are sim time: the sim publishes /clock before the frame of the same instant, so a /clock within one
    # period (10 ms) of the frame's stamp is heard soon after it (the probe's executor may take the two topics
    # in either order), and that clock is not far ahead of the stamp either (not another time base).
    stamp = img.header.stamp.sec + img.header.stamp.nanosec * 1e-9

    def newest_clock() -> float:
        with probe.lock:
            c = probe.last["clock"].clock
        return c.sec + c.nanosec * 1e-9

    deadline = time.monotonic() + 5.0
    while newest_clock() < stamp - 0.011 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 0.0 < stamp and stamp - 0.011 <= newest_clock() < stamp + 5.0, (stamp, newest_clock())


def test_base_obeys_cmd_vel_and_stops_by_itself(stack):
    probe = stack["probe"]
    probe.wait_for(["truth"])
    # A node of its own that no executor spins: destroying a publisher of a node that the fixture's executor
    # thread spins can kill that thread (tests/ros_processes.py), and every later call would go unanswered.
    source = Node("sim_test_cmd_vel_source", context=stack["context"])
    pub = source.create_publisher(Twist, topics.BASE_CMD_VEL, 10)
    msg = Twist()
    msg.angular.z = 0.6
    for _ in range(20):  # 1 s of turning at 20 Hz
        pub.publish(msg)
        time.sleep(0.05)
    assert abs(probe.last["truth"].twist.twist.angular.z) > 0.3
    time.sleep(1.5)  # > cmd_vel_timeout (0.5 s) + braking
    assert abs(probe.last["truth"].twist.twist.angular.z) < 0.02
    source.destroy_node()


def test_skills_publish_only_on_the_supervisor_input(stack):
    _interfaces()
    node = stack["client"]
    end = time.monotonic() + 20
    while time.monotonic() < end and "skills" not in node.get_node_names():
        time.sleep(0.1)
    skills_pubs = {name for name, _ in node.get_publisher_names_and_types_by_node("skills", "/")}
    assert "/" + topics.AUTONOMY_CMD_VEL in skills_pubs
    assert "/" + topics.BASE_CMD_VEL not in skills_pubs
    publishers_of_base = {i.node_name for i in node.get_publishers_info_by_topic("/" + topics.BASE_CMD_VEL)}
    assert "skills" not in publishers_of_base
    assert {i.node_name for i in node.get_subscriptions_info_by_topic("/" + topics.BASE_CMD_VEL)} >= {"sim"}


def test_bad_skill_requests_are_refused_without_motion(stack):
    srv = _interfaces()
    relay = stack["relay"]
    before = relay.forwarded
    resp = call(stack["client"], srv.DriveDistance, topics.SKILL_DRIVE_DISTANCE,
                 srv.DriveDistance.Request(distance=float("nan"), speed=0.3))
    assert not resp.success and "finite" in resp.message
    resp = call(stack["client"], srv.Rotate, topics.SKILL_ROTATE, srv.Rotate.Request(angle=1.0, speed=50.0))
    assert not resp.success and "limit" in resp.message
    resp = call(stack["client"], srv.GoToPose, topics.SKILL_GO_TO_POSE, srv.GoToPose.Request(x=500.0, y=0.0))
    assert not resp.success and "beyond the limit" in resp.message
    assert relay.forwarded - before <= 3  # at most the stop command each refusal ends with
    resp = call(stack["client"], srv.LookAt, topics.SKILL_LOOK_AT, srv.LookAt.Request(pan=5.0))
    assert not resp.success and "outside" in resp.message


def test_look_at_answers_once_the_camera_looks_there(stack):
    """A frame taken right after look_at must show the new view: the pan swings at up to 8 rad/s."""
    srv = _interfaces()
    probe = stack["probe"]
    for pan in (1.2, -0.4):
        resp = call(stack["client"], srv.LookAt, topics.SKILL_LOOK_AT, srv.LookAt.Request(pan=pan))
        assert resp.success, resp.message
        time.sleep(0.1)   # one joint_states period (30 Hz) for the probe to hear the state at the answer
        with probe.lock:
            j = probe.last["joints"]
        assert abs(j.position[list(j.name).index("camera_pan_joint")] - pan) < 0.03


def test_grasp_go_to_pose_2m_and_release_through_the_relay(stack):
    srv = _interfaces()
    probe, client, relay = stack["probe"], stack["client"], stack["relay"]
    probe.wait_for(["truth", "objects", "odom"])
    # Approach: stop 0.3 m short of the cube, facing it. The robot started at the world origin
    # heading +x, so the odom frame is the world frame (up to odometry drift, millimetres here).
    cube = json.loads(probe.last["objects"].data)["objects"][0]
    o = probe.last["odom"].pose.pose.position
    heading = math.atan2(cube["y"] - o.y, cube["x"] - o.x)
    approach = srv.GoToPose.Request(x=cube["x"] - 0.3 * math.cos(heading), y=cube["y"] - 0.3 * math.sin(heading),
                                    theta=heading, use_theta=True, max_speed=0.2)
    resp = call(client, srv.GoToPose, topics.SKILL_GO_TO_POSE, approach)
    assert resp.success, resp.message
    resp = call(client, srv.Grasp, topics.SKILL_GRASP, srv.Grasp.Request(object_name=""))
    assert resp.success and resp.held_object == "red_cube", resp.message

    time.sleep(0.2)
    o = probe.last["odom"].pose.pose.position
    goal = (o.x - 1.2, o.y + 1.6)  # 2 m away, behind-left: turn, then drive (odom frame)
    forwarded = relay.forwarded
    resp = call(client, srv.GoToPose, topics.SKILL_GO_TO_POSE,
                 srv.GoToPose.Request(x=goal[0], y=goal[1], theta=0.0, use_theta=False, max_speed=0.4))
    assert resp.success, resp.message
    assert math.hypot(resp.final_pose.x - goal[0], resp.final_pose.y - goal[1]) < 0.05, (resp.final_pose, goal)
    assert relay.forwarded - forwarded > 30  # the motion went through the supervisor's input
    time.sleep(0.3)
    # "done" only with the base at rest: it has not moved since (it used to run on 0.1-0.2 m on a loaded host).
    o = probe.last["odom"].pose.pose.position
    assert math.hypot(o.x - resp.final_pose.x, o.y - resp.final_pose.y) < 0.01, (o, resp.final_pose)
    truth = probe.last["truth"].pose.pose.position
    # odom frame = world frame, see above
    assert math.hypot(truth.x - goal[0], truth.y - goal[1]) < 0.05, (truth, probe.last["odom"].pose.pose.position, goal)

    state = json.loads(call(client, srv.DescribeState, topics.SKILL_DESCRIBE_STATE,
                             srv.DescribeState.Request()).state_json)
    assert state["held_object"] == "red_cube" and state["last_skill"]["skill"] == "go_to_pose"
    assert state["estop_latched"] is None  # no supervisor here, only its relay double
    resp = call(client, srv.Release, topics.SKILL_RELEASE, srv.Release.Request())
    assert resp.success and resp.released_object == "red_cube"
    time.sleep(1.0)  # objects JSON at 2 Hz
    cube = json.loads(probe.last["objects"].data)["objects"][0]
    assert not cube["held"] and math.hypot(cube["x"] - truth.x, cube["y"] - truth.y) < 0.35, (cube, truth)


@pytest.mark.parametrize("module, override, named", [
    ("qwen_stack.sim.node", "camera_width:=2000", "camera_width"),
    ("qwen_stack.sim.node", "scenario:=no_such_scenario", "no_such_scenario"),
    ("qwen_stack.sim.skills_node", "default_linear:=0.0", "default_linear"),
    ("qwen_stack.sim.skills_node", "default_linear:=0.9", "above the robot's max_linear_vel"),
    ("qwen_stack.sim.node", "robot_file:=/nonexistent/robot.yaml", "cannot read the robot description"),
])
def test_nodes_refuse_bad_parameters_at_start(tmp_path, ros_env, module, override, named):
    if module.endswith("skills_node"):
        _interfaces()
    proc = start_node(module, ["--params-file", str(config_file("sim.yaml")), "-p", override],
                      ros_env, tmp_path / "node.log")
    try:
        assert proc.wait(timeout=60) == 2
    finally:
        stop(proc)
    assert named in (tmp_path / "node.log").read_text()
