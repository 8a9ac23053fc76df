"""Planar geometry of the safety core, vectorised with numpy. Pure functions; errors are returned.

Plain per-point loop versions of the same functions are in geometry_reference.py; tests compare
the two on seeded random inputs.

Index legend: P points, M polygon vertices, S candidate commands, K horizon samples, N scan beams.
"""
from __future__ import annotations

import math

import numpy as np

_EPS = 1e-9


def polygon_from_flat(values, name: str) -> tuple[np.ndarray | None, str | None]:
    """[x0, y0, x1, y1, ...] -> vertices [M, 2], or (None, error naming `name`).

    The polygon is closed implicitly (last vertex joins the first); a repeated closing vertex is
    accepted and dropped. Refused: odd length, fewer than 3 distinct vertices (open), non-finite
    numbers, zero area (degenerate), self-intersecting edges.
    """
    try:
        flat = [float(v) for v in values]
    except (TypeError, ValueError):
        return None, f"{name}: expected a flat list of numbers [x0, y0, x1, y1, ...], got {values!r}"
    if len(flat) % 2:
        return None, f"{name}: odd number of values ({len(flat)}); expected x, y pairs"
    if not all(math.isfinite(v) for v in flat):
        return None, f"{name}: non-finite coordinate in {flat}"
    pts = np.asarray(flat, dtype=np.float64).reshape(-1, 2)  # [M, 2]
    if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
        pts = pts[:-1]
    if len(pts) < 3:
        return None, f"{name}: open polygon: needs at least 3 distinct vertices, got {len(pts)}"
    if len(np.unique(pts, axis=0)) != len(pts):
        return None, f"{name}: degenerate polygon: repeated vertex"
    if _self_intersects(pts):
        return None, f"{name}: degenerate polygon: edges cross each other"
    if abs(polygon_area(pts)) < 1e-6:
        return None, f"{name}: degenerate polygon: zero area"
    return pts, None


def polygon_area(pts: np.ndarray) -> float:
    """Signed shoelace area of vertices [M, 2] (positive when counter-clockwise)."""
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _segments_cross(p1, p2, q1, q2) -> bool:
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


def _self_intersects(pts: np.ndarray) -> bool:
    m = len(pts)
    for i in range(m):
        for j in range(i + 1, m):
            if j == i + 1 or (i == 0 and j == m - 1):
                continue  # adjacent edges share a vertex
            if _segments_cross(pts[i], pts[(i + 1) % m], pts[j], pts[(j + 1) % m]):
                return True
    return False


def points_in_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule. points: [..., 2], poly: [M, 2] -> bool [...] (boundary points may go either way)."""
    px = points[..., 0][..., None]                           # [..., 1]
    py = points[..., 1][..., None]
    x0, y0 = poly[:, 0], poly[:, 1]                          # [M]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddle = (y0 > py) != (y1 > py)                        # [..., M]
    dy = np.where(y1 == y0, 1.0, y1 - y0)
    x_cross = x0 + (py - y0) * (x1 - x0) / dy                # [..., M]
    crossings = straddle & (px < x_cross)
    return (np.count_nonzero(crossings, axis=-1) % 2) == 1


def distance_to_boundary(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest polygon edge. points: [..., 2] -> [...]."""
    a = poly                                                  # [M, 2]
    b = np.roll(poly, -1, axis=0)
    ab = b - a                                                # [M, 2]
    ab_len2 = np.maximum(np.einsum("md,md->m", ab, ab), _EPS)  # [M]
    ap = points[..., None, :] - a                             # [..., M, 2]
    t = np.clip(np.einsum("...md,md->...m", ap, ab) / ab_len2, 0.0, 1.0)  # [..., M]
    closest = a + t[..., None] * ab                           # [..., M, 2]
    d = points[..., None, :] - closest
    return np.sqrt(np.min(np.einsum("...md,...md->...m", d, d), axis=-1))


def predict_poses(x: float, y: float, theta: float, v: np.ndarray, w: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Unicycle poses after constant (v, w) for each time (exact arcs).

    v, w: [S]; times: [K] -> poses [S, K, 3] (x, y, theta).
    """
    v = np.asarray(v, dtype=np.float64)[:, None]              # [S, 1]
    w = np.asarray(w, dtype=np.float64)[:, None]
    t = np.asarray(times, dtype=np.float64)[None, :]          # [1, K]
    th = theta + w * t                                        # [S, K]
    straight = np.abs(w) < 1e-6
    w_safe = np.where(straight, 1.0, w)
    # arc: x += v/w (sin(th) - sin(theta)); straight: x += v t cos(theta)
    dx = np.where(straight, v * t * math.cos(theta), v / w_safe * (np.sin(th) - math.sin(theta)))
    dy = np.where(straight, v * t * math.sin(theta), -v / w_safe * (np.cos(th) - math.cos(theta)))
    return np.stack([x + dx, y + dy, th], axis=-1)


def ray_extent(poly: np.ndarray, angle: float) -> float:
    """Distance from the origin to the polygon boundary along a ray at `angle` (0 if the ray misses)."""
    d = np.array([math.cos(angle), math.sin(angle)])
    a = poly
    e = np.roll(poly, -1, axis=0) - a                          # [M, 2]
    denom = d[0] * e[:, 1] - d[1] * e[:, 0]                    # cross(d, e)
    ok = np.abs(denom) > _EPS
    denom = np.where(ok, denom, 1.0)
    s = (a[:, 0] * e[:, 1] - a[:, 1] * e[:, 0]) / denom        # distance along the ray
    u = (a[:, 0] * d[1] - a[:, 1] * d[0]) / denom              # position along the edge
    hit = ok & (s >= 0) & (u >= 0) & (u <= 1)
    return float(np.min(s[hit])) if np.any(hit) else 0.0


def scan_fault(angle_min: float, angle_increment: float, range_min: float, range_max: float,
               ranges: np.ndarray) -> str | None:
    """None when a scan carries usable data, else why not. Unusable: non-finite or inconsistent layout
    (angles, range limits), no beams, or no beam that is a measurement (all NaN). Such a scan says nothing
    about free space: the core keeps the last usable one, which goes stale (STOP)."""
    layout = (angle_min, angle_increment, range_min, range_max)
    if not all(math.isfinite(v) for v in layout):
        return "non-finite angle_min/angle_increment/range_min/range_max"
    if angle_increment == 0.0:
        return "angle_increment is 0 (every beam in one direction)"
    if not 0.0 <= range_min < range_max:
        return f"range limits not 0 <= range_min < range_max ({range_min:.3g}, {range_max:.3g})"
    if len(ranges) == 0:
        return "no beams"
    if not np.any(~np.isnan(np.asarray(ranges, dtype=np.float64))):
        return f"no valid beam (all {len(ranges)} NaN)"
    return None


class ScanProjector:
    """LaserScan ranges -> obstacle points [P, 2] in the base frame; beam angles cached per scan layout.

    Beams follow REP 117: NaN is no measurement (dropped); +inf or above range_max is no return (free);
    -inf, 0 or anything below range_min is "too close to measure": an obstacle at the sensor itself."""

    def __init__(self, laser_x: float, laser_y: float, laser_yaw: float) -> None:
        self.laser_x, self.laser_y, self.laser_yaw = laser_x, laser_y, laser_yaw
        self._key: tuple | None = None
        self._cos = self._sin = np.zeros(0)

    def points(self, angle_min: float, angle_increment: float, range_min: float, range_max: float,
               ranges: np.ndarray) -> np.ndarray:
        n = len(ranges)
        key = (angle_min, angle_increment, n)
        if key != self._key:
            ang = self.laser_yaw + angle_min + angle_increment * np.arange(n)  # [N]
            self._cos, self._sin, self._key = np.cos(ang), np.sin(ang), key
        r = np.asarray(ranges, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            too_close = r < range_min                              # -inf included, NaN excluded
            valid = too_close | ((r >= range_min) & (r <= range_max))
        rv = np.where(too_close, 0.0, r)[valid]                    # [P]
        return np.stack([self.laser_x + rv * self._cos[valid], self.laser_y + rv * self._sin[valid]], axis=-1)


def first_collision_time(points: np.ndarray, v: float, w: float, times: np.ndarray, radius: float) -> float:
    """Earliest sampled time at which a circular robot (radius) moving at constant (v, w) from the
    origin of the base frame touches an obstacle point that it has come nearer to; +inf if none.
    points: [P, 2]; times: [K]. A point already within radius that the motion leaves (or keeps at its
    distance, turning on the spot) is no collision: a robot that is too close may move away."""
    if len(points) == 0:
        return math.inf
    # only points the robot can reach within the horizon matter (arc length <= |v| t)
    reach = abs(v) * float(times[-1]) + radius
    points = points[np.einsum("pd,pd->p", points, points) <= reach * reach]
    if len(points) == 0:
        return math.inf
    poses = predict_poses(0.0, 0.0, 0.0, np.array([v]), np.array([w]), times)[0]  # [K, 3]
    diff = points[None, :, :] - poses[:, None, :2]              # [K, P, 2]
    d2 = np.einsum("kpd,kpd->kp", diff, diff)                  # [K, P]
    now2 = np.einsum("pd,pd->p", points, points)                # [P] distance^2 at t = 0
    hit = np.any((d2 <= radius * radius) & (d2 < now2[None, :] - 1e-12), axis=1)   # [K]
    idx = np.flatnonzero(hit)
    return float(times[idx[0]]) if len(idx) else math.inf


class PolygonSet:
    """Several polygons with their edges stacked once, so that containment and boundary distance of many
    points against all of them cost a fixed handful of numpy calls (the per-command geofence check).

    Index legend: Q points, E edges of all polygons, Z polygons.
    """

    def __init__(self, polygons: list[np.ndarray]) -> None:
        self.count = len(polygons)
        a = np.concatenate(polygons)                                           # [E, 2]
        b = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])          # [E, 2]
        self.offsets = np.cumsum([0] + [len(p) for p in polygons[:-1]])        # [Z] first edge of each polygon
        self.x0, self.y0, self.x1, self.y1 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        self.ex, self.ey = self.x1 - self.x0, self.y1 - self.y0                 # [E]
        self.inv_len2 = 1.0 / np.maximum(self.ex * self.ex + self.ey * self.ey, _EPS)
        self.slope = self.ex / np.where(self.ey == 0.0, 1.0, self.ey)            # dx/dy for the crossing test

    def contains_and_distance(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """points [Q, 2] -> (inside [Q, Z] bool (even-odd rule), distance to boundary [Q, Z])."""
        px, py = points[:, :1], points[:, 1:2]                                  # [Q, 1]
        dx0, dy0 = px - self.x0, py - self.y0                                   # [Q, E]
        straddle = (self.y0 > py) != (self.y1 > py)
        crossing = straddle & (px < self.x0 + dy0 * self.slope)
        inside = (np.add.reduceat(crossing, self.offsets, axis=1) % 2) == 1     # [Q, Z]
        t = np.clip((dx0 * self.ex + dy0 * self.ey) * self.inv_len2, 0.0, 1.0)  # [Q, E]
        cx, cy = dx0 - t * self.ex, dy0 - t * self.ey
        d2 = np.minimum.reduceat(cx * cx + cy * cy, self.offsets, axis=1)      # [Q, Z]
        return inside, np.sqrt(d2)
