"""perception_node: camera + CameraInfo + laser + odometry + pan -> perception/objects (memory in odom).

Subscribes camera/image_raw, camera/camera_info, scan, odom, joint_states and gripper/held; publishes
perception/objects (qwen_stack_interfaces/DetectedObjects), perception/image_annotated (rgb8,
boxes and labels) and perception/markers (MarkerArray of the memory), and a status on
/diagnostics once a second. Decisions live in pipeline.py / memory.py; this is wiring.
Nothing here reads the simulator's ground truth.
"""
from __future__ import annotations

import math
import sys
import threading
import time

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState, LaserScan
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from qwen_stack import topics
from qwen_stack.node_main import run_node
from qwen_stack.node_parameters import declare_parameters
from qwen_stack.perception.camera_geometry import LaserScan2D
from qwen_stack.perception.config import NODE_PARAMETERS, PerceptionConfigError, config_from_dict, parameter_defaults
from qwen_stack.geometry import CameraIntrinsics, Pose2D, quaternion_of_yaw, yaw_of
from qwen_stack.perception.memory import MemoryEntry
from qwen_stack.perception.pipeline import FrameResult, Perceiver, annotate
from qwen_stack.perception.sensor_sync import TimedSeries
from qwen_stack.images import decode_raw
from qwen_stack.robot import RobotConfigError, load_robot

RGB = {"red": (0.9, 0.1, 0.1), "orange": (1.0, 0.5, 0.0), "yellow": (0.95, 0.85, 0.1), "green": (0.1, 0.75, 0.2),
       "blue": (0.1, 0.2, 0.9), "grey": (0.5, 0.5, 0.55)}


def _t(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _stamp(msg_stamp_type, t: float):
    s = msg_stamp_type()
    s.sec = int(math.floor(t))
    s.nanosec = int(round((t - math.floor(t)) * 1e9)) % 1_000_000_000
    return s


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__("perception")
        from builtin_interfaces.msg import Time
        from qwen_stack_interfaces.msg import DetectedObject, DetectedObjects

        self._Time, self._Obj, self._Objs = Time, DetectedObject, DetectedObjects
        values = declare_parameters(self, parameter_defaults())
        own = {name: values.pop(name) for name in NODE_PARAMETERS}
        self.cfg = config_from_dict(values, load_robot(own["robot_file"]))
        self.max_rate = float(own["max_rate"])
        if not (math.isfinite(self.max_rate) and self.max_rate > 0):
            raise PerceptionConfigError(f"perception parameter 'max_rate': must be > 0 (got {self.max_rate})")
        self.frame_id = str(own["odom_frame"])
        self.publish_annotated = bool(own["publish_annotated"])

        self.perceiver = Perceiver(self.cfg)
        self.odom = TimedSeries(angle_index=(2,))
        self.pan = TimedSeries(angle_index=(0,))
        self.cam: CameraIntrinsics | None = None
        self.laser: LaserScan2D | None = None
        self._lock = threading.Lock()             # one frame at a time; the memory is not shared otherwise
        self._pending = None                      # (Image, monotonic receipt) waiting for odometry and pan
        self._logged: dict = {}                   # memory as last logged (id -> name, gone, x, y)
        self.last_frame_wall = -math.inf          # monotonic time of the last frame taken
        self.status = {"level": DiagnosticStatus.WARN, "message": "no camera frame yet"}
        self.frames_used = self.frames_refused = self.frames_skipped_moving = 0

        sd = qos_profile_sensor_data
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, sd)
        self.create_subscription(CameraInfo, topics.CAMERA_INFO, self._on_info, sd)
        self.create_subscription(LaserScan, topics.SCAN, self._on_scan, sd)
        self.create_subscription(Odometry, topics.ODOM, self._on_odom, sd)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_joints, sd)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, topics.GRIPPER_HELD, self._on_held, latched)
        self.pub_objects = self.create_publisher(DetectedObjects, topics.PERCEPTION_OBJECTS, 10)
        self.pub_image = self.create_publisher(Image, topics.PERCEPTION_IMAGE_ANNOTATED, sd)
        self.pub_markers = self.create_publisher(MarkerArray, topics.PERCEPTION_MARKERS, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.create_timer(1.0, self._diagnostics)
        self.create_timer(0.02, self._try_pending)
        self.get_logger().info(f"perception: {len(self.cfg.colours)} colours, at most {self.max_rate:g} frames/s")

    # ---- sensors ------------------------------------------------------------------------------
    def _on_info(self, m: CameraInfo) -> None:
        cam = CameraIntrinsics.from_camera_info(list(m.k), m.width, m.height)
        if isinstance(cam, str):
            self.cam = None
            self._problem(DiagnosticStatus.ERROR, cam)
        else:
            self.cam = cam

    def _on_scan(self, m: LaserScan) -> None:
        self.laser = LaserScan2D(tuple(self.cfg.robot.laser_xyz[:2]), m.angle_min, m.angle_increment,
                                 np.asarray(m.ranges, dtype=float), m.range_min, m.range_max, _t(m.header.stamp))

    def _on_odom(self, m: Odometry) -> None:
        p, q = m.pose.pose.position, m.pose.pose.orientation
        yaw = yaw_of(q)
        self.odom.push(_t(m.header.stamp), (p.x, p.y, yaw))

    def _on_joints(self, m: JointState) -> None:
        name = self.cfg.robot.camera_pan_joint
        if name and name in m.name:
            i = list(m.name).index(name)
            if i < len(m.position):
                self.pan.push(_t(m.header.stamp), (m.position[i],))

    def _on_held(self, m: String) -> None:
        """The gripper's report: the held object leaves the floor memory; on release it is back,
        where the gripper put it."""
        t = self.odom.latest_time()
        pose = self.odom.at(t, self.cfg.sensor_timeout) if t is not None else None
        if pose is None:
            self.get_logger().warning(f"gripper reports {m.data!r} before any odometry: memory not updated")
            return
        with self._lock:
            if m.data:
                e = self.perceiver.hold(Pose2D(*pose), m.data)
                self.get_logger().info(f"memory: {e.name if e else 'nothing remembered'} held ({m.data!r} by the gripper)")
            else:
                e = self.perceiver.release(Pose2D(*pose))
                if e is not None:
                    self.get_logger().info(f"memory: {e.name} released at ({e.x:.2f}, {e.y:.2f})")

    # ---- frames ---------------------------------------------------------------------------------
    def _on_image(self, m: Image) -> None:
        # max_rate is a CPU budget, so it counts wall time (a simulator faster than real time sends more)
        now = time.monotonic()
        if now - self.last_frame_wall < 1.0 / self.max_rate:
            return
        self.last_frame_wall = now
        # A frame waits until odometry and the pan joint have spoken for its instant (they travel on
        # their own topics and may arrive after it); a newer frame replaces one still waiting.
        self._pending = (m, time.monotonic())
        self._try_pending()

    def _try_pending(self) -> None:
        if self._pending is None:
            return
        m, since = self._pending
        t = _t(m.header.stamp)
        covered = (self.odom.latest_time() or -math.inf) >= t and (
            not self.cfg.robot.camera_pan_joint or (self.pan.latest_time() or -math.inf) >= t)
        if not covered and time.monotonic() - since < self.cfg.sensor_timeout:
            return                                # the timer tries again
        self._pending = None
        self._process(m, t)

    def _process(self, m: Image, t: float) -> None:
        with self._lock:
            rgb = decode_raw(m.width, m.height, m.encoding, m.step, bytes(m.data))
            if isinstance(rgb, str):
                self._refuse(f"camera frame refused: {rgb}")
                return
            if m.encoding not in ("rgb8", "bgr8"):
                self._refuse(f"camera frame refused: encoding {m.encoding!r} carries no colour perception "
                             "can trust (expected rgb8 or bgr8)")
                return
            tol = self.cfg.sensor_timeout
            pose = self.odom.at(t, tol)
            pan = self.pan.at(t, tol) if self.cfg.robot.camera_pan_joint else (0.0,)
            if self._moving_too_fast(t):
                self.frames_skipped_moving += 1      # not an error: the next still frame is used
                return
            res = self.perceiver.process(rgb, t, self.cam, pan[0] if pan else None,
                                         Pose2D(*pose) if pose else None, self.laser)
            if res.error:
                self._refuse(res.error)
                return
            self.frames_used += 1
            self._log_memory_changes()
            if res.notes:
                self._problem(DiagnosticStatus.WARN, "; ".join(res.notes))
            else:
                self.status = {"level": DiagnosticStatus.OK, "message": f"{len(res.detections)} objects in view"}
            self._publish(m, t, Pose2D(*pose), rgb, res)

    def _log_memory_changes(self) -> None:
        """One log line per object that appears in memory, is renamed or is marked gone."""
        now = {id(e): (e.name, e.gone, round(e.x, 2), round(e.y, 2)) for e in self.perceiver.memory.entries
               if e.name}   # a tentative entry (seen in one frame) has no name yet
        for k, (name, gone, x, y) in now.items():
            before = self._logged.get(k)
            if before is None:
                self.get_logger().info(f"memory: new {name} at ({x}, {y})")
            elif before[0] != name:
                self.get_logger().info(f"memory: {before[0]} renamed {name} at ({x}, {y})")
            elif gone and not before[1]:
                self.get_logger().info(f"memory: {name} gone from ({x}, {y})")
            elif before[1] and not gone:
                self.get_logger().info(f"memory: {name} seen again at ({x}, {y})")
        self._logged = now

    def _moving_too_fast(self, t: float) -> str:
        """Why a frame at t is not used for placing objects ('' = it is): a camera swinging on its pan
        joint or a base turning fast makes the pose of the frame too uncertain (a 30 ms error at
        6 rad/s of pan moves an object 1.6 m away by 30 cm)."""
        pan_rate = self.pan.rate_at(t) if self.cfg.robot.camera_pan_joint else 0.0
        if pan_rate is not None and abs(pan_rate) > self.cfg.max_pan_rate:
            return f"camera panning at {pan_rate:.2f} rad/s"
        turn = self.odom.rate_at(t, index=2)
        if turn is not None and abs(turn) > self.cfg.max_turn_rate:
            return f"base turning at {turn:.2f} rad/s"
        return ""

    def _refuse(self, why: str) -> None:
        self.frames_refused += 1
        self._problem(DiagnosticStatus.ERROR, why)

    def _problem(self, level: int, why: str) -> None:
        self.status = {"level": level, "message": why}
        # one call site per severity: rclpy refuses a throttled call site whose severity changes
        if level == DiagnosticStatus.ERROR:
            self.get_logger().error(why, throttle_duration_sec=5.0)
        else:
            self.get_logger().warning(why, throttle_duration_sec=5.0)

    # ---- outputs --------------------------------------------------------------------------------
    def _publish(self, img: Image, t: float, robot: Pose2D, rgb, res: FrameResult) -> None:
        msg = self._Objs()
        msg.header.stamp, msg.header.frame_id = img.header.stamp, self.frame_id
        msg.robot_pose.position.x, msg.robot_pose.position.y = robot.x, robot.y
        _, _, msg.robot_pose.orientation.z, msg.robot_pose.orientation.w = quaternion_of_yaw(robot.yaw)
        entries = self.perceiver.memory.visible()
        msg.objects = [self._object_msg(e) for e in entries]
        self.pub_objects.publish(msg)
        # the markers and the annotated image only when someone watches (RViz, Foxglove, the console)
        if self.pub_markers.get_subscription_count() > 0:
            self.pub_markers.publish(self._markers(entries, img.header.stamp))
        if self.publish_annotated and self.pub_image.get_subscription_count() > 0:
            out = annotate(rgb, res.detections, res.names)
            a = Image(height=out.shape[0], width=out.shape[1], encoding="rgb8", is_bigendian=0, step=out.shape[1] * 3)
            a.header = img.header
            a.data = out.tobytes()
            self.pub_image.publish(a)

    def _object_msg(self, e: MemoryEntry):
        o = self._Obj()
        o.name, o.shape, o.colour, o.solid = e.name, e.shape, e.colour, e.solid
        o.pose.position.x, o.pose.position.y = e.x, e.y
        o.pose.position.z = e.height / 2 if e.solid else 0.0
        o.pose.orientation.w = 1.0
        o.size.x = o.size.y = float(e.width)
        o.size.z = float(e.height) if e.solid else 0.0
        o.confidence = float(e.confidence)
        o.first_seen, o.last_seen = _stamp(self._Time, e.first_seen), _stamp(self._Time, e.last_seen)
        o.times_seen, o.in_view = int(e.times_seen), bool(e.in_view)
        return o

    def _markers(self, entries: list[MemoryEntry], stamp) -> MarkerArray:
        arr = MarkerArray()
        clear = Marker()
        clear.action = Marker.DELETEALL
        arr.markers.append(clear)
        kinds = {"ball": Marker.SPHERE, "cylinder": Marker.CYLINDER}
        for i, e in enumerate(entries):
            body = Marker()
            body.header.frame_id, body.header.stamp = self.frame_id, stamp
            body.ns, body.id = "objects", i
            body.type = kinds.get(e.shape, Marker.CUBE)
            body.pose.position.x, body.pose.position.y = e.x, e.y
            h = max(e.height, 0.005) if e.solid else 0.002
            body.pose.position.z, body.pose.orientation.w = h / 2, 1.0
            body.scale.x = body.scale.y = max(e.width, 0.02)
            body.scale.z = h
            r, g, b = RGB.get(e.colour, (1.0, 1.0, 1.0))
            body.color.r, body.color.g, body.color.b, body.color.a = r, g, b, 1.0 if e.in_view else 0.5
            label = Marker()
            label.header = body.header
            label.ns, label.id, label.type = "names", i, Marker.TEXT_VIEW_FACING
            label.pose.position.x, label.pose.position.y, label.pose.position.z = e.x, e.y, h + 0.08
            label.pose.orientation.w = 1.0
            label.scale.z = 0.08
            label.color.r = label.color.g = label.color.b = label.color.a = 1.0
            label.text = e.name
            arr.markers += [body, label]
        return arr

    def _diagnostics(self) -> None:
        st = DiagnosticStatus(level=self.status["level"], name=f"{self.get_fully_qualified_name()}: perception",
                              message=self.status["message"], hardware_id="camera+laser")
        st.values = [KeyValue(key="frames_used", value=str(self.frames_used)),
                     KeyValue(key="frames_refused", value=str(self.frames_refused)),
                     KeyValue(key="frames_skipped_moving", value=str(self.frames_skipped_moving)),
                     KeyValue(key="objects_in_memory", value=str(len(self.perceiver.memory.visible()))),
                     KeyValue(key="camera_info", value="yes" if self.cam is not None else "no")]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args: list[str] | None = None) -> int:
    cv2.setNumThreads(1)   # small images: OpenCV's thread pool costs more than it saves on 2 shared cores
    # One executor thread: callbacks are short except a frame's processing (a few ms); frames
    # that arrive meanwhile replace the one waiting, so work never queues up.
    return run_node("perception_node", PerceptionNode, argv=args, config_errors=(PerceptionConfigError, RobotConfigError))


if __name__ == "__main__":
    sys.exit(main())
