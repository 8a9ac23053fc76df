"""Test doubles of the planner's ROS-side interfaces (named as doubles: they are not the robot)."""
from __future__ import annotations

import threading
from concurrent.futures import Future

from qwen_stack.geometry import Pose2D
from qwen_stack.qwen_node.agent.grounding import GroundedGoal
from qwen_stack.qwen_node.agent.planner import ServiceOutcome


class TransportDouble:
    """Records every request; answers from `answers[service]` (default: succeeded, empty)."""

    def __init__(self, answers: dict[str, ServiceOutcome] | None = None, block: set[str] | None = None):
        self.answers = answers or {}
        self.block = block or set()        # services that never answer until released
        self.released = threading.Event()
        self.log: list[tuple[str, str, dict]] = []   # (route, service, request)

    def _answer(self, service: str) -> Future:
        fut: Future = Future()
        if service in self.block:
            def later():
                self.released.wait(10)
                if not fut.cancelled():
                    fut.set_result(ServiceOutcome("succeeded"))
            threading.Thread(target=later, daemon=True).start()
        else:
            fut.set_result(self.answers.get(service, ServiceOutcome("succeeded", {"success": True})))
        return fut

    def call_service(self, service, interface, request, timeout_s):
        self.log.append(("direct", service, dict(request)))
        return self._answer(service)

    def call_via_supervisor(self, service, request, timeout_s):
        self.log.append(("supervisor", service, dict(request)))
        return self._answer(service)


class WorldDouble:
    def __init__(self, objects: dict[str, tuple[float, float]] | None = None, pose: Pose2D = Pose2D(0, 0, 0),
                 solid: set[str] | None = None):
        self.objects = objects or {}
        self.solid = set(solid if solid is not None else self.objects)
        self.pose = pose
        self.grounded: list[tuple[float, float, float]] = []

    def ground_point(self, x, y, standoff):
        self.grounded.append((x, y, standoff))
        return GroundedGoal((1.0, 0.0), (1.0, 0.0), Pose2D(1.0 - standoff, 0.0, 0.0), "floor", 1.0)

    def locate_object(self, name):
        return self.objects.get(name, f"no object named {name!r}")

    def robot_pose(self):
        return self.pose

    def obstacles(self, exclude):
        return [xy for n, xy in self.objects.items() if n not in exclude and n in self.solid]

    def is_floor_area(self, name):
        return name in self.objects and name not in self.solid

    def detect_objects(self):
        memory = [{"name": n, "x": xy[0], "y": xy[1]} for n, xy in self.objects.items()]
        return {"in_view": sorted(self.objects), "memory": memory}

    def object_memory(self):
        return self.detect_objects()["memory"]


class ScriptedModelDouble:
    """Plays fixed outputs in 5-character chunks and records the messages it was given.

    Stands in for a model (is_model True): the loop treats it as one that reads tool responses."""
    is_model = True
    start_in_thinking = False
    name = "scripted-double"

    def __init__(self, outputs: list[str], on_turn=None):
        self.outputs = list(outputs)
        self.seen: list[list] = []
        self.on_turn = on_turn

    def generate(self, messages, tools, on_text, cancel):
        self.seen.append([(m.role, m.content, len(m.images)) for m in messages])
        if self.on_turn:
            self.on_turn(len(self.seen))
        text = self.outputs.pop(0)
        for i in range(0, len(text), 5):
            on_text(text[i:i + 5])
        return text
