"""Detours around known obstacles for object goals (pure, 2-D, odom frame).

The go-to-pose skill drives a straight line. When the planner knows where other objects are
(the object locator), it inserts waypoints so that the straight legs keep `clearance` metres
from each obstacle centre. Obstacles closer than `clearance` to the start or the goal cannot be
avoided and are ignored (the skill and the supervisor's laser zones are the next line of defence).
"""
from __future__ import annotations

import math

OBSTACLE_CLEARANCE_M = 0.5   # the planner's default: legs keep this far from every obstacle centre
OBJECT_HALF_WIDTH_M = 0.09   # a remembered object's half-width (<= 0.05 m) and 4 cm: added to the footprint
                             # radius, the distance a goal pose keeps from every other object's centre


def _closest_on_segment(a, b, p) -> tuple[float, float, float]:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / L2))
    cx, cy = ax + t * dx, ay + t * dy
    return cx, cy, math.hypot(p[0] - cx, p[1] - cy)


def detour_waypoints(start: tuple[float, float], goal: tuple[float, float], obstacles: list[tuple[float, float]],
                     clearance: float, max_waypoints: int = 4) -> list[tuple[float, float]]:
    """Waypoints (excluding start and goal) so that every leg passes obstacles at >= clearance."""
    relevant = [o for o in obstacles
                if math.hypot(o[0] - start[0], o[1] - start[1]) >= clearance
                and math.hypot(o[0] - goal[0], o[1] - goal[1]) >= clearance]
    path = [start, goal]
    for _ in range(max_waypoints):
        worst = None
        for i in range(len(path) - 1):
            for o in relevant:
                cx, cy, d = _closest_on_segment(path[i], path[i + 1], o)
                if d < clearance - 1e-6 and (worst is None or d < worst[0]):
                    worst = (d, i, o, (cx, cy))
        if worst is None:
            break
        d, i, o, (cx, cy) = worst
        if d > 1e-9:
            nx, ny = (cx - o[0]) / d, (cy - o[1]) / d
        else:  # straight through the centre: go round on the left of the leg
            lx, ly = path[i + 1][0] - path[i][0], path[i + 1][1] - path[i][1]
            n = math.hypot(lx, ly) or 1.0
            nx, ny = -ly / n, lx / n
        margin = clearance * 1.15
        path.insert(i + 1, (o[0] + nx * margin, o[1] + ny * margin))
    return path[1:-1]


def clear_approach_bearing(robot: tuple[float, float], target: tuple[float, float], standoff: float,
                           obstacles: list[tuple[float, float]], body_clearance: float,
                           step_deg: float = 15.0) -> float | None:
    """The bearing (target seen from the goal) of the pose `standoff` short of `target` nearest the straight
    approach from `robot` that keeps `body_clearance` from every obstacle centre; None when none does.

    The straight approach can end with the robot's body on another object standing close to the target: the
    supervisor then holds the base still short of the goal until the skill times out (48 s each try)."""
    direct = math.atan2(target[1] - robot[1], target[0] - robot[0])
    for k in range(int(round(180.0 / step_deg)) + 1):
        for sign in ((1,) if k == 0 else (1, -1)):
            b = direct + sign * math.radians(k * step_deg)
            x, y = target[0] - standoff * math.cos(b), target[1] - standoff * math.sin(b)
            if all(math.hypot(o[0] - x, o[1] - y) >= body_clearance for o in obstacles):
                return b
    return None
