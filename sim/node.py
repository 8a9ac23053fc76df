"""sim_node: the embedded MuJoCo world on ROS, stepped in real time, publishing /clock (sim time).

Subscribes BASE_CMD_VEL (geometry_msgs/Twist; only the safety supervisor publishes it); publishes
the camera (Image, CompressedImage, CameraInfo), LaserScan, Odometry (wheel encoders), JointState,
TF when tf2_msgs is installed, and, for tests, ground truth and object poses. Offers sim/attach,
sim/detach and sim/set_pan when qwen_stack_interfaces is built. Every stamp is sim time.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede the first GL context

import rclpy  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402

from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, LaserScan  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.node_main import run_node  # noqa: E402
from qwen_stack.node_parameters import settings_from_node  # noqa: E402
from qwen_stack.robot import RobotConfigError, load_robot  # noqa: E402
from qwen_stack.sim import ros_messages as rm  # noqa: E402
from qwen_stack.sim.config import SimConfigError, SimNodeConfig  # noqa: E402
from qwen_stack.sim.robot_description import urdf  # noqa: E402
from qwen_stack.sim.scenario import ScenarioError, load_layout  # noqa: E402
from qwen_stack.topics import SIM_ATTACH, SIM_DETACH, SIM_SET_PAN  # noqa: E402
from qwen_stack.sim.simulator import LaserSpec, Simulator  # noqa: E402
from qwen_stack.sim.stepping import RealTimePacer, SensorSchedule  # noqa: E402

MAX_LAG_S = 0.25  # behind real time by more than this: give up catching up (the sim runs slower)


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("sim")
        cfg = self.config = settings_from_node(self, SimNodeConfig)
        robot = load_robot(cfg.robot_file)
        layout = load_layout(cfg.scenario, None if cfg.seed < 0 else cfg.seed, robot.footprint_radius)
        laser = LaserSpec(beams=cfg.laser_beams, angle_max=math.pi * (1 - 2 / cfg.laser_beams),
                          range_max=cfg.laser_range_max)
        self.sim = Simulator(layout, robot, laser=laser, cmd_timeout=cfg.cmd_vel_timeout, timestep=cfg.physics_timestep)
        if cfg.fault_move_on_approach and cfg.fault_move_on_approach not in {o.name for o in layout.objects}:
            raise SimConfigError(f"sim_node parameter 'fault_move_on_approach' = {cfg.fault_move_on_approach!r}: "
                                 f"no such object in scenario {layout.name!r}")
        self.sim.fail_next_attaches, self.sim.move_on_approach = cfg.fault_fail_grasps, cfg.fault_move_on_approach
        if cfg.fault_fail_grasps or cfg.fault_move_on_approach:
            self.get_logger().warning(f"INJECTED FAULTS: {cfg.fault_fail_grasps} failing grasp(s); "
                                      f"move {cfg.fault_move_on_approach or 'nothing'} during the approach")
        # One lock for the Simulator: the stepping thread and the executor's callbacks both touch it.
        self.lock = threading.Lock()

        sensor = qos_profile_sensor_data  # best effort, depth 5: as camera_node and real drivers
        self.pub_clock = self.create_publisher(Clock, topics.CLOCK, 10)
        self.pub_image = self.create_publisher(Image, topics.CAMERA_IMAGE, sensor) if cfg.publish_raw_image else None
        self.pub_jpeg = (self.create_publisher(CompressedImage, topics.CAMERA_COMPRESSED, sensor)
                         if cfg.publish_compressed_image else None)
        self.pub_info = self.create_publisher(CameraInfo, topics.CAMERA_INFO, sensor)
        self.pub_scan = self.create_publisher(LaserScan, topics.SCAN, sensor)
        self.pub_odom = self.create_publisher(Odometry, topics.ODOM, 10)
        self.pub_joints = self.create_publisher(JointState, topics.JOINT_STATES, 10)
        self.pub_truth = self.create_publisher(Odometry, topics.SIM_GROUND_TRUTH, 10)
        self.pub_objects = self.create_publisher(String, topics.SIM_OBJECTS, 10)
        self.pub_tf = self.pub_tf_static = None
        if cfg.publish_tf:
            try:
                from tf2_msgs.msg import TFMessage
            except ImportError:
                self.get_logger().warning("tf2_msgs is not installed: TF is not published "
                                          "(odometry, joint states and frame ids are)")
            else:
                self._tf_type = TFMessage
                self.pub_tf = self.create_publisher(TFMessage, "/tf", 100)
                latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
                self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", latched)
                self.pub_tf_static.publish(TFMessage(transforms=rm.static_transforms(self.sim.robot, 0.0, cfg)))
        # robot_description (URDF, latched) as robot_state_publisher offers it: RViz and Foxglove read it.
        self.pub_description = self.create_publisher(
            String, topics.ROBOT_DESCRIPTION, QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.pub_description.publish(String(data=urdf(self.sim.robot, rm.frames_of(cfg))))
        self.create_subscription(Twist, topics.BASE_CMD_VEL, self._on_cmd_vel, 10)
        self._create_services()
        self.info = rm.camera_info(cfg.camera_width, cfg.camera_height,
                                   self.sim.camera_intrinsics(cfg.camera_width, cfg.camera_height),
                                   cfg.camera_optical_frame)
        self.schedule = SensorSchedule({
            "clock": cfg.clock_rate, "camera": cfg.camera_rate, "laser": cfg.laser_rate, "odom": cfg.odom_rate,
            "joints": cfg.joint_state_rate, "truth": cfg.ground_truth_rate, "objects": cfg.objects_rate})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim_stepping", daemon=True)
        self.get_logger().info(f"scenario {layout.name!r} seed {layout.seed}; camera {cfg.camera_width}x"
                               f"{cfg.camera_height} @ {cfg.camera_rate:g} Hz, laser @ {cfg.laser_rate:g} Hz")

    def _create_services(self) -> None:
        try:
            from qwen_stack_interfaces.srv import Grasp, LookAt, Release
        except ImportError as exc:
            self.get_logger().warning(f"qwen_stack_interfaces not importable ({exc}): "
                                      f"{SIM_ATTACH}, {SIM_DETACH}, {SIM_SET_PAN} are not offered")
            return
        self.create_service(Grasp, SIM_ATTACH, self._on_attach)
        self.create_service(Release, SIM_DETACH, self._on_detach)
        self.create_service(LookAt, SIM_SET_PAN, self._on_set_pan)

    # ---- callbacks (executor thread) ------------------------------------------------------
    def _on_cmd_vel(self, msg: Twist) -> None:
        with self.lock:
            err = self.sim.set_cmd_vel(msg.linear.x, msg.angular.z)
        if err:
            self.get_logger().warning(err, throttle_duration_sec=1.0)

    def _on_attach(self, req, resp):
        with self.lock:
            ok, msg = self.sim.attach(req.object_name)
        resp.success, resp.held_object = ok, (msg if ok else "")
        resp.message = f"attached {msg}" if ok else msg
        return resp

    def _on_detach(self, req, resp):
        with self.lock:
            ok, msg = self.sim.detach()
        resp.success, resp.released_object = ok, (msg if ok else "")
        resp.message = f"released {msg}" if ok else msg
        return resp

    def _on_set_pan(self, req, resp):
        with self.lock:
            err = self.sim.set_pan(req.pan)
        resp.success, resp.message = err is None, err or f"pan target {req.pan:.3f} rad"
        return resp

    # ---- stepping thread ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        """Step physics to keep sim time = real time x real_time_factor; publish what falls due.

        Runs in its own thread so that pacing never waits on callbacks (and the executor's callbacks
        never wait on a render). Rendering happens here too: the GL context belongs to this thread.
        """
        try:
            self.sim.render_camera(self.config.camera_width, self.config.camera_height)  # GL set-up before pacing
            self._loop()
        finally:
            self.sim.close()  # the renderers' GL contexts must be released by the thread that made them

    def _loop(self) -> None:
        cfg, sim = self.config, self.sim
        pacer = RealTimePacer(cfg.real_time_factor, sim.timestep, MAX_LAG_S, time.monotonic(), sim.time)
        while not self._stop.is_set() and rclpy.ok():
            sleep_s, steps, lagging = pacer.next(time.monotonic(), sim.time, self.schedule.next_due())
            if sleep_s:
                time.sleep(sleep_s)
                continue
            if lagging:
                self.get_logger().warning("simulation slower than real time", throttle_duration_sec=10.0)
            with self.lock:
                sim.step(steps)
                due = self.schedule.pop_due(sim.time)
                data = self._collect(due)
            try:
                self._publish(data)
            except RuntimeError:  # rclpy RCLError
                if rclpy.ok():
                    raise
                return  # the context was shut down (Ctrl-C) between the check and the publish

    def _collect(self, due: set[str]) -> dict:
        """Read what is due from the simulator (under the lock); publishing happens outside it."""
        cfg, sim, out = self.config, self.sim, {"t": self.sim.time}
        if "camera" in due:
            out["rgb"] = sim.render_camera(cfg.camera_width, cfg.camera_height)  # [H, W, 3]
        if "laser" in due:
            out["scan"] = sim.laser_scan()  # [beams]
        if "odom" in due:
            out["odom"] = sim.odometry()
            names, pos, _ = sim.joint_states()
            out["joint_positions"] = dict(zip(names, pos))  # the URDF's moving joints on /tf
        if "joints" in due:
            out["joints"] = sim.joint_states()
        if "truth" in due:
            out["truth"] = sim.ground_truth()
        if "objects" in due:
            out["objects"] = sim.objects()
        out["clock"] = "clock" in due
        return out

    def _publish(self, d: dict) -> None:
        cfg, t = self.config, d["t"]
        if d["clock"]:
            self.pub_clock.publish(rm.clock(t))
        if "rgb" in d:
            if self.pub_image is not None:
                self.pub_image.publish(rm.image(d["rgb"], t, cfg.camera_optical_frame))
            if self.pub_jpeg is not None:
                jpeg = rm.compressed_image(d["rgb"], t, cfg.camera_optical_frame, cfg.jpeg_quality)
                if jpeg is not None:
                    self.pub_jpeg.publish(jpeg)
            self.info.header.stamp = rm.stamp(t)
            self.pub_info.publish(self.info)
        if "scan" in d:
            self.pub_scan.publish(rm.laser_scan(d["scan"], self.sim.laser, t, cfg.laser_frame, cfg.laser_rate))
        if "odom" in d:
            self.pub_odom.publish(rm.odometry(d["odom"], t, cfg.odom_frame, cfg.base_frame))
            if self.pub_tf is not None:
                self.pub_tf.publish(self._tf_type(transforms=rm.robot_transforms(
                    self.sim.robot, d["odom"], d["joint_positions"], t, cfg)))
        if "joints" in d:
            self.pub_joints.publish(rm.joint_state(*d["joints"], t))
        if "truth" in d:
            self.pub_truth.publish(rm.odometry(d["truth"], t, cfg.world_frame, cfg.base_frame))
        if "objects" in d:
            self.pub_objects.publish(rm.objects_json(d["objects"], self.sim.layout.areas, t, cfg.world_frame))


def main(args: list[str] | None = None) -> int:
    # The callbacks (cmd_vel, three short services) never block, so one executor thread is enough;
    # physics runs in the node's own stepping thread.
    return run_node("sim_node", SimNode, argv=args, config_errors=(SimConfigError, ScenarioError, RobotConfigError),
                    start=lambda node, _stop: node.start(), on_stop=lambda node: node.stop())


if __name__ == "__main__":
    sys.exit(main())
