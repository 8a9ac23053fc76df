"""A symbolic model of the robot's tools: what each call does to a 2-D world and the exact result
the planner puts inside <tool_response> (ToolCallRecord.result_json: {"tool", "status", ...},
keys sorted).

Texts of failures come from the real parts: the skills and simulator (sim/skills_node.py,
sim/simulator.py), the supervisor's proxy (safety/tool_proxy.py, safety/action_policy.py) and the
perception contract (detect_objects, go_to_object's "no object named ..." failure). Faults are
injected by the mission (`Faults`): failing grasps, an object moved during the approach, a denied
approval, a supervisor rejection, a skill timeout.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from qwen_stack.geometry import Pose2D, wrap_angle
from qwen_stack.qwen_node.agent.grounding import object_key
from qwen_stack.qwen_node.agent.look_closer import look_candidate, look_standoff, looked_error
from qwen_stack.qwen_node.agent.route import (OBJECT_HALF_WIDTH_M, OBSTACLE_CLEARANCE_M, approach_error,
                                              approach_route)
from qwen_stack.robot import load_robot

HALF_FOV = math.radians(37.0)     # camera: 60 deg vertical FOV at 4:3 -> ~75 deg horizontal
VIEW_RANGE = 4.0                   # m, beyond this perception does not report objects (its max_range: a test holds them equal)
CONFIDENT_RANGE = 2.8              # m, beyond this an object is named <colour>_object_<n>
# m, the farthest a floor area first came into perception's memory in the simulator runs (runs/brain_eval_sim20,
# sim21: 107 areas, none beyond 3.15 m; seen flat from 0.5 m up, a 0.5 m square farther off is a few pixels tall)
AREA_RANGE = 3.2
# The symbolic geometry of the training data: the goal 0.22 m short of the object, with the pick site there
# (config/agent.yaml's object_standoff_m is 0.36 since the creep zone: the goal's numbers in a tool result are
# not what the model decides on, and the shipped model's documented command must keep making the same data).
OBJECT_STANDOFF = 0.22
_ROBOT = load_robot()                  # config/robot.yaml, read once
PICK_REACH = _ROBOT.pick_reach         # m, the gripper's reach
BODY_CLEARANCE = _ROBOT.footprint_radius + OBJECT_HALF_WIDTH_M   # ToolExecutor.body_clearance_m
SPEED = 0.3                        # m/s, go_to_pose's default speed (for the clock)


@dataclass
class Thing:
    name: str                      # contract name: red_cube, blue_square, grey_crate
    x: float
    y: float
    graspable: bool = True
    area: bool = False

    @property
    def colour(self) -> str:
        return self.name.split("_")[0]

    @property
    def shape(self) -> str:
        return self.name.split("_", 1)[1]


@dataclass
class Faults:
    grasp_failures: dict[str, int] = field(default_factory=dict)  # object -> failing grasps before success
    move_on_approach: str = ""          # object moved away during the first approach to it
    deny_release: bool = False          # the operator denies the release approval
    deny_reason: str = "operator denied the request"
    reject_first_goto: str = ""         # the supervisor rejects the first go_to_object with this reason
    goto_timeout_once: bool = False     # the first go_to_object times out (skill), then works
    estop_latched: bool = False         # every actuating call is refused

    def injected(self) -> dict:
        """The faults injected into the mission (deny_reason is only the text of a denial: with one only)."""
        f = {k: v for k, v in vars(self).items() if v and k != "deny_reason"}
        if f.get("deny_release"):
            f["deny_reason"] = self.deny_reason
        return f


@dataclass
class MemoryEntry:
    name: str
    colour: str
    shape: str
    x: float
    y: float
    confidence: float
    seen_t: float


class SymbolicWorld:
    def __init__(self, things: list[Thing], robot: tuple[float, float, float], faults: Faults, rng: random.Random,
                 detours: bool = False, look_closer: bool = False, area_range: float = VIEW_RANGE):
        self.things = {t.name: t for t in things}
        # floor areas farther than this are not seen (AREA_RANGE: as in the simulator; VIEW_RANGE: the data of the
        # checkpoints before it)
        self.area_range = area_range
        # detours: go_to_object routes around the remembered solid objects and its result lists the waypoints,
        # as the planner does (agent/route.py). Off, the data is exactly that of the checkpoints made before it.
        self.detours = detours
        self.detours_taken = 0                   # go_to_object results that listed waypoints
        # look_closer: go_to_object for a name not in memory first drives up to the one unnamed thing of its colour
        # and kind, as the planner does (agent/look_closer.py), and far areas are listed unnamed like far objects.
        # Off, the data is that of the checkpoints before it.
        self.look_closer = look_closer
        self.x, self.y, self.theta = robot
        self.pan = 0.0
        self.faults = faults
        self.rng = rng
        self.held: str | None = None
        self.t = 0.0
        self.memory: dict[str, MemoryEntry] = {}
        self.grasp_attempts: dict[str, int] = {}
        self.approached: set[str] = set()
        self.goto_calls = 0
        self.far_names: dict[str, str] = {}      # object -> its <colour>_object_<n> name while far
        self.last_skill: dict[str, Any] = {"skill": None}   # describe_state's last_skill (skills node)

    # ---- perception ------------------------------------------------------------------------
    def visible(self) -> list[tuple[str, Thing, float]]:
        """(reported name, thing, distance) for things in the camera's view now."""
        out = []
        heading = self.theta + self.pan
        for t in self.things.values():
            if t.name == self.held:
                continue
            dx, dy = t.x - self.x, t.y - self.y
            d = math.hypot(dx, dy)
            if d > (self.area_range if t.area else VIEW_RANGE) or \
                    (d > 0.05 and abs(wrap_angle(math.atan2(dy, dx) - heading)) > HALF_FOV):
                continue
            name = t.name
            # far floor areas too get an unnamed entry (as perception's, seen in the simulator) where go_to_object
            # looks closer; the data before it named them at any range
            if d > CONFIDENT_RANGE and (not t.area or self.look_closer):
                if t.name not in self.far_names:
                    n = 1 + sum(1 for v in self.far_names.values() if v.startswith(t.colour + "_object_"))
                    self.far_names[t.name] = f"{t.colour}_object_{n}"
                name = self.far_names[t.name]
            out.append((name, t, d))
        return out

    def detect(self) -> dict[str, Any]:
        seen = self.visible()
        for name, t, d in seen:
            far = name != t.name
            if not far and self.far_names.get(t.name) in self.memory:
                # a confident sighting renames the far, unnamed entry in place (perception keeps its place)
                self.memory = {(name if k == self.far_names[t.name] else k): e for k, e in self.memory.items()}
            # perception's memory confidence: mostly 1.0 once an object is seen up close (sim runs), lower far
            conf = round(self.rng.uniform(0.3, 0.7), 2) if far else \
                (1.0 if self.rng.random() < 0.7 else round(self.rng.uniform(0.8, 0.99), 2))
            # perception's unnamed (far) entries carry the shape vote's current leader or "object"
            shape = (t.shape if self.rng.random() < 0.5 else "object") if far else t.shape
            self.memory[name] = MemoryEntry(name, t.colour, shape,
                                            t.x + self.rng.gauss(0, 0.02), t.y + self.rng.gauss(0, 0.02), conf, self.t)
        self.t += 0.5
        mem = []
        for e in self.memory.values():   # perception lists its memory in the order objects were first seen
            if e.name == self.held:
                continue
            mem.append({"name": e.name, "colour": e.colour, "shape": e.shape, "x": round(e.x, 2), "y": round(e.y, 2),
                        "distance": round(math.hypot(e.x - self.x, e.y - self.y), 2), "confidence": e.confidence,
                        "seen_s_ago": round(self.t - e.seen_t, 1)})
        # in view: in memory's order, as perception lists them (not by distance)
        in_view = {n for n, _, _ in seen}
        return {"in_view": [e["name"] for e in mem if e["name"] in in_view], "memory": mem}

    # ---- tools -------------------------------------------------------------------------------
    def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """One tool call -> the planner's result dict (before json.dumps(sort_keys=True))."""
        actuating = name not in ("describe_state", "detect_objects")
        if actuating and self.faults.estop_latched:
            return _rejected(name, ["e-stop latched: every action is refused"])
        result = getattr(self, "_" + name)(**args)
        resp = result.get("response", {})
        if actuating and "message" in resp:   # the skills node records every skill it ran
            skill = "go_to_pose" if name == "go_to_object" else name
            self.last_skill = {"skill": skill, "success": resp.get("success", False), "message": resp["message"]}
        return result

    def _detect_objects(self) -> dict[str, Any]:
        return {"tool": "detect_objects", "status": "succeeded", **self.detect()}

    def _describe_state(self) -> dict[str, Any]:
        state = {"odom_frame_pose": {"x": round(self.x, 3), "y": round(self.y, 3), "theta": round(self.theta, 3)},
                 "velocity": {"linear": 0.0, "angular": 0.0}, "odometry_stamp": round(self.t + 3.0, 3),
                 "camera_pan": round(self.pan, 3), "held_object": self.held, "estop_latched": self.faults.estop_latched,
                 "moving_skill_running": False, "last_skill": self.last_skill,
                 "objects": self.detect()["memory"]}
        return {"tool": "describe_state", "status": "succeeded",
                "response": {"success": True, "state_json": json.dumps(state)}}

    def _rotate(self, angle: float, speed: float) -> dict[str, Any]:
        self.theta = wrap_angle(self.theta + angle)
        self.t += abs(angle) / speed + 1.0
        # the skill reports the measured float unrounded (sim/skills_node.py), e.g. 1.2085343406215139
        return _ok("rotate", {"rotated": angle + self.rng.gauss(0, 0.01)})

    def _drive_distance(self, distance: float, speed: float) -> dict[str, Any]:
        self.x += distance * math.cos(self.theta)
        self.y += distance * math.sin(self.theta)
        self.t += abs(distance) / speed + 1.0
        return _ok("drive_distance", {"travelled": abs(distance) + self.rng.gauss(0, 0.005)})

    def _look_at(self, pan: float) -> dict[str, Any]:
        self.pan = pan
        self.t += 1.0
        return _ok("look_at", {}, message=f"pan target {pan:.3f} rad")

    def _go_to_object(self, object_name: str) -> dict[str, Any]:
        key = object_key(object_name)
        looked: dict[str, Any] = {}
        if key not in self.memory and self.look_closer:
            looked = self._look_closer(key) or {}
            if "error" in looked:
                return {"tool": "go_to_object", "status": "failed", **looked}
        if key not in self.memory:
            known = sorted(self.memory)
            return {"tool": "go_to_object", "status": "failed",
                    "error": f"no object named '{object_name}' in memory (known: {known}); look around first: "
                             f"rotate or look_at, then detect_objects"}
        self.goto_calls += 1
        if self.faults.reject_first_goto and self.goto_calls == 1:
            return _rejected("go_to_object", [self.faults.reject_first_goto])
        e = self.memory[key]
        # the planner's route (ToolExecutor.execute): round the remembered objects when detouring
        thing = self._thing_named(key)
        route = approach_route((self.x, self.y), (e.x, e.y), OBJECT_STANDOFF,
                               self._obstacles(key) if self.detours else [], BODY_CLEARANCE, OBSTACLE_CLEARANCE_M,
                               solid=not (thing is not None and thing.area))
        if isinstance(route, str):   # as ToolExecutor.execute answers it
            return {"tool": "go_to_object", "status": "failed",
                    "error": approach_error(route, object_name, OBJECT_STANDOFF, BODY_CLEARANCE, (e.x, e.y)),
                    "object_odom": [round(e.x, 3), round(e.y, 3)]}
        goal, waypoints = Pose2D(*route.goal), route.waypoints if self.detours else []
        if waypoints:
            self.detours_taken += 1
        gx, gy, heading = goal.x, goal.y, goal.yaw
        extra = {**looked, "goal": {"x": round(gx, 3), "y": round(gy, 3), "theta": round(heading, 3)},
                 "object_odom": [round(e.x, 3), round(e.y, 3)]}
        if waypoints:
            extra["waypoints"] = [[round(x, 3), round(y, 3)] for x, y in waypoints]
        if self.faults.goto_timeout_once and self.goto_calls == 1:
            # stopped halfway
            self.x, self.y = (self.x + gx) / 2, (self.y + gy) / 2
            self.t += 40.0
            return {"tool": "go_to_object", "status": "failed", **extra,
                    "response": {"success": False, "message": "timed out after 40.2 s (sim time): stopped",
                                 "final_pose": self._pose()}}
        self._drive_to(gx, gy, heading)
        if thing is not None and not thing.area and self.faults.move_on_approach == thing.name \
                and thing.name not in self.approached:
            # someone moved it while the robot drove: 0.6-1.2 m away, in a random direction
            a, r = self.rng.uniform(-math.pi, math.pi), self.rng.uniform(0.6, 1.2)
            thing.x = max(-2.1, min(2.1, thing.x + r * math.cos(a)))
            thing.y = max(-2.1, min(2.1, thing.y + r * math.sin(a)))
        if thing is not None:
            self.approached.add(thing.name)
        return {"tool": "go_to_object", "status": "succeeded", **extra,
                "response": {"success": True, "message": "done", "final_pose": self._pose()}}

    def _drive_to(self, x: float, y: float, heading: float) -> None:
        self.t += math.hypot(x - self.x, y - self.y) / SPEED + 3.0
        self.x, self.y, self.theta, self.pan = x, y, heading, 0.0
        if self.held is not None:   # the held object travels in front of the gripper
            h = self.things[self.held]
            h.x, h.y = self._pick()

    def look_candidate(self, name: str) -> str | None:
        """The unnamed memory entry go_to_object `name` would look closer at (ToolExecutor._look_closer)."""
        mem = [{"name": e.name, "x": e.x, "y": e.y} for e in self.memory.values()]
        found = look_candidate(name, mem, self._is_area)
        return found["name"] if found else None

    def _look_closer(self, key: str) -> dict[str, Any] | None:
        """As ToolExecutor._look_closer: drive to look_standoff of the one unnamed thing that may be `key`, facing
        it, and look. {"looked_closer_at": ...} once perception names it `key`; with "error" when it does not;
        None when there is nothing to look at."""
        cand = self.look_candidate(key)
        if cand is None:
            return None
        e = self.memory[cand]
        spot = (e.x, e.y)
        route = approach_route((self.x, self.y), spot, look_standoff((self.x, self.y), spot),
                               self._obstacles(cand) if self.detours else [], BODY_CLEARANCE, OBSTACLE_CLEARANCE_M,
                               solid=False)
        if isinstance(route, str):
            return None
        self._drive_to(*route.goal)
        self.detect()
        looked = {"looked_closer_at": cand}
        if key in self.memory:
            return looked
        after = [{"name": m.name, "shape": m.shape, "x": m.x, "y": m.y} for m in self.memory.values()]
        return {"error": looked_error(key, {"name": cand, "x": e.x, "y": e.y}, after), **looked}

    def _grasp(self, object_name: str) -> dict[str, Any]:
        if self.held is not None:
            return _fail("grasp", f"already holding {self.held}", held_object="")
        px, py = self._pick()
        target = self.things.get(object_name)
        if object_name and target is None:
            return _fail("grasp", f"no object named {object_name!r}; objects: {sorted(self.things)}", held_object="")
        candidates = [target] if target else sorted(
            (t for t in self.things.values() if not t.area), key=lambda t: math.hypot(t.x - px, t.y - py))
        if not candidates:
            return _fail("grasp", "no graspable object", held_object="")
        t = candidates[0]
        if not t.graspable:
            return _fail("grasp", f"{t.name} is not graspable", held_object="")
        n = self.grasp_attempts.get(t.name, 0)
        self.grasp_attempts[t.name] = n + 1
        dist = math.hypot(t.x - px, t.y - py)
        if n < self.faults.grasp_failures.get(t.name, 0) and dist <= PICK_REACH:
            dist = self.rng.uniform(0.16, 0.3)   # slipped: the magnet did not catch it
        if dist > PICK_REACH:
            return _fail("grasp", f"{t.name} is {dist:.2f} m from the pick (reach {PICK_REACH} m)", held_object="")
        self.held = t.name
        self.memory.pop(t.name, None)
        return _ok("grasp", {"held_object": t.name}, message=f"attached {t.name}")

    def _release(self) -> dict[str, Any]:
        if self.faults.deny_release:
            return _rejected("release", [self.faults.deny_reason])
        if self.held is None:
            return _fail("release", "not holding anything", released_object="")
        name, self.held = self.held, None
        t = self.things[name]
        t.x, t.y = self._pick()
        return _ok("release", {"released_object": name}, message=f"released {name}")

    def _go_to_pose(self, x: float, y: float, theta: float, use_theta: bool) -> dict[str, Any]:
        self.t += math.hypot(x - self.x, y - self.y) / SPEED + 3.0
        self.theta = theta if use_theta else math.atan2(y - self.y, x - self.x)
        self.x, self.y = x, y
        return _ok("go_to_pose", {"final_pose": self._pose()})

    def _go_to_point(self, x: float, y: float) -> dict[str, Any]:
        return {"tool": "go_to_point", "status": "failed", "error": "no camera frame yet"}

    # ---- helpers -------------------------------------------------------------------------
    def _thing_named(self, name: str) -> Thing | None:
        """The thing perception reports as `name` (its own name, or its <colour>_object_<n> name while far)."""
        return next((t for t in self.things.values() if t.name == name or self.far_names.get(t.name) == name), None)

    def _is_area(self, name: str) -> bool:
        thing = self._thing_named(name)
        return thing is not None and thing.area

    def _obstacles(self, exclude: str) -> list[tuple[float, float]]:
        """The remembered objects standing on the floor (world_view.obstacles): not areas, not `exclude`."""
        out = []
        for e in self.memory.values():
            if e.name != exclude and e.name != self.held and not self._is_area(e.name):
                out.append((e.x, e.y))
        return out

    def _pick(self) -> tuple[float, float]:
        return self.x + OBJECT_STANDOFF * math.cos(self.theta), self.y + OBJECT_STANDOFF * math.sin(self.theta)

    def _pose(self) -> dict[str, float]:
        # odometry as the skills report it: unrounded floats (e.g. -1.2046511404450715)
        return {"x": self.x + self.rng.gauss(0, 0.01), "y": self.y + self.rng.gauss(0, 0.01),
                "theta": self.theta + self.rng.gauss(0, 0.002)}

    def in_area(self, obj: str, area: str) -> bool:
        o, a = self.things[obj], self.things[area]
        return self.held != obj and abs(o.x - a.x) <= 0.25 and abs(o.y - a.y) <= 0.25


def _ok(tool: str, fields: dict[str, Any], message: str = "done") -> dict[str, Any]:
    return {"tool": tool, "status": "succeeded", "response": {"success": True, "message": message, **fields}}


def _fail(tool: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"tool": tool, "status": "failed", "response": {"success": False, "message": message, **fields}}


def _rejected(tool: str, reasons: list[str]) -> dict[str, Any]:
    return {"tool": tool, "status": "rejected", "response": {}, "reasons": reasons}


def result_json(result: dict[str, Any]) -> str:
    """What the planner puts in the tool message (ToolCallRecord.result_json)."""
    return json.dumps(result, sort_keys=True)
