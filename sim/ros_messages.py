"""Simulator state -> ROS messages (message packages only, no rclpy node), and the frames' geometry.

Frames (REP 103/105): odom -> base_link (odometry), base_link -> camera_link (pan joint + fixed
tilt), camera_link -> camera_optical_frame (z forward, x right, y down), base_link -> laser.
"""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion, TransformStamped
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, LaserScan
from std_msgs.msg import String

from qwen_stack.sim.simulator import BaseState, LaserSpec, ObjectState
from qwen_stack.sim.world import RobotSpec

# camera_link -> camera_optical_frame: roll -pi/2 then yaw -pi/2 (x right, y down, z forward).
OPTICAL_ROTATION = (-0.5, 0.5, -0.5, 0.5)  # (x, y, z, w)


def stamp(t: float) -> Time:
    sec = int(math.floor(t))
    return Time(sec=sec, nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))


def quat_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of the rotation R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)


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
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return None
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.header.stamp, msg.header.frame_id = stamp(t), frame
    msg.data = jpeg.tobytes()
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


def robot_transforms(robot: RobotSpec, odom: BaseState, pan: float, t: float, frames) -> list[TransformStamped]:
    """The moving transforms: odom -> base_link, base_link -> camera_link (pan + tilt).

    base_link is the wheel axle's midpoint, wheel_radius above the floor (as in the MJCF).
    """
    return [
        transform(frames.odom_frame, frames.base_frame, t, (odom.x, odom.y, robot.wheel_radius),
                  quat_rpy(0.0, 0.0, odom.yaw)),
        transform(frames.base_frame, frames.camera_frame, t, robot.camera_xyz,
                  quat_rpy(0.0, math.radians(robot.camera_tilt_deg), pan)),
    ]


def static_transforms(robot: RobotSpec, t: float, frames) -> list[TransformStamped]:
    """The fixed transforms: base_link -> laser, camera_link -> camera_optical_frame."""
    return [
        transform(frames.base_frame, frames.laser_frame, t, robot.laser_xyz, (0.0, 0.0, 0.0, 1.0)),
        transform(frames.camera_frame, frames.camera_optical_frame, t, (0.02, 0.0, 0.0), OPTICAL_ROTATION),
    ]
