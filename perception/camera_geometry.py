"""Camera and laser geometry of the robot (pure, numpy).

Frames (REP 103): `base` here is base_link moved down to the floor (x forward, y left, z up,
z = 0 on the floor), so heights are heights above the floor. The camera's pan axis stands at
`camera_pan_axis_xyz`; the camera body turns by `pan` about z, is pitched down by `pitch` (a
rotation about its y axis), and its optical centre sits `optical_offset` ahead of the axis along
the pitched camera x. Optical frame: x right, y down, z forward; pinhole intrinsics (fx, fy, cx,
cy) from CameraInfo, with pixel (col, row) centred at (col + 0.5, row + 0.5).

    camera_from_optical:  fwd = z_o,  left = -x_o,  up = -y_o
    base_from_camera:     R_z(pan) . R_y(pitch)       (R_y(p) . (1, 0, 0) = (cos p, 0, -sin p): down)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from qwen_stack.geometry import CameraIntrinsics


@dataclass(frozen=True)
class CameraPose:
    """Where the camera is, in the floor-level base frame, for one pan angle."""
    origin: np.ndarray        # [3] optical centre
    rotation: np.ndarray      # [3, 3] base_from_optical

    @staticmethod
    def at(pan_axis_xyz: Sequence[float], floor_to_base: float, optical_offset: float, pitch: float,
           pan: float) -> "CameraPose":
        cp, sp, cz, sz = math.cos(pitch), math.sin(pitch), math.cos(pan), math.sin(pan)
        r_pan = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
        r_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        camera_from_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        base_from_camera = r_pan @ r_pitch
        axis = np.array([pan_axis_xyz[0], pan_axis_xyz[1], pan_axis_xyz[2] + floor_to_base])
        origin = axis + base_from_camera @ np.array([optical_offset, 0.0, 0.0])
        return CameraPose(origin, base_from_camera @ camera_from_optical)


def pixel_rays(cols: np.ndarray, rows: np.ndarray, cam: CameraIntrinsics, pose: CameraPose) -> np.ndarray:
    """Unit ray directions [N, 3] in the base frame through image points (col, row) (pixel units,
    continuous: pass col + 0.5 for a pixel's centre)."""
    d = np.stack([(np.asarray(cols, float) - cam.cx) / cam.fx, (np.asarray(rows, float) - cam.cy) / cam.fy,
                  np.ones(np.shape(cols))], axis=-1)  # [N, 3] optical
    d = d @ pose.rotation.T
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def rays_at_height(pose: CameraPose, dirs: np.ndarray, z: float) -> np.ndarray:
    """Where rays [N, 3] reach height z: [N, 2] (x, y), NaN where a ray never gets there going forward."""
    dz = dirs[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (z - pose.origin[2]) / dz
    t = np.where((t > 0) & np.isfinite(t), t, np.nan)
    return pose.origin[:2] + dirs[:, :2] * t[:, None]


def project_points(points: np.ndarray, cam: CameraIntrinsics, pose: CameraPose) -> tuple[np.ndarray, np.ndarray]:
    """Base-frame points [N, 3] -> image (col, row) [N, 2] (continuous) and a mask of those in front."""
    p = (np.asarray(points, float) - pose.origin) @ pose.rotation  # optical coordinates
    front = p[:, 2] > 1e-6
    z = np.where(front, p[:, 2], 1.0)
    uv = np.stack([cam.fx * p[:, 0] / z + cam.cx, cam.fy * p[:, 1] / z + cam.cy], axis=-1)
    return uv, front


@dataclass(frozen=True)
class LaserScan2D:
    """A planar scan as plain values (sensor_msgs/LaserScan)."""
    origin_xy: tuple[float, float]    # laser origin in base, m
    angle_min: float
    angle_increment: float
    ranges: np.ndarray                # [beams], m; inf / nan = no return
    range_min: float
    range_max: float
    stamp: float                      # s, sensor time

    def range_at(self, bearing: float, half_width: float) -> float | None:
        """Nearest valid return within [bearing - half_width, bearing + half_width] (laser frame), or None."""
        hit = self.nearest_return(bearing, half_width)
        return hit[1] if hit is not None else None

    def nearest_return(self, bearing: float, half_width: float) -> tuple[float, float] | None:
        """(bearing, range) of the nearest valid return within bearing +- half_width (a beam's
        bearing unwrapped near `bearing`), or None."""
        if self.angle_increment <= 0 or len(self.ranges) == 0:
            return None
        n = len(self.ranges)
        lo = int(math.floor((bearing - half_width - self.angle_min) / self.angle_increment))
        hi = int(math.ceil((bearing + half_width - self.angle_min) / self.angle_increment))
        k = np.arange(lo, hi + 1) if self._full_circle() else np.arange(max(lo, 0), min(hi, n - 1) + 1)
        if k.size == 0:
            return None
        r = self.ranges[k % n]
        ok = np.isfinite(r) & (r >= self.range_min) & (r <= self.range_max)
        if not ok.any():
            return None
        i = int(np.argmin(np.where(ok, r, np.inf)))
        return float(self.angle_min + self.angle_increment * k[i]), float(r[i])

    def points_between(self, bearing: float, half_width: float, r_lo: float, r_hi: float) -> np.ndarray:
        """Returns [N, 2] (base frame) of the beams within bearing +- half_width whose range lies in
        [r_lo, r_hi]."""
        n = len(self.ranges)
        if self.angle_increment <= 0 or n == 0:
            return np.zeros((0, 2))
        lo = int(math.ceil((bearing - half_width - self.angle_min) / self.angle_increment))
        hi = int(math.floor((bearing + half_width - self.angle_min) / self.angle_increment))
        k = np.arange(lo, hi + 1)
        if not self._full_circle():
            k = k[(k >= 0) & (k < n)]
        ang = self.angle_min + self.angle_increment * k     # unwrapped: the bearing of each beam
        r = self.ranges[k % n]
        ok = np.isfinite(r) & (r >= max(self.range_min, r_lo)) & (r <= min(self.range_max, r_hi))
        ang, r = ang[ok], r[ok]
        return np.stack([self.origin_xy[0] + r * np.cos(ang), self.origin_xy[1] + r * np.sin(ang)], axis=1)

    def surface_from(self, bearing: float, direction: int, max_length: float) -> np.ndarray | None:
        """Base-frame points [N, 2] of the surface the beam nearest `bearing` hits, followed beam by
        beam towards larger (direction +1) or smaller (-1) angles while each return lies within a
        small jump of the previous one (a jump is the gap to whatever stands behind); None when that
        beam has no return, or when the surface runs on for more than `max_length` (a wall, not an
        object)."""
        n = len(self.ranges)
        if self.angle_increment <= 0 or n == 0 or direction not in (1, -1):
            return None
        k0 = int(round((bearing - self.angle_min) / self.angle_increment))
        pts: list[tuple[float, float]] = []
        prev = None
        for step in range(n):
            k = k0 + direction * step
            if not self._full_circle() and not 0 <= k < n:
                break
            r = float(self.ranges[k % n])
            if not (math.isfinite(r) and self.range_min <= r <= self.range_max):
                break
            # neighbouring beams on one face differ by about r * increment * tan(incidence): three
            # increments allow ~70 degrees of incidence and still stop at a gap of a few centimetres
            if prev is not None and abs(r - prev) > max(0.05, 3.0 * r * self.angle_increment):
                break
            a = self.angle_min + self.angle_increment * k
            pts.append((self.origin_xy[0] + r * math.cos(a), self.origin_xy[1] + r * math.sin(a)))
            if math.hypot(pts[-1][0] - pts[0][0], pts[-1][1] - pts[0][1]) > max_length:
                return None
            prev = r
        return np.array(pts) if pts else None

    def _full_circle(self) -> bool:
        return self.angle_increment * len(self.ranges) >= 2 * math.pi - 1e-6

