"""The console's top-down map, as plain data (odom frame, metres, radians). No ROS, no web framework.

MapView collects the robot pose, laser points, the supervisor's zones (its latched safety/zones JSON: the
console never reads the safety config itself), perceived objects and the current goal. Every input is
checked on the way in: a non-finite or absurd number drops that item (or the whole input), lists are
capped, strings cut. `tick(now)` returns the map event at most every `period_s` and only when something
changed, so a 40 Hz scan does not become 40 page redraws a second.
"""
from __future__ import annotations

import json
import math
from collections import deque

import numpy as np

MAX_SCAN_POINTS = 180       # laser points drawn (the scan is downsampled to this many beams at most)
MAX_OBJECTS = 50            # perceived objects drawn
MAX_ZONE_VERTICES = 64      # vertices per polygon accepted from safety/zones
MAX_KEEP_OUT = 32           # keep-out zones accepted from safety/zones
MAX_NAME_CHARS = 64         # object and zone names
MAX_COORD = 1.0e4           # m: anything farther from the odom origin is not a place on this map
GOAL_TOOLS = ("go_to_pose", "go_to_object")
POSE_HISTORY = 64           # recent poses kept to place a scan with the pose at its time
POSE_MATCH_S = 0.5          # a scan further than this from every kept pose is placed with the latest one


def _num(x: object, limit: float = MAX_COORD) -> float | None:
    """A finite float within ±limit, else None (bool is not a number here)."""
    if isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) and abs(v) <= limit else None


def _name(x: object) -> str:
    s = "".join(ch for ch in str(x) if ch.isprintable())
    return s if len(s) <= MAX_NAME_CHARS else s[:MAX_NAME_CHARS - 1] + "…"


def _polygon(value: object) -> list[list[float]] | None:
    """[[x, y], ...] with 3..MAX_ZONE_VERTICES finite vertices, else None."""
    if not isinstance(value, list) or not 3 <= len(value) <= MAX_ZONE_VERTICES:
        return None
    out = []
    for p in value:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            return None
        x, y = _num(p[0]), _num(p[1])
        if x is None or y is None:
            return None
        out.append([x, y])
    return out


def parse_zones(text: str) -> tuple[dict | None, str]:
    """The supervisor's safety/zones JSON -> (zones, "") or (None, why it was refused)."""
    try:
        data = json.loads(text) if len(text) < 200_000 else None
    except (ValueError, RecursionError):
        return None, "safety/zones is not JSON"
    if not isinstance(data, dict):
        return None, "safety/zones is not a JSON object"
    radius = _num(data.get("robot_radius"), 10.0)
    if radius is None or radius <= 0:
        return None, "safety/zones: robot_radius must be a number in (0, 10]"
    laser = data.get("laser") if isinstance(data.get("laser"), dict) else {}
    mount = {k: _num(laser.get(k, 0.0), 10.0) for k in ("x", "y", "yaw")}
    if None in mount.values():
        return None, "safety/zones: laser mount must be finite numbers"
    zones = {"robot_radius": radius, "laser": mount}
    for key in ("stop_zone", "slowdown_zone", "geofence"):
        zones[key] = _polygon(data.get(key))
        if zones[key] is None:
            return None, f"safety/zones: {key} must be a polygon of 3..{MAX_ZONE_VERTICES} finite [x, y] vertices"
    creep = data.get("creep_zone") or []          # [] (or absent): the supervisor runs without creep
    zones["creep_zone"] = _polygon(creep) if creep else []
    if zones["creep_zone"] is None:
        return None, f"safety/zones: creep_zone must be [] or a polygon of 3..{MAX_ZONE_VERTICES} finite [x, y] vertices"
    keep_out = data.get("keep_out") or {}
    if not isinstance(keep_out, dict) or len(keep_out) > MAX_KEEP_OUT:
        return None, f"safety/zones: keep_out must map at most {MAX_KEEP_OUT} names to polygons"
    zones["keep_out"] = []
    for name, poly in keep_out.items():
        p = _polygon(poly)
        if p is None:
            return None, f"safety/zones: keep_out {_name(name)!r} is not a polygon of finite vertices"
        zones["keep_out"].append({"name": _name(name), "polygon": p})
    return zones, ""


def scan_points(angle_min: float, angle_increment: float, range_min: float, range_max: float,
                ranges: np.ndarray, pose: tuple[float, float, float], laser: dict,
                max_points: int = MAX_SCAN_POINTS) -> list[list[float]]:
    """Laser returns in the odom frame, from the scan taken at `pose` (x, y, theta of the base in odom), the
    beams downsampled to at most max_points. Beams with no return (inf, NaN, beyond range_max) are not drawn;
    below range_min is drawn at the sensor (REP 117, as the supervisor reads it)."""
    r = np.asarray(ranges, dtype=np.float64)   # [N]
    n = len(r)
    if n == 0 or max_points <= 0 or not all(map(math.isfinite, (angle_min, angle_increment, range_min, range_max))):
        return []
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(np.int64))   # [M]
    r = r[idx]
    with np.errstate(invalid="ignore"):
        too_close = r < range_min
        keep = too_close | ((r >= range_min) & (r <= range_max) & np.isfinite(r))
    r = np.where(too_close, 0.0, r)[keep]
    ang = laser["yaw"] + angle_min + angle_increment * idx[keep]
    bx, by = laser["x"] + r * np.cos(ang), laser["y"] + r * np.sin(ang)   # base frame
    x, y, th = pose
    c, s = math.cos(th), math.sin(th)
    ox, oy = x + c * bx - s * by, y + s * bx + c * by
    ok = np.isfinite(ox) & np.isfinite(oy) & (np.abs(ox) <= MAX_COORD) & (np.abs(oy) <= MAX_COORD)
    return [[round(float(a), 3), round(float(b), 3)] for a, b in zip(ox[ok], oy[ok])]


class MapView:
    def __init__(self, period_s: float = 0.25) -> None:
        self.period_s = period_s
        self.robot: dict | None = None          # {"x", "y", "theta"} in odom
        self._poses: deque[tuple[float, tuple[float, float, float]]] = deque(maxlen=POSE_HISTORY)  # (stamp, pose)
        self.scan: list[list[float]] = []
        self.zones: dict | None = None
        self.zones_error = ""
        self.objects: list[dict] = []
        self.goal: dict | None = None           # {"x", "y", "theta" or None, "label", "tool"}
        self._goal_object: str | None = None    # go_to_object: its position follows perception's memory
        self._dirty = False
        self._last_sent = -math.inf

    # --- inputs ---------------------------------------------------------------------------
    def on_pose(self, x: float, y: float, theta: float, stamp: float | None = None) -> None:
        x, y, th = _num(x), _num(y), _num(theta, 1e3)
        if None in (x, y, th):
            return    # a broken odometry message moves nothing on the map
        self.robot = {"x": x, "y": y, "theta": math.remainder(th, math.tau)}
        stamp = _num(stamp, math.inf) if stamp is not None else None
        if stamp is not None:
            self._poses.append((stamp, (x, y, self.robot["theta"])))
        self._dirty = True

    def pose_at(self, stamp: float | None) -> tuple[float, float, float] | None:
        """The kept pose nearest in time to `stamp` (within POSE_MATCH_S), else the latest pose."""
        stamp = _num(stamp, math.inf) if stamp is not None else None
        if stamp is not None and self._poses:
            t, pose = min(reversed(self._poses), key=lambda tp: abs(tp[0] - stamp))   # ties: the newest
            if abs(t - stamp) <= POSE_MATCH_S:
                return pose
        return None if self.robot is None else (self.robot["x"], self.robot["y"], self.robot["theta"])

    def on_scan(self, angle_min: float, angle_increment: float, range_min: float, range_max: float,
                ranges, stamp: float | None = None) -> None:
        """Placed with the pose at the scan's `stamp` when one is kept, else with the latest pose."""
        pose = self.pose_at(stamp)
        if pose is None:
            return
        laser = self.zones["laser"] if self.zones else {"x": 0.0, "y": 0.0, "yaw": 0.0}
        self.scan = scan_points(angle_min, angle_increment, range_min, range_max, ranges, pose, laser)
        self._dirty = True

    def on_zones(self, text: str) -> None:
        zones, why = parse_zones(text)
        self.zones, self.zones_error = zones, why
        self._dirty = True

    def on_objects(self, objects: list[dict]) -> None:
        """objects: {"name", "x", "y", "in_view", "solid", "colour"} in odom; items with a bad position are left out."""
        out = []
        for o in objects[:MAX_OBJECTS]:
            x, y = _num(o.get("x")), _num(o.get("y"))
            if x is None or y is None:
                continue
            colour = str(o.get("colour", ""))
            out.append({"name": _name(o.get("name", "")), "x": x, "y": y, "in_view": bool(o.get("in_view")),
                        "solid": bool(o.get("solid", True)),
                        "colour": colour if colour.isalpha() and len(colour) <= 16 else ""})
        self.objects = out
        self._follow_goal_object()
        self._dirty = True

    def on_tool_call(self, name: str, arguments: object) -> None:
        """The latest go_to_pose / go_to_object call sets the goal drawn (go_to_object: where perception has
        that object; none drawn while it is not in memory)."""
        if name not in GOAL_TOOLS or not isinstance(arguments, dict):
            return
        if name == "go_to_pose":
            x, y = _num(arguments.get("x")), _num(arguments.get("y"))
            if x is None or y is None:
                return
            theta = _num(arguments.get("theta"), 1e3) if arguments.get("use_theta") is True else None
            self._goal_object = None
            self.goal = {"x": x, "y": y, "theta": theta, "label": f"goal ({x:.2f}, {y:.2f})", "tool": name}
        else:
            self._goal_object = _name(arguments.get("object_name", ""))
            self.goal = None
            self._follow_goal_object()
        self._dirty = True

    def _follow_goal_object(self) -> None:
        if self._goal_object is None:
            return
        for o in self.objects:
            if o["name"] == self._goal_object:
                self.goal = {"x": o["x"], "y": o["y"], "theta": None, "label": f"goal: {o['name']}",
                             "tool": "go_to_object"}
                return

    # --- output ---------------------------------------------------------------------------
    def as_dict(self) -> dict:
        return {"robot": self.robot, "scan": self.scan, "zones": self.zones, "zones_error": self.zones_error,
                "objects": self.objects, "goal": self.goal}

    def tick(self, now: float) -> dict | None:
        """The map event when something changed and the last one is at least period_s old."""
        if not self._dirty or now - self._last_sent < self.period_s:
            return None
        self._dirty, self._last_sent = False, now
        return {"type": "map", "map": self.as_dict()}
