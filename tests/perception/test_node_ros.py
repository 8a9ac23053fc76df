"""perception_node over real ROS topics.

- in a running simulator (sim_node as a subprocess): perception/objects names the objects in view
  by the scenario convention, at the true positions (the sim's ground truth is the test's oracle,
  read here only) within the bench's bounds, and the annotated image and markers are published;
- bad input from a test double of the camera (this process publishes): no CameraInfo, an image of
  the wrong encoding, a laser that stops: a clear diagnostic on /diagnostics, the node keeps
  running, and no object is invented.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("qwen_stack_interfaces", reason="ros_ws not built (scripts/build_ros_ws.sh)")
pytest.importorskip("mujoco")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.geometry import yaw_of  # noqa: E402
from qwen_stack.paths import config_file  # noqa: E402
from tests.ros_processes import SpinThread, start_node, stop  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class Listener:
    """A node of this process recording perception's outputs, the diagnostics and the sim's oracle."""

    def __init__(self, context):
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        from qwen_stack_interfaces.msg import DetectedObjects

        self.node = rclpy.create_node("perception_test_listener", context=context)
        self.proc, self.log = None, None       # the perception_node process and its log, once started
        self.objects, self.diagnostics, self.images, self.markers = [], [], [], []
        self.truth = self.sim_objects = None
        n = self.node
        n.create_subscription(DetectedObjects, topics.PERCEPTION_OBJECTS, self.objects.append, 10)
        n.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, 10)
        n.create_subscription(Image, topics.PERCEPTION_IMAGE_ANNOTATED, self.images.append, qos_profile_sensor_data)
        n.create_subscription(MarkerArray, topics.PERCEPTION_MARKERS, self.markers.append, 10)
        n.create_subscription(Odometry, topics.SIM_GROUND_TRUTH, lambda m: setattr(self, "truth", m), 10)   # oracle
        n.create_subscription(String, topics.SIM_OBJECTS, lambda m: setattr(self, "sim_objects", json.loads(m.data)), 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(n)
        self.thread = SpinThread(self.executor)
        self.thread.start()

    def _on_diag(self, m):
        for st in m.status:
            if st.name.endswith(": perception"):
                self.diagnostics.append(st)

    def wait(self, cond, timeout: float, what: str):
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return
            time.sleep(0.05)
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"perception_node died waiting for {what}: {self.log.read_text()[-3000:]}")
        last = self.diagnostics[-1].message if self.diagnostics else "no diagnostics"
        raise AssertionError(f"timed out waiting for {what}; last diagnostic: {last}")

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def ros_context(ros_env):
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    yield ctx
    rclpy.shutdown(context=ctx)


def test_detections_in_a_running_simulator_have_the_scenario_names_and_true_poses(tmp_path, ros_env, ros_context):
    env = ros_env
    lis = Listener(ros_context)
    # the distractor world: an orange ball and a red ball beside the red cube, objects behind the crate
    sim = start_node("qwen_stack.sim.node", ["--params-file", str(config_file("sim.yaml")), "-p",
                                             "scenario:=perception_distractors", "-p", "seed:=3"], env, tmp_path / "sim.log")
    per = start_node("qwen_stack.perception.node", ["--params-file", str(config_file("perception.yaml"))], env,
                     tmp_path / "perception.log")
    lis.proc, lis.log = per, tmp_path / "perception.log"
    try:
        lis.wait(lambda: len(lis.objects) >= 8 and lis.truth is not None and lis.sim_objects is not None, 90,
                 f"perception/objects (perception log: {(tmp_path / 'perception.log').read_text()[-2000:]})")
        assert per.poll() is None and sim.poll() is None
        last = lis.objects[-1]
        assert last.header.frame_id == "odom"
        # the robot has not moved: odom = its start pose; the oracle's world poses -> odom through it
        p, q = lis.truth.pose.pose.position, lis.truth.pose.pose.orientation
        yaw, odom = yaw_of(q), last.robot_pose.position
        c, s = math.cos(yaw), math.sin(yaw)
        truth = {}
        for o in lis.sim_objects["objects"] + lis.sim_objects["areas"]:
            dx, dy = o["x"] - p.x, o["y"] - p.y
            truth[o["name"]] = (odom.x + c * dx + s * dy, odom.y - s * dx + c * dy)
        seen = [o for o in last.objects if o.in_view]
        assert seen, [o.name for o in last.objects]
        report = []
        for o in seen:
            assert o.name in truth, f"{o.name} is not a scenario object: {[x.name for x in seen]}"
            tx, ty = truth[o.name]
            err = math.hypot(o.pose.position.x - tx, o.pose.position.y - ty)
            report.append(f"{o.name} {err * 100:.1f} cm")
            if math.hypot(tx - odom.x, ty - odom.y) <= 3.0:
                assert err <= 0.12, report
        assert lis.images and lis.images[-1].encoding == "rgb8" and lis.images[-1].width == 320
        texts = {m.text for m in lis.markers[-1].markers if m.text}
        assert {o.name for o in last.objects} <= texts
        assert lis.diagnostics and lis.diagnostics[-1].level == OK, lis.diagnostics[-1].message
        print("perception in the simulator: " + ", ".join(report))
    finally:
        lis.close()
        stop(per)
        stop(sim)


class CameraDouble:
    """Publishes what a camera driver, odometry, joint states and a laser would (test double)."""

    def __init__(self, context):
        from nav_msgs.msg import Odometry
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan

        self.node = rclpy.create_node("camera_double", context=context)
        sd = qos_profile_sensor_data
        self.Image, self.CameraInfo, self.Odometry = Image, CameraInfo, Odometry
        self.JointState, self.LaserScan = JointState, LaserScan
        self.pub_img = self.node.create_publisher(Image, topics.CAMERA_IMAGE, sd)
        self.pub_info = self.node.create_publisher(CameraInfo, topics.CAMERA_INFO, sd)
        self.pub_odom = self.node.create_publisher(Odometry, topics.ODOM, sd)
        self.pub_joint = self.node.create_publisher(JointState, topics.JOINT_STATES, sd)
        self.pub_scan = self.node.create_publisher(LaserScan, topics.SCAN, sd)
        self.t = 100.0

    def stamp(self):
        from builtin_interfaces.msg import Time

        return Time(sec=int(self.t), nanosec=int((self.t % 1) * 1e9))

    def tick(self, image: np.ndarray | None, encoding: str = "rgb8", info: bool = True, laser: bool = True):
        self.t += 0.25
        st = self.stamp()
        odom = self.Odometry()
        odom.header.stamp, odom.pose.pose.orientation.w = st, 1.0
        self.pub_odom.publish(odom)
        js = self.JointState(name=["camera_pan_joint"], position=[0.0])
        js.header.stamp = st
        self.pub_joint.publish(js)
        if laser:
            scan = self.LaserScan(angle_min=-math.pi, angle_max=math.pi, angle_increment=2 * math.pi / 360,
                                  range_min=0.05, range_max=8.0, ranges=[float("inf")] * 360)
            scan.header.stamp = st
            self.pub_scan.publish(scan)
        if info:
            ci = self.CameraInfo(width=320, height=240)
            fy = 120 / math.tan(math.radians(30))
            ci.k = [fy, 0.0, 160.0, 0.0, fy, 120.0, 0.0, 0.0, 1.0]
            ci.header.stamp = st
            self.pub_info.publish(ci)
        if image is not None:
            ch = image.shape[2] if image.ndim == 3 else 1
            msg = self.Image(height=image.shape[0], width=image.shape[1], encoding=encoding, step=image.shape[1] * ch)
            msg.header.stamp, msg.data = st, image.tobytes()
            self.pub_img.publish(msg)


def _red_cube_frame() -> np.ndarray:
    """A grey floor with a red square near the bottom centre: a red object about a metre ahead."""
    img = np.full((240, 320, 3), 150, np.uint8)
    img[:60] = (170, 180, 190)                     # a sky-ish band at the top
    img[150:170, 150:170] = (220, 25, 25)
    return img


def test_bad_input_gives_diagnostics_and_no_invented_objects(tmp_path, ros_env, ros_context):
    lis = Listener(ros_context)
    cam = CameraDouble(ros_context)
    per = start_node("qwen_stack.perception.node", ["--params-file", str(config_file("perception.yaml"))], ros_env,
                     tmp_path / "perception.log")
    lis.proc, lis.log = per, tmp_path / "perception.log"
    try:
        def run(n, **kw):
            for _ in range(n):
                cam.tick(**kw)
                time.sleep(0.25)

        def last_message():
            return lis.diagnostics[-1].message if lis.diagnostics else ""

        # 1. frames but never a CameraInfo
        lis.wait(lambda: (run(2, image=_red_cube_frame(), info=False) or "CameraInfo" in last_message()), 40,
                 "a diagnostic about the missing CameraInfo")
        assert lis.diagnostics[-1].level == ERROR and not lis.objects
        # 2. frames of an encoding without colour
        lis.wait(lambda: (run(2, image=np.full((240, 320), 128, np.uint8), encoding="mono8")
                          or "encoding 'mono8'" in last_message()), 40, "a diagnostic about the encoding")
        assert not lis.objects
        # 3. good frames with a laser, then the laser stops: ranging by camera only, said so
        lis.wait(lambda: (run(2, image=_red_cube_frame()) or bool(lis.objects)), 40, "objects from good frames")
        assert [o.colour for o in lis.objects[-1].objects] == ["red"]
        run(6, image=_red_cube_frame(), laser=False)                   # > sensor_timeout (1 s) without a scan
        lis.wait(lambda: (run(1, image=_red_cube_frame(), laser=False) or "laser" in last_message()), 20,
                 "a diagnostic about the laser")
        assert lis.diagnostics[-1].level == WARN
        # 4. a frame with nothing coloured: nothing in view (the red object stays remembered, out of... view)
        lis.wait(lambda: (run(1, image=np.full((240, 320, 3), 150, np.uint8))
                          or not any(o.in_view for o in lis.objects[-1].objects)), 20, "an empty view")
        assert all(o.colour == "red" for o in lis.objects[-1].objects)
        assert per.poll() is None, (tmp_path / "perception.log").read_text()[-2000:]
    finally:
        cam.node.destroy_node()
        lis.close()
        stop(per)
