"""Simulator state -> ROS messages (message packages only, no rclpy node), and the frames' geometry.

Frames (REP 103/105): odom -> base_link (odometry), then the URDF's joints (sim/robot_description.py):
base_link -> camera_pan_link (pan) -> camera_link (fixed tilt) -> camera_optical_frame (z forward, x right,
y down), base_link -> laser, base_link -> left/right_wheel.
"""
from __future__ import annotations

import json
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion, TransformStamped
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, LaserScan
from std_msgs.msg import String

from qwen_stack.sim.simulator import BaseState, LaserSpec, ObjectState
from qwen_stack.sim.robot_description import Frames, joint_transform, quat_rpy
from qwen_stack.sim.robot_description import joints as urdf_joints
from qwen_stack.images import encode_jpeg
from qwen_stack.robot import RobotSpec



def stamp(t: float) -> Time:
    sec = int(math.floor(t))
    return Time(sec=sec, nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))



def _quat(q: tuple[float, float, float, float]) -> Quaternion:
    return Quaternion(x=q[0], y=q[1], z=q[2], w=q[3])


def clock(t: float) -> Clock:
    return Clock(clock=stamp(t))


def odometry(state: BaseState, t: float, frame: str, child: str) -> Odometry:
    msg = Odometry()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp(t), frame, child
    msg.pose.pose.position.x, msg.pose.pose.position.y = state.x, state.y
    msg.pose.pose.orientation = _quat(quat_rpy(0.0, 0.0, state.yaw))
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = state.linear, state.angular
    # Planar robot: z, roll and pitch are known exactly; x, y, yaw drift slowly with wheel slip.
    pose_cov = np.diag([1e-4, 1e-4, 1e-9, 1e-9, 1e-9, 4e-4]).reshape(-1)
    twist_cov = np.diag([1e-4, 1e-6, 1e-9, 1e-9, 1e-9, 4e-4]).reshape(-1)
    msg.pose.covariance, msg.twist.covariance = pose_cov.tolist(), twist_cov.tolist()
    return msg


def joint_state(names, positions, velocities, t: float) -> JointState:
    msg = JointState(name=list(names), position=list(positions), velocity=list(velocities))
    msg.header.stamp = stamp(t)
    return msg


def laser_scan(ranges: np.ndarray, spec: LaserSpec, t: float, frame: str, rate: float) -> LaserScan:
    msg = LaserScan(angle_min=spec.angle_min, angle_max=spec.angle_max, angle_increment=spec.angle_increment,
                    time_increment=0.0, scan_time=1.0 / rate, range_min=spec.range_min, range_max=spec.range_max)
    msg.header.stamp, msg.header.frame_id = stamp(t), frame
    msg.ranges = ranges.astype(np.float32).tolist()  # [beams], +inf: no return (REP 117)
    return msg


def image(rgb: np.ndarray, t: float, frame: str) -> Image:
    h, w, _ = rgb.shape  # rgb: [H, W, 3] uint8
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
    msg.header.stamp, msg.header.frame_id = stamp(t), frame
    msg.data = rgb.tobytes()
    return msg


def compressed_image(rgb: np.ndarray, t: float, frame: str, quality: int) -> CompressedImage | None:
    jpeg = encode_jpeg(rgb, quality)
    if jpeg is None:
        return None
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.header.stamp, msg.header.frame_id = stamp(t), frame
    msg.data = jpeg
    return msg


def camera_info(width: int, height: int, intrinsics: tuple[float, float, float, float], frame: str) -> CameraInfo:
    fx, fy, cx, cy = intrinsics
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    msg.header.frame_id = frame
    return msg


def objects_json(objects: list[ObjectState], areas, t: float, frame: str) -> String:
    """JSON of object and floor-area poses in the world frame (tests and the console's map)."""
    doc = {
        "stamp": round(t, 6), "frame_id": frame,
        "held": next((o.name for o in objects if o.held), None),
        "objects": [{"name": o.name, "shape": o.shape, "rgba": list(o.rgba), "x": round(o.x, 4), "y": round(o.y, 4),
                     "z": round(o.z, 4), "yaw": round(o.yaw, 4), "held": o.held} for o in objects],
        "areas": [{"name": a.name, "rgba": list(a.rgba), "x": a.pose.x, "y": a.pose.y, "yaw": a.pose.yaw,
                   "half_size": list(a.half_size)} for a in areas],
    }
    return String(data=json.dumps(doc))


def transform(parent: str, child: str, t: float, xyz, q) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp(t), parent, child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, xyz)
    msg.transform.rotation = _quat(q)
    return msg


def frames_of(cfg) -> Frames:
    """The URDF's frame names from the sim node's frame parameters."""
    return Frames(odom=cfg.odom_frame, base=cfg.base_frame, laser=cfg.laser_frame, camera_pan=cfg.camera_pan_frame,
                  camera=cfg.camera_frame, camera_optical=cfg.camera_optical_frame)


def robot_transforms(robot: RobotSpec, odom: BaseState, joints: dict[str, float], t: float, cfg) -> list[TransformStamped]:
    """The moving transforms: odom -> base_link (odometry), and every moving joint of the URDF at its
    position in `joints` (name -> radians). base_link is the wheel axle's midpoint, wheel_radius above
    the floor (as in the MJCF)."""
    out = [transform(cfg.odom_frame, cfg.base_frame, t, (odom.x, odom.y, robot.wheel_radius),
                     quat_rpy(0.0, 0.0, odom.yaw))]
    for j in urdf_joints(robot, frames_of(cfg)):
        if j.kind != "fixed" and j.name in joints:
            out.append(transform(j.parent, j.child, t, *joint_transform(j, joints[j.name])))
    return out


def static_transforms(robot: RobotSpec, t: float, cfg) -> list[TransformStamped]:
    """The fixed joints of the URDF: base_link -> laser, camera_pan_link -> camera_link (tilt),
    camera_link -> camera_optical_frame."""
    return [transform(j.parent, j.child, t, *joint_transform(j)) for j in urdf_joints(robot, frames_of(cfg))
            if j.kind == "fixed"]
