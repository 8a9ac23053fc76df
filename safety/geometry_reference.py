"""Plain per-point reference versions of safety/geometry.py (the spec the vectorised code is tested against)."""
from __future__ import annotations

import math


def point_in_polygon(px: float, py: float, poly: list[tuple[float, float]]) -> bool:
    inside = False
    m = len(poly)
    for i in range(m):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % m]
        if (y0 > py) != (y1 > py):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
            if px < x_cross:
                inside = not inside
    return inside


def distance_to_boundary(px: float, py: float, poly: list[tuple[float, float]]) -> float:
    best = math.inf
    m = len(poly)
    for i in range(m):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % m]
        ex, ey = bx - ax, by - ay
        l2 = ex * ex + ey * ey
        t = 0.0 if l2 == 0 else max(0.0, min(1.0, ((px - ax) * ex + (py - ay) * ey) / l2))
        cx, cy = ax + t * ex, ay + t * ey
        best = min(best, math.hypot(px - cx, py - cy))
    return best


def predict_pose(x: float, y: float, theta: float, v: float, w: float, t: float, substeps: int = 2000):
    """Pose after constant (v, w) for time t, by fine Euler-midpoint integration (no closed form)."""
    dt = t / substeps
    for _ in range(substeps):
        mid = theta + 0.5 * w * dt
        x += v * dt * math.cos(mid)
        y += v * dt * math.sin(mid)
        theta += w * dt
    return x, y, theta


def scan_points(laser_x, laser_y, laser_yaw, angle_min, angle_increment, range_min, range_max, ranges):
    out = []
    """REP 117: NaN dropped, above range_max (+inf included) free, below range_min (-inf, 0) at the sensor."""
    for i, r in enumerate(ranges):
        if math.isnan(r) or r > range_max:
            continue
        if r < range_min:
            r = 0.0
        a = laser_yaw + angle_min + i * angle_increment
        out.append((laser_x + r * math.cos(a), laser_y + r * math.sin(a)))
    return out


def first_collision_time(points, v, w, times, radius) -> float:
    for t in times:
        x, y, _ = predict_pose(0.0, 0.0, 0.0, v, w, t, substeps=200)
        for px, py in points:
            d = math.hypot(px - x, py - y)
            if d <= radius and d * d < px * px + py * py - 1e-12:    # touching, and nearer than at t = 0
                return t
    return math.inf
