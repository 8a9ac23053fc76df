"""A blob -> a detected object in the base frame: where it stands, how big it is, what shape.

Range (the camera is only ~0.2 m above the floor, so it matters most):
- solid objects: the lowest silhouette point is the object's nearest foot point on the floor
  (for a box or a cylinder; the floor plane gives its distance), and the centre lies one
  footprint half-width beyond it along the centre's bearing (for a square footprint, the
  nearest-point depth equals the half-width seen across: both are a(|cos|+|sin|));
- balls: the foot is hidden under the ball, so the centroid ray is cut with the plane at the
  ball's centre height (its radius, from the apparent width);
- the laser, where a return lies along the object's bearing at the distance the camera
  expects (the laser plane is ~0.16 m up: only tall objects reach it), replaces the camera range;
- a hidden foot (another object below the blob) falls back to the apparent width with the
  shape's nominal size;
- flat areas painted on the floor: the mean floor projection of all their pixels.
Shape: from the metric width and height, the silhouette's roundness and the shading.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from qwen_stack.perception.camera_geometry import (CameraPose, Intrinsics, LaserScan2D, pixel_rays, rays_at_height)
from qwen_stack.perception.config import PerceptionConfig
from qwen_stack.perception.segmentation import Blob

SHAPES = ("cube", "ball", "cylinder", "crate", "square", "object")
NOMINAL_WIDTH = {"cube": 0.09, "ball": 0.1, "cylinder": 0.1, "crate": 0.3}   # m, used when the foot is hidden


@dataclass(frozen=True)
class Detection:
    colour: str
    shape: str                         # one of SHAPES
    shape_confidence: float            # 0..1
    x: float                           # centre, base frame (floor level), m
    y: float
    width: float                       # footprint width across the line of sight, m
    height: float                      # m (0 for floor areas)
    solid: bool
    range_source: str                  # floor | laser | ball | width | area
    confidence: float                  # 0..1, of the position
    box: tuple[int, int, int, int]     # pixel bounding box (left, top, right, bottom)

    @property
    def distance(self) -> float:
        return math.hypot(self.x, self.y)


def _horizontal(d: np.ndarray) -> np.ndarray:
    v = d[:2]
    return v / max(float(np.linalg.norm(v)), 1e-12)


def estimate(blob: Blob, cam: Intrinsics, pose: CameraPose, cfg: PerceptionConfig,
             laser: LaserScan2D | None) -> Detection | None:
    """The object behind one blob, or None when the blob cannot be a floor object (above the horizon)."""
    cols = np.array([blob.bottom_point[0], blob.centroid[0], blob.left, blob.right + 1.0, blob.centroid[0]])
    rows = np.array([blob.bottom_point[1], blob.centroid[1], blob.bottom_point[1], blob.bottom_point[1], blob.top])
    rays = pixel_rays(cols, rows, cam, pose)           # [5, 3]: foot, centroid, left edge, right edge, top
    foot = rays_at_height(pose, rays[:1], 0.0)[0]
    if not np.all(np.isfinite(foot)):
        return None                                    # lowest point above the horizon: sky, wall top
    cam_xy = pose.origin[:2]
    bearing_dir = _horizontal(rays[1])                 # towards the centroid
    half_angle = 0.5 * abs(math.atan2(rays[2][1], rays[2][0]) - math.atan2(rays[3][1], rays[3][0]))
    half_angle = min(half_angle, 1.2)
    t = math.tan(half_angle)
    front = float(np.linalg.norm(foot - cam_xy))
    w_half = front * t / max(1.0 - t, 0.05)            # half-width of a footprint whose near side is at `front`
    # height: the top row's ray at the far side of the footprint (for a prism, the top's far edge)
    far = front + 2 * w_half
    top_h = _ray_height_at(pose, rays[4], far)
    height = max(0.0, top_h)
    box = (blob.left, blob.top, blob.right, blob.bottom)

    # cut by the image's side, a flat area's width is too small and its height reads too big
    flat_limit = cfg.flat_max_height * (1.3 if blob.touches_border else 1.0)
    if height < flat_limit and blob.foot_visible:
        return _area(blob, cam, pose, box)

    shape, shape_conf = classify(blob, 2 * w_half, height, cfg)
    source = "floor"
    centre = front + w_half
    if not blob.foot_visible:
        # the foot is behind something: range from the apparent width and the shape's usual size
        w_nom = NOMINAL_WIDTH.get(shape, 0.1)
        centre = (w_nom / 2) / max(t, 1e-3)
        w_half, source = w_nom / 2, "width"
    elif shape == "ball":
        centre, w_half = _ball_range(pose, rays[1], t, centre)
        source = "ball"
    cx, cy = cam_xy + bearing_dir * centre
    if laser is not None:
        lx, ly = laser.origin_xy
        dist_l = math.hypot(cx - lx, cy - ly)
        b = math.atan2(cy - ly, cx - lx)
        half = math.atan2(w_half, max(dist_l, 1e-3)) * 0.8
        r = laser.range_at(b, half)
        if r is not None and abs((r + w_half) - dist_l) < max(0.15, 0.2 * dist_l):
            # the object's visible faces in the scan: their mean, pushed back by most of a
            # half-width (a face seen square on: its centre is a half-depth in front of the centre)
            pts = laser.points_between(b, half, r - 0.01, r + 1.5 * w_half + 0.02)
            if len(pts) >= 3:
                mx, my = pts.mean(axis=0)
                dm = math.hypot(mx - lx, my - ly)
                bm = math.atan2(my - ly, mx - lx)
                dl = dm + 0.85 * w_half
                cx, cy = lx + dl * math.cos(bm), ly + dl * math.sin(bm)
            else:
                dl = r + w_half
                cx, cy = lx + dl * math.cos(b), ly + dl * math.sin(b)
            source = "laser"
    dist = math.hypot(cx - cam_xy[0], cy - cam_xy[1])
    conf = _position_confidence(blob, dist, source)
    return Detection(blob.colour, shape, shape_conf, float(cx), float(cy), 2 * w_half, height, True, source,
                     conf, box)


def _ray_height_at(pose: CameraPose, ray: np.ndarray, horizontal_distance: float) -> float:
    hd = float(np.linalg.norm(ray[:2]))
    if hd < 1e-9:
        return 0.0
    return float(pose.origin[2] + ray[2] * horizontal_distance / hd)


def _ball_range(pose: CameraPose, centroid_ray: np.ndarray, t: float, guess: float) -> tuple[float, float]:
    """Distance to a ball's centre along the centroid bearing, and its radius: the centroid ray at
    the height of the radius, the radius from the apparent half-angle (fixed point, 4 rounds)."""
    hd = float(np.linalg.norm(centroid_ray[:2]))
    d, r = guess, guess * t
    for _ in range(4):
        r = d * math.sin(math.atan(t))                  # a sphere of radius r at distance d subtends asin(r/d)
        if centroid_ray[2] >= -1e-9:
            break
        d_new = (pose.origin[2] - r) / -centroid_ray[2] * hd
        if not math.isfinite(d_new) or d_new <= 0:
            break
        d = d_new
    return d, r


def _area(blob: Blob, cam: Intrinsics, pose: CameraPose, box) -> Detection | None:
    """A flat area: its outline projected onto the floor; the centre is that polygon's centroid
    (a mean over pixels would weigh the near side, which has more pixels per square metre)."""
    contours, _ = cv2.findContours(blob.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)[:, 0, :].astype(float)   # [N, 2] (col, row) of boundary pixels
    rays = pixel_rays(c[:, 0] + blob.left + 0.5, c[:, 1] + blob.top + 0.5, cam, pose)
    pts = rays_at_height(pose, rays, 0.0)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 3:
        return None
    x, y = pts[:, 0], pts[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    a = cross.sum() / 2
    if abs(a) < 1e-6:
        cx, cy = pts.mean(axis=0)
    else:
        cx = float(((x + np.roll(x, -1)) * cross).sum() / (6 * a))
        cy = float(((y + np.roll(y, -1)) * cross).sum() / (6 * a))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    left_cut, right_cut = blob.left == 0, blob.right >= cam.width - 1
    if left_cut != right_cut:
        cx, cy = _uncut_square_centre(pts, (cx, cy), pose, toward_left=left_cut)
    dist = math.hypot(cx - pose.origin[0], cy - pose.origin[1])
    conf = _position_confidence(blob, dist, "area")
    return Detection(blob.colour, "square", 0.9 if not blob.touches_border else 0.6, float(cx), float(cy),
                     float(max(hi - lo)), 0.0, False, "area", conf, box)


def _uncut_square_centre(pts: np.ndarray, centroid, pose: CameraPose, toward_left: bool) -> tuple[float, float]:
    """Centre of a square area whose outline is cut by the image's left or right edge. Along the
    line of sight the whole square is visible: its depth extent gives the side (between s and
    s*sqrt(2) for any yaw: divided by 1.2); across it, the extreme away from the cut is the
    square's own, and the centre lies half a side beyond it towards the cut."""
    c = np.asarray(centroid, float)
    u = c - pose.origin[:2]
    u /= max(float(np.linalg.norm(u)), 1e-9)                   # along the line of sight
    v = np.array([-u[1], u[0]]) if toward_left else np.array([u[1], -u[0]])   # across, towards the cut
    rel = pts - pose.origin[:2]
    along, across = rel @ u, rel @ v
    side = (along.max() - along.min()) / 1.2
    if across.max() - across.min() >= side:
        return float(c[0]), float(c[1])                         # cut little: the outline is the square
    centre = pose.origin[:2] + u * (along.max() + along.min()) / 2 + v * (across.min() + side / 2)
    return float(centre[0]), float(centre[1])


def classify(blob: Blob, width: float, height: float, cfg: PerceptionConfig) -> tuple[str, float]:
    """Shape class of a solid blob and a confidence in 0..1 (rules on metric size and silhouette).

    A ball's silhouette is a disc (fills ~pi/4 of its box) with smooth shading; a cube's is a
    hexagon or a square (fills >= 0.85) with flat faces; a cylinder stands taller than wide.
    """
    if blob.touches_border and blob.area < 40:
        return "object", 0.0             # a sliver at the image border: too little to tell
    if width >= cfg.crate_min_size or height >= cfg.crate_min_size:
        return "crate", 0.9
    if blob.touches_border:              # cut at the border: the width and the fill say little, the height does
        if height >= 0.13:
            return "cylinder", 0.7
        if blob.shade_flatness >= 0.6:
            return "cube", 0.6
        return ("ball", 0.6) if blob.shade_flatness <= 0.1 else ("object", 0.0)
    aspect = height / max(width, 1e-3)
    if aspect >= 1.15:
        return "cylinder", min(1.0, 0.6 + 2 * (aspect - 1.15))
    ball_score = (0.84 - blob.fill) * 10 + (0.25 - blob.shade_flatness) * 2
    if ball_score > 0:
        return "ball", min(1.0, 0.55 + ball_score)
    return "cube", min(1.0, 0.55 - ball_score)


def _position_confidence(blob: Blob, dist: float, source: str) -> float:
    c = 0.95 if source in ("laser", "area") else 0.9 if source in ("floor", "ball") else 0.6
    c *= max(0.3, 1.0 - 0.1 * max(0.0, dist - 1.0))    # farther: fewer pixels per centimetre
    if blob.touches_border:
        # cut by the image edge: an area's centre is then that of its visible part (off by up to
        # half its size), an object's width too small; a whole view later outweighs this one
        c *= 0.3 if source == "area" else 0.7
    return round(min(1.0, c), 3)
