"""Plain 2-D value types and angle helpers every part shares (no ROS; nav2_collision_monitor's types.hpp
is the model). One definition each, so that the agent, perception, the simulator's skills and the
supervisor can never disagree on what a pose or a yaw means."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Pose2D:
    """A planar pose: position in metres, yaw in radians counter-clockwise from +x."""
    x: float
    y: float
    yaw: float

    def to_odom(self, bx: float, by: float) -> tuple[float, float]:
        """A point in this pose's frame (base_link when the pose is the robot's) -> the pose's parent frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.x + c * bx - s * by, self.y + s * bx + c * by

    def to_base(self, ox: float, oy: float) -> tuple[float, float]:
        """A point in the parent frame -> this pose's frame."""
        dx, dy = ox - self.x, oy - self.y
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return c * dx + s * dy, -s * dx + c * dy


def wrap_angle(a: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def yaw_of_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about +z) of a unit quaternion, radians."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def yaw_of(q) -> float:
    """Yaw of a quaternion with fields x, y, z, w (a geometry_msgs/Quaternion)."""
    return yaw_of_quaternion(q.x, q.y, q.z, q.w)


def quaternion_of_yaw(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by `yaw` about +z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


@dataclass(frozen=True)
class CameraIntrinsics:
    """A pinhole camera: focal lengths and principal point in pixels, image size."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @staticmethod
    def from_camera_info(k: Sequence[float], width: int, height: int) -> "CameraIntrinsics | str":
        """From CameraInfo.k (row-major 3x3); an error string when it cannot describe a camera."""
        if len(k) != 9:
            return f"CameraInfo.k has {len(k)} values, expected 9"
        fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
        if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
            return f"CameraInfo has no valid focal length (fx={fx}, fy={fy}): an uncalibrated camera"
        if width <= 0 or height <= 0:
            return f"CameraInfo has no image size ({width}x{height})"
        return CameraIntrinsics(fx, fy, cx, cy, int(width), int(height))

    def scaled_to(self, width: int, height: int) -> "CameraIntrinsics":
        """The same camera at another image size (CameraInfo for one size, frames of another)."""
        sx, sy = width / self.width, height / self.height
        return CameraIntrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)
