"""Grounding: a point the model names in the camera image -> a goal pose in the odom frame.

Qwen3.5 answers points in 0-1000 image coordinates (x to the right, y down, independent of
the image size). Frames (REP 103): base_link x forward, y left, z up, `base_height` above the
floor (the wheel axle); the camera's pan axis sits at `CameraMount.xyz` in base_link, the camera
turns by `pan` about z and is pitched down by `pitch`; its optical centre is `lens_x` ahead of the
pan axis along the pitched camera x, its optical axis is camera x. All of it comes from the robot
description (CameraMount.of_robot). Pinhole intrinsics come from sensor_msgs/CameraInfo.

The range along the pixel's ray is the nearest of
- the laser: the beam closest to the ray's bearing (seen from the laser origin), for things
  that stand up from the floor (objects, walls);
- the floor plane z = 0: for things painted on the floor, which the laser does not see.
Pure functions; errors are returned as strings, never raised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from qwen_stack.geometry import CameraIntrinsics, Pose2D, wrap_angle


@dataclass(frozen=True)
class CameraMount:
    """Where the camera is; no defaults, so that no part of it can be forgotten (the floor is
    base_height + xyz[2] below the pan axis, not xyz[2]: go_to_point once stopped short for that)."""
    xyz: tuple[float, float, float]   # camera pan axis in base_link, metres
    pitch: float                      # radians, + looks down
    base_height: float                # base_link above the floor, metres
    lens_x: float                     # optical centre ahead of the pan axis along the pitched camera x, metres

    @staticmethod
    def of_robot(robot) -> "CameraMount":
        """From the robot description (qwen_stack.robot.RobotSpec)."""
        return CameraMount(tuple(robot.camera_xyz), robot.camera_pitch, robot.base_height, robot.camera_lens_x)

    def optical_centre(self, pan: float) -> tuple[float, float, float]:
        """The optical centre at camera pan `pan`: (x, y) in base_link, height above the floor."""
        ahead = self.lens_x * math.cos(self.pitch)   # the lens, pitched down, sits a little lower and nearer
        return (self.xyz[0] + ahead * math.cos(pan), self.xyz[1] + ahead * math.sin(pan),
                self.base_height + self.xyz[2] - self.lens_x * math.sin(self.pitch))


@dataclass(frozen=True)
class LaserReading:
    origin_xy: tuple[float, float]    # laser origin in base_link, metres
    angle_min: float
    angle_increment: float
    ranges: Sequence[float]
    range_min: float
    range_max: float


@dataclass(frozen=True)
class GroundedGoal:
    target_base: tuple[float, float]   # the named point, base_link
    target_odom: tuple[float, float]   # the named point, odom
    goal: Pose2D                       # where to drive (odom), stand-off before the target
    source: str                        # "laser" | "floor"
    range_m: float                     # distance from the camera along the floor plane


def pixel_of_point(x_1000: float, y_1000: float, cam: CameraIntrinsics) -> tuple[float, float]:
    """0-1000 coordinates -> pixel (u, v)."""
    return x_1000 / 1000.0 * cam.width, y_1000 / 1000.0 * cam.height


def ray_in_base(u: float, v: float, cam: CameraIntrinsics, mount: CameraMount, pan: float) -> tuple[float, float, float]:
    """Unit direction (base_link) of the ray through pixel (u, v)."""
    # optical: right = (u - cx)/fx, down = (v - cy)/fy, forward = 1 -> camera frame (x fwd, y left, z up)
    fwd, left, up = 1.0, -(u - cam.cx) / cam.fx, -(v - cam.cy) / cam.fy
    cp, sp = math.cos(mount.pitch), math.sin(mount.pitch)  # pitch down about camera y
    fwd, up = fwd * cp + up * sp, -fwd * sp + up * cp
    c, s = math.cos(pan), math.sin(pan)
    dx, dy, dz = fwd * c - left * s, fwd * s + left * c, up
    n = math.sqrt(dx * dx + dy * dy + dz * dz)
    return dx / n, dy / n, dz / n


def _laser_range_along(origin: tuple[float, float], ray_origin: tuple[float, float], bearing: float,
                       laser: LaserReading) -> float | None:
    """Horizontal distance from ray_origin to the laser hit nearest the ray, or None."""
    # Iterate: the laser sees the target from its own origin, at a slightly different bearing.
    dist = 1.0
    for _ in range(4):
        px = ray_origin[0] + dist * math.cos(bearing) - origin[0]
        py = ray_origin[1] + dist * math.sin(bearing) - origin[1]
        beam = math.atan2(py, px)
        i = int(round((beam - laser.angle_min) / laser.angle_increment))
        if not 0 <= i < len(laser.ranges):
            return None
        r = laser.ranges[i]
        if not (math.isfinite(r) and laser.range_min <= r <= laser.range_max):
            return None
        hx, hy = origin[0] + r * math.cos(beam), origin[1] + r * math.sin(beam)
        new = math.hypot(hx - ray_origin[0], hy - ray_origin[1])
        if abs(new - dist) < 1e-3:
            return new
        dist = new
    return dist


def ground_point(x_1000: float, y_1000: float, cam: CameraIntrinsics, mount: CameraMount, pan: float,
                 laser: LaserReading | None, odom: Pose2D, standoff: float) -> GroundedGoal | str:
    """Turn a named image point into an odom-frame goal `standoff` metres short of it."""
    if not (0 <= x_1000 <= 1000 and 0 <= y_1000 <= 1000):
        return f"point ({x_1000}, {y_1000}) is outside the image (0-1000 each)"
    if cam.fx <= 0 or cam.fy <= 0 or cam.width <= 0 or cam.height <= 0:
        return "camera intrinsics are not valid (no CameraInfo yet?)"
    u, v = pixel_of_point(x_1000, y_1000, cam)
    dx, dy, dz = ray_in_base(u, v, cam, mount, pan)
    horiz = math.hypot(dx, dy)
    if horiz < 1e-6:
        return "the point is straight below the camera"
    bearing = math.atan2(dy, dx)
    cx, cy, height = mount.optical_centre(pan)
    cam_xy = (cx, cy)
    candidates: list[tuple[float, str]] = []
    if dz < -1e-6:  # ray goes down: it meets the floor, `height` below the optical centre
        t = height / -dz
        candidates.append((t * horiz, "floor"))
    if laser is not None:
        r = _laser_range_along(laser.origin_xy, cam_xy, bearing, laser)
        if r is not None:
            candidates.append((r, "laser"))
    if not candidates:
        return "nothing found along that point's ray (above the horizon and no laser return)"
    rng, source = min(candidates)
    tx, ty = cam_xy[0] + rng * math.cos(bearing), cam_xy[1] + rng * math.sin(bearing)
    # goal: stand-off short of the target along the line from the base origin, facing it
    d = math.hypot(tx, ty)
    heading = math.atan2(ty, tx)
    back = min(standoff, d)
    gx, gy = tx - back * math.cos(heading), ty - back * math.sin(heading)
    ox, oy = odom.to_odom(gx, gy)
    return GroundedGoal((tx, ty), odom.to_odom(tx, ty), Pose2D(ox, oy, wrap_angle(odom.yaw + heading)), source, rng)


def object_key(name: str) -> str:
    """A name as the model may write it ("Red cube ") in perception's form (red_cube)."""
    return name.strip().lower().replace(" ", "_")


def approach_pose(robot: Pose2D, target_xy: tuple[float, float], standoff: float) -> Pose2D:
    """Pose `standoff` metres short of target on the line from the robot, facing the target."""
    dx, dy = target_xy[0] - robot.x, target_xy[1] - robot.y
    heading = math.atan2(dy, dx) if math.hypot(dx, dy) > 1e-9 else robot.yaw
    return Pose2D(target_xy[0] - standoff * math.cos(heading), target_xy[1] - standoff * math.sin(heading), heading)


def world_to_odom(point_world: tuple[float, float], base_in_world: Pose2D, base_in_odom: Pose2D) -> tuple[float, float]:
    """A world-frame point in the odom frame, given the base pose in both at the same instant."""
    return base_in_odom.to_odom(*base_in_world.to_base(*point_world))
