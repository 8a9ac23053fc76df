"""The agent loop (ROS-free): prompt -> model -> parse -> execute tool calls -> tool responses -> ...

It ends when the model answers without a tool call (success), the step budget (tool calls) is
spent, malformed output repeats past `max_parse_retries`, or the task is cancelled (by the
client, an e-stop latch or an operator takeover: `CancelToken.cancel(reason)` returns at once,
abandoning a tool call in flight; the supervisor stops the robot itself).

The ROS side is behind two small interfaces: `ToolTransport` (service calls, direct or through
the safety supervisor's CallTool proxy, returning concurrent Futures) and `WorldView`
(camera/laser/odometry/object positions for grounding). Tests use doubles of both.
"""
from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from qwen_stack.geometry import Pose2D
from qwen_stack.qwen_node.agent.grounding import GroundedGoal, object_key
from qwen_stack.robot import load_robot
from qwen_stack.qwen_node.agent.look_closer import LOOK_WAIT_S, look_candidate, look_standoff, looked_error
from qwen_stack.qwen_node.agent.route import (OBJECT_HALF_WIDTH_M, OBSTACLE_CLEARANCE_M, approach_error,
                                              approach_route, clear_approach_bearing, short_of)
from qwen_stack.qwen_node.agent.output_parser import (
    OutputStreamParser, ParsedToolCall, ParsedTurn, TextDelta, ThinkingDelta, ToolCallError)
from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry, ToolSpec

# go_to_object drives on when the target's remembered position moved more than this during the drive
# (perception's close-up error is ~5 cm; the pick reaches 0.15 m, an area's half-size is 0.25 m), at most
# this many times
GOAL_REFINE_M = 0.10
MAX_GOAL_REFINES = 2


# ----------------------------------------------------------------------------------------
# Conversation
# ----------------------------------------------------------------------------------------

@dataclass
class ChatMessage:
    """One message. role: system | user | assistant | tool. Images are HxWx3 uint8 arrays."""
    role: str
    content: str
    images: list[Any] = field(default_factory=list)   # frames; several = a short clip
    folded: bool = False                               # content was shortened by context folding


class CancelToken:
    """Set once, from any thread; the first reason wins."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class LanguageModel(Protocol):
    """A backend. `generate` streams the model's raw output text (Qwen3.5 format) to on_text and
    returns the whole text; it stops early (returning what it has) once cancel is set."""
    name: str
    is_model: bool            # False for replay: it is not a model and says so
    start_in_thinking: bool   # the output begins inside <think> (the prompt opened it)
    # sees_images (optional, default True): False for a text-only checkpoint. The planner then sends no
    # frames and, above all, no frame-only user turns: a model trained without them reads "Current camera
    # view ..." as a new task and starts over (the stand-in brain did, 40 times in a row, with camera raw).
    # last_stats (optional): the figures of the last generate (tokens, seconds), passed to Planner's on_turn.

    def generate(self, messages: Sequence[ChatMessage], tools: list[dict], on_text: Callable[[str], None],
                 cancel: CancelToken) -> str: ...


# ----------------------------------------------------------------------------------------
# Tool execution
# ----------------------------------------------------------------------------------------

@dataclass
class ServiceOutcome:
    status: str                     # "succeeded" | "failed" | "rejected" | "timeout" | "unavailable" | "cancelled"
    response: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


class ToolTransport(Protocol):
    def call_service(self, service: str, interface: str, request: dict[str, Any], timeout_s: float) -> "Future[ServiceOutcome]": ...

    def call_via_supervisor(self, service: str, request: dict[str, Any], timeout_s: float) -> "Future[ServiceOutcome]": ...


class WorldView(Protocol):
    def ground_point(self, x_1000: float, y_1000: float, standoff: float) -> GroundedGoal | str: ...

    def locate_object(self, name: str) -> tuple[float, float] | str: ...   # odom frame

    def robot_pose(self) -> Pose2D | str: ...                              # odom frame

    def obstacles(self, exclude: set[str]) -> list[tuple[float, float]]: ...  # known objects, odom frame

    def is_floor_area(self, name: str) -> bool: ...                        # a remembered flat area (not solid)

    def detect_objects(self) -> dict[str, Any]: ...                        # {"in_view": [...], "memory": [...]}

    def object_memory(self) -> list[dict[str, Any]]: ...                   # the memory entries of detect_objects


@dataclass
class ToolCallRecord:
    step: int
    name: str
    arguments: dict[str, Any]
    actuating: bool
    status: str                     # requested | succeeded | failed | rejected | timeout | ...
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def result_json(self) -> str:
        return json.dumps(self.result, sort_keys=True)


def supervisor_outcome(accepted: bool, success: bool, reasons: Sequence[str], response_json: str) -> ServiceOutcome:
    """A CallTool response -> ServiceOutcome (pure)."""
    try:
        response = json.loads(response_json) if response_json else {}
        if not isinstance(response, dict):
            response = {"response": response}
    except json.JSONDecodeError:
        response = {"raw_response": response_json[:500]}
    status = "rejected" if not accepted else ("succeeded" if success else "failed")
    return ServiceOutcome(status, response, list(reasons))


def add_object_memory(result: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """Put perception's memory into a describe_state-like result as "objects": inside the
    response's state_json (the state the model reads) when there is one, else beside it."""
    response = result.get("response")
    if isinstance(response, dict) and isinstance(response.get("state_json"), str):
        try:
            state = json.loads(response["state_json"])
        except json.JSONDecodeError:
            state = None
        if isinstance(state, dict):
            state["objects"] = objects
            response["state_json"] = json.dumps(state)
            return
    result["objects"] = objects


class ToolExecutor:
    """Runs one parsed call: builds the ROS request(s) and waits for the answer or a cancel."""

    def __init__(self, registry: ToolRegistry, transport: ToolTransport, world: WorldView | None,
                 grounding_standoff_m: float, object_standoff_m: float,
                 on_request_sent: Callable[[str], None] | None = None,
                 obstacle_clearance_m: float = OBSTACLE_CLEARANCE_M, area_standoff_m: float | None = None,
                 footprint_radius_m: float | None = None):
        self.registry = registry
        self.transport = transport
        self.world = world
        self.grounding_standoff_m = grounding_standoff_m
        self.object_standoff_m = object_standoff_m
        # a floor area is driven onto, not up to: the pick site (robot.yaml pick_x) over its centre, where a
        # release puts the load (at the solid objects' standoff it landed ~0.14 m short, at the area's edge)
        self.area_standoff_m = object_standoff_m if area_standoff_m is None else area_standoff_m
        # a goal pose's distance from every other object's centre (footprint None: config/robot.yaml's)
        footprint = load_robot().footprint_radius if footprint_radius_m is None else footprint_radius_m
        self.body_clearance_m = footprint + OBJECT_HALF_WIDTH_M
        self.on_request_sent = on_request_sent
        self.obstacle_clearance_m = obstacle_clearance_m

    def execute(self, call: ParsedToolCall, cancel: CancelToken) -> tuple[str, dict[str, Any]]:
        spec = self.registry[call.name]
        if spec.kind == "service":
            status, result = self._call(spec, dict(call.arguments), cancel)
            if spec.adds_object_memory and self.world is not None:
                add_object_memory(result, self.world.object_memory())
            return status, result
        if spec.kind == "perception":
            if self.world is None:
                return "failed", {"error": f"{spec.name} needs perception (no world view configured)"}
            report = self.world.detect_objects()
            return ("failed" if "error" in report else "succeeded"), report
        if self.world is None:
            return "failed", {"error": f"{spec.name} needs the camera, laser and odometry (not configured)"}
        target = self.registry[spec.target_tool]
        if spec.kind == "grounding":
            g = self.world.ground_point(call.arguments["x"], call.arguments["y"], self.grounding_standoff_m)
            if isinstance(g, str):
                return "failed", {"error": g}
            goal, extra = g.goal, {"target_odom": [round(v, 3) for v in g.target_odom], "range_source": g.source}
        else:
            where = self.world.locate_object(call.arguments["object_name"])
            looked: dict[str, Any] = {}
            if isinstance(where, str):
                look = self._look_closer(call.arguments["object_name"], target, cancel)
                if look is None:
                    return "failed", {"error": where}
                status, looked = look
                if status != "succeeded":
                    return status, looked
                where = self.world.locate_object(call.arguments["object_name"])
                if isinstance(where, str):
                    return "failed", {"error": where, **looked}
            pose = self.world.robot_pose()
            if isinstance(pose, str):
                return "failed", {"error": pose}
            name = object_key(call.arguments["object_name"])
            obstacles = self.world.obstacles({name})
            # onto an area only while nothing solid stands on it (an object delivered there before): the
            # supervisor would stop the base short of it and the drive would time out
            area = self.world.is_floor_area(name)
            onto = area and all(math.dist(o, where) > self.object_standoff_m for o in obstacles)
            standoff = self.area_standoff_m if onto else self.object_standoff_m
            route = approach_route((pose.x, pose.y), where, standoff, obstacles, self.body_clearance_m,
                                   self.obstacle_clearance_m, solid=not area)
            if isinstance(route, str):
                return "failed", {"error": approach_error(route, call.arguments["object_name"], standoff,
                                                          self.body_clearance_m, where),
                                  "object_odom": [round(v, 3) for v in where]}
            goal, waypoints = Pose2D(*route.goal), route.waypoints
            extra = {**looked, "object_odom": [round(v, 3) for v in where]}
            if waypoints:
                extra["waypoints"] = [[round(x, 3), round(y, 3)] for x, y in waypoints]
            failed = self._drive_legs(target, waypoints, extra, cancel)
            if failed is not None:
                return failed
        status, result = self._call(target, self._goal_args(target, goal, spec.kind == "object_goal"), cancel)
        for _ in range(MAX_GOAL_REFINES if spec.kind == "object_goal" else 0):
            # Perception kept looking on the way: a far target's first fix is coarse (the error grows with the
            # square of the range), and the close-up sightings moved it. Drive on to where it is now.
            now = self.world.locate_object(name) if status == "succeeded" else "not refined"
            pose = self.world.robot_pose()
            if isinstance(now, str) or isinstance(pose, str) or math.dist(now, where) <= GOAL_REFINE_M:
                break
            refined = self._approach(pose, now, standoff, self.world.obstacles({name}))
            if refined is None:
                break
            where, goal = now, refined
            extra["object_odom"] = [round(v, 3) for v in where]
            status, result = self._call(target, self._goal_args(target, goal, True), cancel)
        result.update(goal={"x": round(goal.x, 3), "y": round(goal.y, 3), "theta": round(goal.yaw, 3)}, **extra)
        return status, result

    def _drive_legs(self, target: ToolSpec, waypoints: list[tuple[float, float]], extra: dict[str, Any],
                    cancel: CancelToken) -> tuple[str, dict[str, Any]] | None:
        """Each leg to a waypoint is its own vetted go-to-pose request; the first that does not succeed ends
        the drive (returned, with `extra` and where it failed)."""
        for wx, wy in waypoints:
            status, result = self._call(target, self._goal_args(target, Pose2D(wx, wy, 0.0), False), cancel)
            if status != "succeeded":
                result.update(failed_at_waypoint=[round(wx, 3), round(wy, 3)], **extra)
                return status, result
        return None

    def _look_closer(self, name: str, target: ToolSpec, cancel: CancelToken) -> tuple[str, dict[str, Any]] | None:
        """`name` is not in memory: drive up to the one unnamed thing that may be it and let perception name it
        (look_closer.py). None: there is no such thing (or no clear place to look from). ("succeeded",
        {"looked_closer_at": ...}) once perception has named it `name`; otherwise why not."""
        key = object_key(name)
        candidate = look_candidate(key, self.world.object_memory(), self.world.is_floor_area)
        pose = self.world.robot_pose()
        if candidate is None or isinstance(pose, str):
            return None
        spot = (candidate["x"], candidate["y"])
        route = approach_route((pose.x, pose.y), spot, look_standoff((pose.x, pose.y), spot),
                               self.world.obstacles({candidate["name"]}), self.body_clearance_m,
                               self.obstacle_clearance_m, solid=False)
        if isinstance(route, str):
            return None
        looked = {"looked_closer_at": candidate["name"]}
        failed = self._drive_legs(target, route.waypoints, looked, cancel)
        if failed is not None:
            return failed
        status, result = self._call(target, self._goal_args(target, Pose2D(*route.goal), True), cancel)
        if status != "succeeded":
            result.update(looked)
            return status, result
        deadline = time.monotonic() + LOOK_WAIT_S
        while isinstance(self.world.locate_object(name), str) and time.monotonic() < deadline:
            if cancel.wait(0.1):
                return "cancelled", {"error": f"cancelled: {cancel.reason}", **looked}
        if not isinstance(self.world.locate_object(name), str):
            return "succeeded", looked
        return "failed", {"error": looked_error(key, candidate, self.world.object_memory()), **looked}

    def _approach(self, pose: Pose2D, where: tuple[float, float], standoff: float,
                  obstacles: list[tuple[float, float]]) -> Pose2D | None:
        """The pose `standoff` short of `where`, from the robot's side or, where another object stands in the
        body's way there, from the nearest bearing that is clear of it (None: none is)."""
        b = clear_approach_bearing((pose.x, pose.y), where, standoff, obstacles, self.body_clearance_m)
        if b is None:
            return None
        return Pose2D(*short_of(where, b, standoff), b)

    @staticmethod
    def _goal_args(target: ToolSpec, goal: Pose2D, use_theta: bool) -> dict[str, Any]:
        args: dict[str, Any] = {"x": goal.x, "y": goal.y}
        fields = set(target.model_fields) | set(target.fixed_fields)
        if "theta" in fields:
            args["theta"] = goal.yaw
        if "use_theta" in fields:
            args["use_theta"] = use_theta
        return {k: v for k, v in args.items() if k not in target.fixed_fields}

    def _call(self, spec: ToolSpec, arguments: dict[str, Any], cancel: CancelToken) -> tuple[str, dict[str, Any]]:
        request = {**spec.fixed_fields, **arguments}
        timeout_s = spec.call_timeout_s           # includes the operator's approval wait where one is needed
        if spec.actuating:
            fut = self.transport.call_via_supervisor(spec.service, request, timeout_s)
        else:
            fut = self.transport.call_service(spec.service, spec.interface, request, timeout_s)
        if self.on_request_sent is not None:
            self.on_request_sent(spec.name)
        # 1 s more than the supervisor's deadline (it starts on receipt): the proxy answers first, so
        # "timeout" here never leaves a call that can still act
        deadline = time.monotonic() + timeout_s + 1.0
        while not fut.done():
            if cancel.cancelled:
                fut.cancel()
                return "cancelled", {"error": f"cancelled: {cancel.reason}"}
            if time.monotonic() > deadline:
                fut.cancel()
                return "timeout", {"error": f"{spec.service} did not answer within {timeout_s} s"}
            cancel.wait(0.005)
        try:
            outcome: ServiceOutcome = fut.result()
        except Exception as exc:  # a transport failure is a failed call, never a crash of the loop
            return "failed", {"error": f"{type(exc).__name__}: {exc}"}
        result: dict[str, Any] = {"response": outcome.response}
        if outcome.reasons:
            result["reasons"] = outcome.reasons
        return outcome.status, result


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannerConfig:
    max_steps: int = 40               # tool calls per task (RunTask.max_steps = 0 uses this)
    max_parse_retries: int = 3        # consecutive malformed turns before the task fails
    max_turns: int = 80               # model turns per task (guards a model that loops on errors)
    fold_threshold_chars: int = 6000  # accumulated tool-response text beyond which old ones fold
    fold_keep_chars: int = 160        # what a folded response keeps (its beginning)
    max_images_in_context: int = 1   # frames kept in the prompt (older ones are dropped)

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_turns", "fold_threshold_chars", "fold_keep_chars"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PlannerConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.max_parse_retries < 0 or self.max_images_in_context < 0:
            raise ValueError("PlannerConfig.max_parse_retries and max_images_in_context must be >= 0")


@dataclass
class AgentEvent:
    kind: str                         # thinking | text | tool_call | tool_result | status
    text: str = ""
    tool_call: ToolCallRecord | None = None


@dataclass
class TaskResult:
    success: bool
    message: str
    steps: int
    records: list[ToolCallRecord] = field(default_factory=list)


def fold_context(messages: list[ChatMessage], cfg: PlannerConfig) -> None:
    """In place: shorten the oldest tool responses while their total exceeds the threshold,
    and keep images only on the newest `max_images_in_context` messages that have them."""
    tool_msgs = [m for m in messages if m.role == "tool"]
    total = sum(len(m.content) for m in tool_msgs)
    for m in tool_msgs[:-1]:  # never the newest
        if total <= cfg.fold_threshold_chars:
            break
        if m.folded or len(m.content) <= cfg.fold_keep_chars:
            continue
        short = m.content[:cfg.fold_keep_chars] + f"... [older tool response folded, {len(m.content)} chars]"
        total -= len(m.content) - len(short)
        m.content, m.folded = short, True
    with_images = [m for m in messages if m.images]
    for m in with_images[:max(0, len(with_images) - cfg.max_images_in_context)]:
        m.images = []


class Planner:
    def __init__(self, model: LanguageModel, registry: ToolRegistry, executor: ToolExecutor,
                 system_prompt: str, cfg: PlannerConfig = PlannerConfig(),
                 frame_source: Callable[[], list[Any]] | None = None,
                 on_event: Callable[[AgentEvent], None] | None = None,
                 on_timing: Callable[[str], None] | None = None,
                 on_turn: Callable[[int, Any], None] | None = None):
        self.model, self.registry, self.executor = model, registry, executor
        self.on_turn = on_turn or (lambda turn, stats: None)   # (turn index, model.last_stats) after each turn
        self.system_prompt, self.cfg = system_prompt, cfg
        self.frame_source = frame_source or (lambda: [])
        self.on_event = on_event or (lambda e: None)
        self.on_timing = on_timing or (lambda name: None)

    def _frames(self) -> list[Any]:
        return self.frame_source() if getattr(self.model, "sees_images", True) else []

    def _emit(self, kind: str, text: str = "", record: ToolCallRecord | None = None) -> None:
        self.on_event(AgentEvent(kind, text, record))

    def run(self, instruction: str, cancel: CancelToken, max_steps: int = 0) -> TaskResult:
        budget = max_steps or self.cfg.max_steps
        messages = [ChatMessage("system", self.system_prompt),
                    ChatMessage("user", instruction, images=self._frames())]
        records: list[ToolCallRecord] = []
        retries = 0
        tools = self.registry.function_specs()
        schemas = self.registry.schemas()
        if not self.model.is_model:
            self._emit("status", f"backend {self.model.name!r} is NOT a language model: it replays a script")
        for _turn in range(self.cfg.max_turns):
            if cancel.cancelled:
                return TaskResult(False, f"cancelled: {cancel.reason}", len(records), records)
            fold_context(messages, self.cfg)
            self.on_timing("prompt_ready")
            turn = ParsedTurn()
            parser = OutputStreamParser(schemas, self.model.start_in_thinking)
            first = [True]

            def on_text(chunk: str) -> None:
                if first[0]:
                    first[0] = False
                    self.on_timing("first_token")
                for ev in parser.feed(chunk):
                    self._on_parser_event(turn, ev)

            try:
                raw = self.model.generate(messages, tools, on_text, cancel)
            except Exception as exc:  # backend failure ends the task with its reason
                return TaskResult(False, f"model backend failed: {type(exc).__name__}: {exc}", len(records), records)
            if getattr(self.model, "last_stats", None) is not None:
                self.on_turn(_turn, self.model.last_stats)
            for ev in parser.finish():
                self._on_parser_event(turn, ev)
            if cancel.cancelled:
                return TaskResult(False, f"cancelled: {cancel.reason}", len(records), records)
            messages.append(ChatMessage("assistant", raw))
            if not turn.errors and not turn.calls and not turn.text.strip():
                # e.g. the turn ran out of tokens while thinking: neither an answer nor an action
                turn.add(ToolCallError("the turn ended without a tool call or an answer (thinking not closed "
                                       "with </think>, or nothing after it)", raw[-200:]))
            if turn.errors:
                retries += 1
                msg = {"error": "your last output was not valid; nothing from it was executed",
                       "problems": [e.message for e in turn.errors],
                       "not_executed": [c.name for c in turn.calls]}
                self._emit("status", f"malformed model output ({retries}/{self.cfg.max_parse_retries}): "
                                     + "; ".join(e.message for e in turn.errors))
                if retries > self.cfg.max_parse_retries:
                    return TaskResult(False, f"model output malformed {retries} times in a row: "
                                             + turn.errors[-1].message, len(records), records)
                messages.append(ChatMessage("tool", json.dumps(msg)))
                continue
            retries = 0
            if not turn.calls:
                return TaskResult(True, turn.text.strip(), len(records), records)
            for call in turn.calls:
                if len(records) >= budget:
                    return TaskResult(False, f"step budget spent ({budget} tool calls)", len(records), records)
                if cancel.cancelled:
                    return TaskResult(False, f"cancelled: {cancel.reason}", len(records), records)
                spec = self.registry[call.name]
                rec = ToolCallRecord(len(records), call.name, dict(call.arguments), spec.actuating, "requested")
                records.append(rec)
                self.on_timing("call_parsed")
                self._emit("tool_call", call.name, rec)
                status, result = self.executor.execute(call, cancel)
                self.on_timing("response_received")
                rec.status, rec.result = status, {"tool": call.name, "status": status, **result}
                self._emit("tool_result", rec.result_json, rec)
                if status == "cancelled":
                    return TaskResult(False, f"cancelled: {cancel.reason}", len(records), records)
                if not self.model.is_model and status != "succeeded":
                    # a replay script cannot react to a failure: playing on would claim a success it did not see
                    return TaskResult(False, f"replay stopped: {call.name} {status}: "
                                             f"{rec.result.get('error') or rec.result.get('response', '')}",
                                      len(records), records)
                messages.append(ChatMessage("tool", rec.result_json))
            frames = self._frames()
            if frames:  # show the model what its actions changed
                messages.append(ChatMessage("user", "Current camera view after the tool calls.", images=frames))
        return TaskResult(False, f"turn budget spent ({self.cfg.max_turns} model turns)", len(records), records)

    def _on_parser_event(self, turn: ParsedTurn, ev: Any) -> None:
        turn.add(ev)
        if isinstance(ev, ThinkingDelta):
            self._emit("thinking", ev.text)
        elif isinstance(ev, TextDelta):
            self._emit("text", ev.text)
        elif isinstance(ev, ToolCallError):
            self._emit("status", f"parse error: {ev.message}")
