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
  an object the image's side cuts is placed from all of its faces in the scan, past the cut;
- a hidden foot (another object below the blob) falls back to the apparent width with the
  shape's nominal size;
- flat areas painted on the floor: the centroid of their outline projected on the floor; an
  outline the image's side cuts: a square fitted to those of its own edges that are seen.
Shape: from the metric width and height, the silhouette's roundness and the shading.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from qwen_stack.geometry import CameraIntrinsics
from qwen_stack.perception.camera_geometry import CameraPose, LaserScan2D, pixel_rays, rays_at_height
from qwen_stack.perception.config import PerceptionConfig
from qwen_stack.perception.segmentation import Blob

SHAPES = ("cube", "ball", "cylinder", "crate", "square", "object")
NOMINAL_WIDTH = {"cube": 0.09, "ball": 0.1, "cylinder": 0.1, "crate": 0.3,   # m, used when the foot is hidden
                 "square": 0.5}        # ... and when an area shows one corner at the image side
SMALL_OBJECT_MAX_WIDTH = 0.15   # m, wider than any cube, ball or cylinder looks (their widths: ~0.08..0.12)


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
    # partly hidden (a floor area behind the held load): it is there and of this shape, but its visible part
    # gives no honest centre or size; memory counts the sighting and keeps its position from whole ones
    partial: bool = False

    @property
    def distance(self) -> float:
        return math.hypot(self.x, self.y)


def _horizontal(d: np.ndarray) -> np.ndarray:
    v = d[:2]
    return v / max(float(np.linalg.norm(v)), 1e-12)


def estimate(blob: Blob, cam: CameraIntrinsics, pose: CameraPose, cfg: PerceptionConfig,
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
    if (blob.touches_border and blob.foot_visible and 2 * w_half > SMALL_OBJECT_MAX_WIDTH
            and height < cfg.crate_min_size):
        # what is seen of a cut blob is at most its width; wider than any small object yet lower
        # than a crate, it fits nothing but paint (its height read too big: the far side is cut)
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
    # the scan plane passes over an object whose (whole, measured) top is clearly below it: a
    # return along its bearing is whatever stands behind it
    laser_sees_it = blob.touches_border or height >= cfg.robot.base_height + cfg.robot.laser_xyz[2] - 0.03
    if laser is not None and laser_sees_it:
        lx, ly = laser.origin_xy
        dist_l = math.hypot(cx - lx, cy - ly)
        b = math.atan2(cy - ly, cx - lx)
        half = math.atan2(w_half, max(dist_l, 1e-3)) * 0.8
        hit = laser.nearest_return(b, half)
        r = hit[1] if hit is not None else None
        if r is not None and abs((r + w_half) - dist_l) < max(0.15, 0.2 * dist_l):
            # the object's visible faces in the scan: their mean, pushed back by most of a
            # half-width (a face seen square on: its centre is a half-depth in front of the centre)
            pts = laser.points_between(b, half, r - 0.01, r + 1.5 * w_half + 0.02)
            whole = _past_the_image_side(hit[0], blob, cam, laser, cfg)
            if whole is not None:
                # the laser sees the part the image's side cut off: the whole footprint from its faces
                (cx, cy), width = _box_from_faces(whole, laser.origin_xy)
                w_half = max(w_half, width / 2)
                if 2 * w_half >= cfg.crate_min_size:
                    shape, shape_conf = "crate", 0.8
            elif len(pts) >= 3:
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


def _past_the_image_side(bearing: float, blob: Blob, cam: CameraIntrinsics, laser: LaserScan2D,
                         cfg: PerceptionConfig) -> np.ndarray | None:
    """The scan points [N, 2] (in beam order) of the whole visible surface of an object that the
    image's left or right side cuts, from the beam at `bearing` (laser frame, a return from the
    object) both ways to its ends; None when the blob is not cut at one side, or when the surface
    runs on like a wall."""
    cut_left, cut_right = blob.left == 0, blob.right >= cam.width - 1
    if cut_left == cut_right:
        return None                        # not cut at a side, or wider than the view (a wall, the crate up close)
    up = laser.surface_from(bearing, 1, cfg.max_object_size)       # larger bearings: the robot's (and image's) left
    down = laser.surface_from(bearing, -1, cfg.max_object_size)
    if up is None or down is None:
        return None
    out = np.concatenate([down[::-1], up[1:]])                      # both start with the beam at `bearing`
    if len(out) < 3 or math.hypot(*(out[-1] - out[0])) > cfg.max_object_size:
        return None
    return out


def _box_from_faces(pts: np.ndarray, origin) -> tuple[tuple[float, float], float]:
    """Centre and width of a box footprint from the scan points [N, 2] of its visible faces, in
    beam order. Two faces (an L): their far ends are two opposite corners, the centre is halfway
    between them. One face: the centre lies half a face length behind its middle (a square
    footprint assumed)."""
    a, b = pts[0], pts[-1]
    ab = b - a
    length = max(float(np.linalg.norm(ab)), 1e-6)
    normal = np.array([-ab[1], ab[0]]) / length
    mid = (a + b) / 2
    if float(np.dot(normal, mid - np.asarray(origin, float))) < 0:
        normal = -normal                   # away from the laser
    depth = (pts - a) @ normal             # how far each point lies behind the chord a-b (<= 0: in front)
    k = int(np.argmin(depth))
    if -depth[k] > max(0.02, 0.1 * length):
        corner = pts[k]
        width = max(float(np.linalg.norm(corner - a)), float(np.linalg.norm(corner - b)))
        return (float(mid[0]), float(mid[1])), width
    centre = mid + normal * length / 2
    return (float(centre[0]), float(centre[1])), length


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


def _area(blob: Blob, cam: CameraIntrinsics, pose: CameraPose, box) -> Detection | None:
    """A flat area: its outline projected onto the floor; the centre is that polygon's centroid
    (a mean over pixels would weigh the near side, which has more pixels per square metre). An
    outline cut by the image's left or right side is fitted with a square instead."""
    contours, _ = cv2.findContours(blob.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    cut_side = blob.left == 0 or blob.right >= cam.width - 1
    if cut_side:
        c = cv2.approxPolyDP(c, 1.0, True)          # the outline's corners, not its pixel staircase
    c = c[:, 0, :].astype(float)                    # [N, 2] (col, row) of boundary pixels
    cols, rows = c[:, 0] + blob.left, c[:, 1] + blob.top
    rays = pixel_rays(cols + 0.5, rows + 0.5, cam, pose)
    pts = rays_at_height(pose, rays, 0.0)
    ok = np.all(np.isfinite(pts), axis=1)
    pts, cut = pts[ok], ((cols <= 0) | (cols >= cam.width - 1))[ok]
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
    width = float(max(hi - lo))
    if cut_side and cut.any():
        fit = _square_from_cut_outline(pts, cut, pose.origin[:2], NOMINAL_WIDTH["square"])
        if fit is not None:
            (cx, cy), width = fit
    dist = math.hypot(cx - pose.origin[0], cy - pose.origin[1])
    conf = _position_confidence(blob, dist, "area")
    return Detection(blob.colour, "square", 0.9 if not blob.touches_border else 0.6, float(cx), float(cy),
                     width, 0.0, False, "area", conf, box)


def _square_from_cut_outline(pts: np.ndarray, cut: np.ndarray, origin, side_prior: float
                             ) -> tuple[tuple[float, float], float] | None:
    """Centre and side of a square area whose floor outline `pts` [N, 2] (a polygon, in order) the
    image's side cut; `cut` [N] marks the vertices on the image's side; `origin` is the camera's
    floor point. The polygon is the square less the part beyond one straight cut, so every edge
    not lying along the cut is part of the square's own edges: their directions give its yaw
    (mod 90 degrees; a mean weighed by length). In the square's axes, an
    extreme of the outline reached by an uncut vertex is one of the square's edges; an extreme
    reached only by cut vertices is not. Along an axis with both edges seen, the side is measured
    and the centre is halfway; with one, the centre lies half a side inside it; a side measured on
    neither axis is `side_prior` (at least what is seen). None when no edge of the square is seen."""
    n = len(pts)
    if cut.all():
        return None
    origin = np.asarray(origin, float)
    z = 0j
    for i in range(n):
        j = (i + 1) % n
        if cut[i] and cut[j]:
            continue                                  # along the image's side
        d = pts[j] - pts[i]
        a = 4 * math.atan2(d[1], d[0])
        z += math.hypot(*d) * complex(math.cos(a), math.sin(a))
    if abs(z) < 1e-9:
        return None
    yaw = math.atan2(z.imag, z.real) / 4
    c, s = math.cos(yaw), math.sin(yaw)
    uv = pts @ np.array([[c, -s], [s, c]])            # [N, 2] in the square's axes
    # an uncut vertex this close to an extreme, and closer to it than to the other one, reaches it
    # (a floor pixel spans more metres farther away)
    tol = max(0.03, 0.04 * float(np.linalg.norm(pts.mean(axis=0) - origin)))
    axes = []
    for k in (0, 1):
        v = uv[:, k]
        lo, hi = float(v.min()), float(v.max())
        u_lo, u_hi = float(v[~cut].min()), float(v[~cut].max())
        axes.append((lo, hi, u_lo - lo <= tol and u_lo - lo < hi - u_lo, hi - u_hi <= tol and hi - u_hi < u_hi - lo))
    sides = [hi - lo for lo, hi, lo_seen, hi_seen in axes if lo_seen and hi_seen]
    side = float(np.mean(sides)) if sides else max(side_prior, *(hi - lo for lo, hi, _, _ in axes))
    centre = []
    for lo, hi, lo_seen, hi_seen in axes:
        if lo_seen == hi_seen:
            centre.append((lo + hi) / 2)              # both edges seen, or neither (nothing better)
        else:
            centre.append(lo + side / 2 if lo_seen else hi - side / 2)
    cx, cy = np.array([[c, -s], [s, c]]) @ np.array(centre)
    return (float(cx), float(cy)), side


def classify(blob: Blob, width: float, height: float, cfg: PerceptionConfig) -> tuple[str, float]:
    """Shape class of a solid blob and a confidence in 0..1 (rules on metric size and silhouette).

    A ball's silhouette is a disc (fills ~pi/4 of its box) with smooth shading; a cube's is a
    hexagon or a square (fills 0.8-1) with at most three flat faces, each one grey level; a
    cylinder stands taller than wide. The faces decide between cube and ball: the fill alone
    called a cube seen corner-on (fill ~0.82) a ball.
    """
    if blob.touches_border and blob.area < 40:
        return "object", 0.0             # a sliver at the image border: too little to tell
    if width >= cfg.crate_min_size or height >= cfg.crate_min_size:
        return "crate", 0.9
    if blob.touches_border:              # cut at the border: the width and the fill say little, the height does
        if height >= 0.13:
            return "cylinder", 0.7
        if blob.face_share >= 0.99:
            return "cube", 0.6
        return ("ball", 0.6) if blob.face_share <= 0.9 else ("object", 0.0)
    aspect = height / max(width, 1e-3)
    if aspect >= 1.15:
        return "cylinder", min(1.0, 0.6 + 2 * (aspect - 1.15))
    ball_score = (0.93 - blob.face_share) * 8 + (0.84 - blob.fill) * 3
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
