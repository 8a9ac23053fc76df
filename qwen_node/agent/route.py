"""Detours around known obstacles for object goals (pure, 2-D, odom frame).

The go-to-pose skill drives a straight line. When the planner knows where other objects are
(the object locator), it inserts waypoints so that the straight legs keep `clearance` metres
from each obstacle centre, or as much as the start or the goal itself keeps from it. Where no
such route exists the planner says so instead of driving: the supervisor's laser zones would hold
the robot against the obstacle until the skill gave up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OBSTACLE_CLEARANCE_M = 0.5   # the planner's default: legs keep this far from every obstacle centre
RING_FACTORS = (1.15, 1.8)   # candidate waypoints on rings this many keep-out radii round each obstacle
WAYPOINT_COST_M = 0.5        # a waypoint (stop, turn, go) weighs like this much more driving: few, wide turns
OBJECT_HALF_WIDTH_M = 0.09   # a remembered object's half-width (<= 0.05 m) and 4 cm: added to the footprint
                             # radius, the distance a goal pose keeps from every other object's centre


def _closest_on_segment(a, b, p) -> tuple[float, float, float]:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / L2))
    cx, cy = ax + t * dx, ay + t * dy
    return cx, cy, math.hypot(p[0] - cx, p[1] - cy)


def keep_out_radii(start: tuple[float, float], goal: tuple[float, float], obstacles: list[tuple[float, float]],
                   clearance: float) -> list[float]:
    """How far each leg keeps from each obstacle centre: `clearance`, less where the start or the goal itself
    stands nearer (the approach pose keeps the body's own clearance from its neighbours; the legs can keep no
    more than the ends have)."""
    return [min(clearance, math.dist(o, start), math.dist(o, goal)) - 1e-3 for o in obstacles]


def _legs_clear(a: np.ndarray, b: np.ndarray, obstacles: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """[A, B] bool: whether the segment a[i] -> b[j] keeps radii[k] from every obstacles[k]."""
    d = b[None, :, :] - a[:, None, :]                                   # [A, B, 2]
    L2 = np.maximum((d * d).sum(-1), 1e-12)[..., None]                  # [A, B, 1]
    ao = obstacles[None, None, :, :] - a[:, None, None, :]              # [A, 1, M, 2]
    t = np.clip((ao * d[:, :, None, :]).sum(-1) / L2, 0.0, 1.0)         # [A, B, M]
    closest = a[:, None, None, :] + t[..., None] * d[:, :, None, :]     # [A, B, M, 2]
    dist = np.linalg.norm(closest - obstacles[None, None], axis=-1)     # [A, B, M]
    return (dist >= radii[None, None, :] - 1e-9).all(-1)


def detour_waypoints(start: tuple[float, float], goal: tuple[float, float], obstacles: list[tuple[float, float]],
                     clearance: float, max_waypoints: int = 4,
                     ring_points: int = 12) -> list[tuple[float, float]] | None:
    """The fewest-metres waypoints (excluding start and goal) whose straight legs keep each obstacle's
    keep_out_radii; [] when the straight line does, None when the search finds no route of at most
    `max_waypoints` (shortest-first, so a longer route with fewer waypoints can be missed: then None too).

    Candidate waypoints stand on rings round each obstacle (RING_FACTORS) and a leg may join
    any two that see each other, so a gap between two obstacles narrower than their radii together is
    closed: the robot goes round both or not at all (the supervisor would hold it in the gap)."""
    if not obstacles:
        return []
    obs = np.asarray(obstacles, dtype=float).reshape(-1, 2)
    radii = np.asarray(keep_out_radii(start, goal, obstacles, clearance))
    ends = np.asarray([start, goal], dtype=float)
    if _legs_clear(ends[:1], ends[1:], obs, radii)[0, 0]:
        return []
    angles = np.linspace(0.0, 2 * math.pi, ring_points, endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], -1)               # [K, 2]
    ring = np.concatenate([(obs[:, None, :] + (f * radii)[:, None, None] * unit[None]).reshape(-1, 2)
                           for f in RING_FACTORS])
    inside = np.linalg.norm(ring[:, None, :] - obs[None], axis=-1) < radii[None] - 1e-9
    nodes = np.concatenate([ends, ring[~inside.any(-1)]])              # [N, 2]: start, goal, free ring points
    seen = _legs_clear(nodes, nodes, obs, radii)
    length = np.linalg.norm(nodes[:, None] - nodes[None], axis=-1) + WAYPOINT_COST_M   # every stop costs
    # Dijkstra from the start (node 0) to the goal (node 1), counting legs to honour max_waypoints
    n = len(nodes)
    best = np.full(n, np.inf)
    best[0] = 0.0
    prev, legs, done = [-1] * n, [0] * n, np.zeros(n, bool)
    while True:
        i = int(np.argmin(np.where(done, np.inf, best)))
        if done[i] or not np.isfinite(best[i]) or i == 1:
            break
        done[i] = True
        if legs[i] > max_waypoints:
            continue
        for j in np.nonzero(seen[i] & ~done)[0]:
            if best[i] + length[i, j] < best[j] and (j == 1 or legs[i] + 1 <= max_waypoints):
                best[j], prev[j], legs[j] = best[i] + length[i, j], i, legs[i] + 1
    if not np.isfinite(best[1]):
        return None
    path, i = [], prev[1]
    while i > 0:
        path.append((float(nodes[i][0]), float(nodes[i][1])))
        i = prev[i]
    return path[::-1]


def approach_error(failure: str, name: str, standoff: float, body_clearance: float,
                   where: tuple[float, float]) -> str:
    """What go_to_object answers for approach_route's "no_approach" / "no_route" (the planner and the symbolic
    world)."""
    if failure == "no_route":
        return (f"no route to {name!r} keeps the robot clear of the other objects (a gap between them is narrower "
                f"than the robot): it cannot be reached; ask the operator to clear a path")
    return (f"no pose {standoff:.2f} m from {name!r} keeps the robot {body_clearance:.2f} m from the other objects "
            f"around it (at {where[0]:.2f}, {where[1]:.2f}): it cannot be reached; ask the operator to clear it")


def short_of(target: tuple[float, float], bearing: float, distance: float) -> tuple[float, float]:
    """The point `distance` short of `target` on a line of travel with heading `bearing`."""
    return target[0] - distance * math.cos(bearing), target[1] - distance * math.sin(bearing)


def clear_approach_bearing(robot: tuple[float, float], target: tuple[float, float], standoff: float,
                           obstacles: list[tuple[float, float]], body_clearance: float,
                           step_deg: float = 15.0, dock: float = 0.0) -> float | None:
    """The bearing (target seen from the goal) of the pose `standoff` short of `target` nearest the straight
    approach from `robot` whose docking leg (the last `dock` metres, head-on) keeps `body_clearance` from
    every obstacle centre; None when none does.

    The straight approach can end with the robot's body on another object standing close to the target: the
    supervisor then holds the base still short of the goal until the skill times out (48 s each try)."""
    direct = math.atan2(target[1] - robot[1], target[0] - robot[0])
    for k in range(int(round(180.0 / step_deg)) + 1):
        for sign in ((1,) if k == 0 else (1, -1)):
            b = direct + sign * math.radians(k * step_deg)
            goal, start = short_of(target, b, standoff), short_of(target, b, standoff + dock)
            if all(_closest_on_segment(start, goal, o)[2] >= body_clearance for o in obstacles):
                return b
    return None


DOCK_M = 0.3           # the last leg to a solid object runs head-on this far: the laser's creep zone (a rectangle)
                       # stops a base that passes the object at a diagonal, short of the goal
HEAD_ON_TOL = math.radians(15.0)


@dataclass(frozen=True)
class ApproachRoute:
    goal: tuple[float, float, float]        # x, y and the heading that faces the target
    waypoints: list[tuple[float, float]]    # before the goal, each its own leg


def approach_route(start: tuple[float, float], target: tuple[float, float], standoff: float,
                   obstacles: list[tuple[float, float]], body_clearance: float, clearance: float,
                   solid: bool = True) -> ApproachRoute | str:
    """How go_to_object reaches `target` (the planner and the symbolic world): the pose `standoff` short of it
    from the nearest clear bearing, and the legs there round `obstacles` (detour_waypoints). A solid target is
    reached head-on: unless the straight leg from `start` already is, the route ends at a docking point DOCK_M
    further out on the approach line, keeping `clearance` from the target itself until there. A floor area is
    driven onto from any side. Fails with "no_approach" or "no_route" (approach_error words them)."""
    dock = DOCK_M if solid else 0.0
    b = clear_approach_bearing(start, target, standoff, obstacles, body_clearance, dock=dock)
    if b is None:
        return "no_approach"
    goal = (*short_of(target, b, standoff), b)
    if not solid:
        waypoints = detour_waypoints(start, goal[:2], obstacles, clearance)
        return "no_route" if waypoints is None else ApproachRoute(goal, waypoints)
    heading = math.atan2(goal[1] - start[1], goal[0] - start[0])
    head_on = abs(math.remainder(heading - b, 2 * math.pi)) <= HEAD_ON_TOL or math.dist(start, goal[:2]) < 1e-6
    if head_on and detour_waypoints(start, goal[:2], obstacles, clearance) == []:
        return ApproachRoute(goal, [])
    docking = short_of(target, b, standoff + dock)
    waypoints = detour_waypoints(start, docking, [*obstacles, target], clearance)
    if waypoints is None:
        return "no_route"
    return ApproachRoute(goal, [*waypoints, docking])
