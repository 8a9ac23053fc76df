"""skills_node: the robot skills the planner calls, as ROS services (a real robot replaces this node).

drive_distance, rotate and go_to_pose run a closed-loop controller (sim/skill_control.py) on
odometry and publish velocity on AUTONOMY_CMD_VEL, the safety supervisor's input; this node never
publishes BASE_CMD_VEL. grasp, release and look_at forward to the simulator's services;
describe_state reports odometry, pan, the held object and the last skill's outcome as JSON.
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.client import Client
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String

from qwen_stack import topics
from qwen_stack.geometry import yaw_of
from qwen_stack.node_main import run_node
from qwen_stack.node_parameters import settings_from_node
from qwen_stack.robot import RobotConfigError, load_robot
from qwen_stack.sim.config import SimConfigError, SkillsNodeConfig
from qwen_stack.sim.skill_run import SkillRun, expected_drive_s, expected_go_to_pose_s, expected_rotate_s
from qwen_stack.topics import SIM_ATTACH, SIM_DETACH, SIM_SET_PAN
from qwen_stack.sim.skill_control import (DriveDistanceController, GoToPoseController, Pose2D, RotateController,
                                          Twist2D)


PAN_SETTLED_RAD = 0.02       # look_at is done once the pan joint is this close to its target
PAN_SETTLE_TIMEOUT_S = 3.0   # ... or fails after this long (the pan swings 3 rad in well under 1 s)


class SkillsUnavailable(RuntimeError):
    """The interface package is not importable (build ros_ws first)."""


def _interfaces():
    try:
        from qwen_stack_interfaces import srv
    except ImportError as exc:
        raise SkillsUnavailable(f"qwen_stack_interfaces is not importable ({exc}); "
                                "build it with scripts/build_ros_ws.sh") from None
    return srv


class SkillsNode(Node):
    def __init__(self) -> None:
        super().__init__("skills")
        self.config = settings_from_node(self, SkillsNodeConfig)
        self.robot = load_robot(self.config.robot_file)
        self.limits = self.config.limits(self.robot)   # top speeds: the robot's; the rest checked against it
        srv = _interfaces()
        # Skill callbacks block for seconds while they wait for odometry, and odometry (and the sim's
        # service responses) must still be delivered meanwhile: a ReentrantCallbackGroup on a
        # MultiThreadedExecutor lets them run concurrently. Motion skills are serialised by
        # `motion_lock` instead (one at a time; a second one is refused, not queued).
        group = ReentrantCallbackGroup()
        # The sensor subscriptions in a group of their own that runs one callback at a time: in the
        # reentrant group two odometry callbacks could run at once on a loaded host and the older message
        # be stored last (a skill then saw its clock go back by one odometry period and stopped).
        sensors = MutuallyExclusiveCallbackGroup()
        self.pub_cmd = self.create_publisher(Twist, topics.AUTONOMY_CMD_VEL, 10)
        # what the gripper holds ("" = nothing), latched: perception drops the held object from its memory
        self.pub_held = self.create_publisher(
            String, topics.GRIPPER_HELD, QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.pub_held.publish(String(data=""))
        self.create_subscription(Odometry, topics.ODOM, self._on_odom, 10, callback_group=sensors)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_joints, 10, callback_group=sensors)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as the supervisor publishes it
        self.create_subscription(Bool, topics.SAFETY_ESTOP_STATE, self._on_estop, latched, callback_group=group)
        self.estop_latched: bool | None = None  # None: no supervisor heard from
        self.odom_cv = threading.Condition()
        self.odom_pose: Pose2D | None = None
        self.odom_twist = Twist2D(0.0, 0.0)
        self.odom_time = 0.0
        self.odom_seq = 0
        self.pan = 0.0
        self.held: str | None = None
        self.last_result: dict[str, object] = {"skill": None}
        self.motion_lock = threading.Lock()
        self.stopping = threading.Event()   # the process is stopping: motion skills end
        for name, type_, cb in ((topics.SKILL_DRIVE_DISTANCE, srv.DriveDistance, self._drive_distance),
                                (topics.SKILL_ROTATE, srv.Rotate, self._rotate),
                                (topics.SKILL_GO_TO_POSE, srv.GoToPose, self._go_to_pose),
                                (topics.SKILL_GRASP, srv.Grasp, self._grasp),
                                (topics.SKILL_RELEASE, srv.Release, self._release),
                                (topics.SKILL_LOOK_AT, srv.LookAt, self._look_at),
                                (topics.SKILL_DESCRIBE_STATE, srv.DescribeState, self._describe_state)):
            self.create_service(type_, name, cb, callback_group=group)
        self.sim_attach: Client = self.create_client(srv.Grasp, SIM_ATTACH, callback_group=group)
        self.sim_detach: Client = self.create_client(srv.Release, SIM_DETACH, callback_group=group)
        self.sim_pan: Client = self.create_client(srv.LookAt, SIM_SET_PAN, callback_group=group)

    # ---- inputs ---------------------------------------------------------------------------------
    def _on_odom(self, msg: Odometry) -> None:
        q = msg.pose.pose.orientation
        yaw = yaw_of(q)
        with self.odom_cv:
            self.odom_pose = Pose2D(msg.pose.pose.position.x, msg.pose.pose.position.y, yaw)
            self.odom_twist = Twist2D(msg.twist.twist.linear.x, msg.twist.twist.angular.z)
            self.odom_time = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            self.odom_seq += 1
            self.odom_cv.notify_all()

    def _on_joints(self, msg: JointState) -> None:
        if self.robot.camera_pan_joint in msg.name:
            self.pan = msg.position[msg.name.index(self.robot.camera_pan_joint)]

    def _on_estop(self, msg: Bool) -> None:
        self.estop_latched = bool(msg.data)

    def _next_odom(self, after_seq: int) -> tuple[int, Pose2D, Twist2D, float] | None:
        """Wait (wall clock, odom_timeout) for an odometry message newer than `after_seq`."""
        with self.odom_cv:
            if not self.odom_cv.wait_for(lambda: self.odom_seq > after_seq or self.stopping.is_set(),
                                         timeout=self.config.odom_timeout) or self.stopping.is_set():
                return None
            return self.odom_seq, self.odom_pose, self.odom_twist, self.odom_time

    def _send(self, twist: Twist2D) -> None:
        msg = Twist()
        msg.linear.x, msg.angular.z = float(twist.linear), float(twist.angular)
        self.pub_cmd.publish(msg)

    # ---- motion skills --------------------------------------------------------------------------
    def _run(self, make_controller, expected_s: float) -> tuple[bool, str, object]:
        """One motion skill: the rules are SkillRun's (sim/skill_run.py); this loop feeds it odometry and sends
        its commands. Always ends with a stop command. make_controller(start_pose) -> (controller, None) or
        (None, error)."""
        if not self.motion_lock.acquire(blocking=False):
            return False, "another motion skill is running", None
        controller = None
        try:
            if self.estop_latched:
                return False, "e-stop latched: motion refused", None
            # Every motion starts from a zero command: after an e-stop reset the supervisor moves a source
            # again only once it has sent zero (re-arm). A skill already running never sends it, so a reset
            # never restarts the motion that was stopped.
            self._send(Twist2D(0.0, 0.0))
            first = self._next_odom(self.odom_seq)  # a fresh message, not one from before the request
            if first is None:
                return False, f"no odometry on {topics.ODOM} within {self.config.odom_timeout} s", None
            seq, pose, velocity, t = first
            controller, err = make_controller(pose)
            if err:
                return False, err, None
            run = SkillRun(controller, t, expected_s, self.config.skill_timeout_margin, self.limits)
            while True:
                tick = run.step(pose, velocity, t, estop_latched=bool(self.estop_latched),
                                stopping=self.stopping.is_set())
                if tick.command is not None:
                    self._send(tick.command)
                if tick.outcome is not None:
                    return (*tick.outcome, controller)
                nxt = self._next_odom(seq)
                if nxt is None:
                    return False, ("the skills node is stopping: stopped" if self.stopping.is_set()
                                   else f"odometry stopped for {self.config.odom_timeout} s: stopped"), controller
                seq, pose, velocity, t = nxt
        finally:
            self._send(Twist2D(0.0, 0.0))
            self.motion_lock.release()

    def _record(self, skill: str, ok: bool, message: str) -> None:
        self.last_result = {"skill": skill, "success": ok, "message": message}
        if ok:  # two call sites: rclpy refuses one call site logging at two severities
            self.get_logger().info(f"{skill}: {message}")
        else:
            self.get_logger().warning(f"{skill}: {message}")

    def _drive_distance(self, req, resp):
        lim = self.limits
        speed, err = DriveDistanceController.check(req.distance, req.speed, lim)
        ok, msg, ctl = (False, err, None) if err else self._run(
            lambda p: (DriveDistanceController(p, req.distance, speed, lim), None),
            expected_drive_s(req.distance, speed, lim))
        resp.success, resp.message = ok, msg
        resp.travelled = float(ctl.travelled) if ctl is not None else 0.0
        self._record("drive_distance", ok, msg)
        return resp

    def _rotate(self, req, resp):
        lim = self.limits
        speed, err = RotateController.check(req.angle, req.speed, lim)
        ok, msg, ctl = (False, err, None) if err else self._run(
            lambda p: (RotateController(p, req.angle, speed, lim), None),
            expected_rotate_s(req.angle, speed, lim))
        resp.success, resp.message = ok, msg
        resp.rotated = float(ctl.rotated) if ctl is not None else 0.0
        self._record("rotate", ok, msg)
        return resp

    def _go_to_pose(self, req, resp):
        lim = self.limits
        goal = Pose2D(req.x, req.y, req.theta)

        def make(pose: Pose2D):
            speed, err = GoToPoseController.check(pose, goal, req.max_speed, lim)
            return (None, err) if err else (GoToPoseController(goal, req.use_theta, speed, lim), None)

        start = self.odom_pose or Pose2D(0.0, 0.0, 0.0)
        finite = all(map(math.isfinite, (goal.x, goal.y, req.max_speed))) and req.max_speed >= 0
        dist = math.hypot(goal.x - start.x, goal.y - start.y) if finite else 0.0
        speed = (req.max_speed or lim.default_linear) if finite else lim.default_linear
        ok, msg, _ = self._run(make, expected_go_to_pose_s(dist, speed, lim))
        pose = self.odom_pose or start
        resp.success, resp.message = ok, msg
        resp.final_pose.x, resp.final_pose.y, resp.final_pose.theta = pose.x, pose.y, pose.yaw
        self._record("go_to_pose", ok, msg)
        return resp

    # ---- forwarded to the simulator -------------------------------------------------------------
    def _call(self, client, request):
        """Call a sim service; (response, None) or (None, error)."""
        if not client.wait_for_service(timeout_sec=self.config.sim_service_timeout):
            return None, f"service {client.srv_name} is not available"
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(self.config.sim_service_timeout):
            future.cancel()
            return None, f"service {client.srv_name} did not answer in {self.config.sim_service_timeout} s"
        return future.result(), None

    def _grasp(self, req, resp):
        out, err = self._call(self.sim_attach, type(req)(object_name=req.object_name))
        resp.success, resp.message = (out.success, out.message) if out else (False, err)
        resp.held_object = out.held_object if out else ""
        if resp.success:
            self.held = resp.held_object
            self.pub_held.publish(String(data=self.held))
        self._record("grasp", resp.success, resp.message)
        return resp

    def _release(self, req, resp):
        out, err = self._call(self.sim_detach, type(req)())
        resp.success, resp.message = (out.success, out.message) if out else (False, err)
        resp.released_object = out.released_object if out else ""
        if resp.success:
            self.held = None
            self.pub_held.publish(String(data=""))
        self._record("release", resp.success, resp.message)
        return resp

    def _look_at(self, req, resp):
        if not math.isfinite(req.pan):
            resp.success, resp.message = False, f"pan must be a finite number, got {req.pan}"
        else:
            out, err = self._call(self.sim_pan, type(req)(pan=req.pan))
            resp.success, resp.message = (out.success, out.message) if out else (False, err)
            if resp.success:
                # done when the camera looks there (joint_states), so a frame taken next shows that view
                end = time.monotonic() + PAN_SETTLE_TIMEOUT_S
                while abs(self.pan - req.pan) > PAN_SETTLED_RAD and time.monotonic() < end:
                    time.sleep(0.02)
                if abs(self.pan - req.pan) > PAN_SETTLED_RAD:
                    resp.success = False
                    resp.message = f"camera pan at {self.pan:.3f} rad, not at {req.pan:.3f} after {PAN_SETTLE_TIMEOUT_S} s"
                else:
                    time.sleep(0.1)               # the last swing damps out
        self._record("look_at", resp.success, resp.message)
        return resp

    def _describe_state(self, req, resp):
        with self.odom_cv:
            pose, twist, t = self.odom_pose, self.odom_twist, self.odom_time
        state = {
            "odom_frame_pose": None if pose is None else {"x": round(pose.x, 3), "y": round(pose.y, 3),
                                                          "theta": round(pose.yaw, 3)},
            "velocity": {"linear": round(twist.linear, 3), "angular": round(twist.angular, 3)},
            "odometry_stamp": round(t, 3),
            "camera_pan": round(self.pan, 3),
            "held_object": self.held,
            "estop_latched": self.estop_latched,
            "moving_skill_running": self.motion_lock.locked(),
            "last_skill": self.last_result,
        }
        resp.success, resp.state_json = pose is not None, json.dumps(state)
        return resp


def main(args: list[str] | None = None) -> int:
    def on_stop(node: SkillsNode) -> None:
        node.stopping.set()            # a running motion skill ends (and sends its own zero) at once
        node._send(Twist2D(0.0, 0.0))  # leave the base stopped: delivered before the process ends
        node.pub_cmd.wait_for_all_acked(Duration(seconds=1.0))
    # Several threads: a skill callback waits on odometry that another thread must deliver.
    return run_node("skills_node", SkillsNode, argv=args,
                    config_errors=(SimConfigError, RobotConfigError, SkillsUnavailable),
                    threads=4, on_stop=on_stop)



if __name__ == "__main__":
    sys.exit(main())
