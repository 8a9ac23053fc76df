"""go_to_object for a name perception has not given yet: the look closer at the one unnamed thing of its
colour (agent/look_closer.py), pure and through the planner with doubles of perception and the base."""
from __future__ import annotations

import math

import pytest

from qwen_stack.geometry import Pose2D
from qwen_stack.perception.names import is_unnamed, named_parts, unnamed
from qwen_stack.qwen_node.agent.look_closer import LOOK_M, look_candidate, looked_error
from qwen_stack.qwen_node.agent.planner import CancelToken, Planner, PlannerConfig, ToolExecutor

from .doubles import ScriptedModelDouble, TransportDouble, WorldDouble
from .tool_calls import call, planner_registry


@pytest.fixture(scope="module")
def registry():
    return planner_registry()


def entry(name, x, y, shape="object"):
    return {"name": name, "colour": name.split("_")[0], "shape": shape, "x": x, "y": y}


def test_names():
    assert unnamed("green", 3) == "green_object_3" and is_unnamed("green_object_3")
    assert not is_unnamed("green_square") and not is_unnamed("green_object") and not is_unnamed("red_cube_2")
    assert named_parts("green_square") == ("green", "square") and named_parts("dark_blue_ball") == ("dark_blue", "ball")
    assert named_parts("red_cube_2") is None and named_parts("green_object_1") is None and named_parts("cube") is None


@pytest.mark.parametrize("name, memory, areas, expect", [
    ("green_square", [entry("green_object_1", 4, 0), entry("red_cube", 1, 0)], {"green_object_1"}, "green_object_1"),
    ("green_square", [entry("green_object_1", 4, 0)], set(), None),                       # solid: not the area
    ("green_cylinder", [entry("green_object_1", 4, 0)], set(), "green_object_1"),
    ("green_cylinder", [entry("green_object_1", 4, 0)], {"green_object_1"}, None),        # an area: not the object
    ("green_cylinder", [entry("green_object_1", 4, 0), entry("green_object_2", 0, 4)], set(), None),  # which one?
    ("green_cylinder", [entry("blue_object_1", 4, 0)], set(), None),                      # another colour
    ("green_cylinder_2", [entry("green_object_1", 4, 0)], set(), None),                   # perception's numbering
    ("green_object_1", [entry("green_object_2", 4, 0)], set(), None),                     # an unnamed name itself
    ("the_green_thing", [entry("green_object_1", 4, 0)], set(), None),
])
def test_the_candidate_is_the_one_unnamed_thing_of_the_colour_and_kind(name, memory, areas, expect):
    found = look_candidate(name, memory, areas.__contains__)
    assert (found["name"] if found else None) == expect


@pytest.mark.parametrize("after, says", [
    ([entry("green_ball", 4.1, 0.05, "ball")], "it is green_ball"),
    ([entry("green_object_1", 4.0, 0.0, "cube")], "still cannot name it (green_object_1, shape so far: cube)"),
    ([entry("green_ball", 2.0, 0.0, "ball")], "did not see it there again"),             # another one, elsewhere
    ([], "did not see it there again"),
])
def test_the_error_after_the_look_says_what_the_thing_turned_out_to_be(after, says):
    err = looked_error("green_cylinder", entry("green_object_1", 4.0, 0.0), after)
    assert says in err and "no object named 'green_cylinder'" in err and "look around for green_cylinder" in err


class PerceptionDouble(WorldDouble):
    """Perception's memory as the robot moves (a test double): an unnamed entry is renamed `becomes[name]` (or
    forgotten, for None) once the robot stands within `names_within` of it."""

    def __init__(self, objects, becomes, solid=(), names_within=1.5):
        super().__init__(dict(objects), pose=Pose2D(0.0, 0.0, 0.0), solid=set(solid))
        self.becomes, self.names_within = dict(becomes), names_within
        self.shapes = {}

    def moved_to(self, x, y, yaw):
        self.pose = Pose2D(x, y, yaw)
        for old, new in list(self.becomes.items()):
            if old in self.objects and math.dist((x, y), self.objects[old]) <= self.names_within + 1e-6:
                xy = self.objects.pop(old)
                if new is not None:
                    self.objects[new] = xy
                    if old in self.solid:
                        self.solid.add(new)

    def detect_objects(self):
        memory = [entry(n, *xy, self.shapes.get(n, "object")) for n, xy in self.objects.items()]
        return {"in_view": sorted(self.objects), "memory": memory}


class BaseDouble(TransportDouble):
    """go_to_pose moves the perception double's robot to the goal (a test double of the base)."""

    def __init__(self, world, **kw):
        super().__init__(**kw)
        self.world = world

    def call_via_supervisor(self, service, request, timeout_s):
        fut = super().call_via_supervisor(service, request, timeout_s)
        if service == "skills/go_to_pose" and fut.result().status == "succeeded":
            self.world.moved_to(request["x"], request["y"], request.get("theta", 0.0))
        return fut


def run(registry, world, name, transport=None):
    transport = transport or BaseDouble(world)
    ex = ToolExecutor(registry, transport, world, grounding_standoff_m=0.3, object_standoff_m=0.36,
                      area_standoff_m=0.22, footprint_radius_m=0.22)
    planner = Planner(ScriptedModelDouble([call("go_to_object", object_name=name), "done"]), registry, ex, "SYSTEM",
                      PlannerConfig())
    res = planner.run("go", CancelToken())
    legs = [req for _, service, req in transport.log if service == "skills/go_to_pose"]
    return res.records[0], legs


def test_a_far_unnamed_area_is_looked_at_closer_then_driven_onto(registry):
    """runs/brain_eval_sim15 none-16: the green square 4 m away was green_object_1 in memory."""
    world = PerceptionDouble({"green_object_1": (4.0, 0.0), "orange_cube": (-1.0, 0.0)},
                             {"green_object_1": "green_square"}, solid={"orange_cube"})
    rec, legs = run(registry, world, "green_square")
    assert rec.status == "succeeded" and rec.result["looked_closer_at"] == "green_object_1"
    look, onto = legs
    assert (look["x"], look["y"], look["theta"], look["use_theta"]) == pytest.approx((4.0 - LOOK_M, 0.0, 0.0, True))
    assert (onto["x"], onto["y"]) == pytest.approx((4.0 - 0.22, 0.0))
    assert rec.result["object_odom"] == [4.0, 0.0]


def test_a_far_unnamed_object_is_looked_at_then_approached_head_on(registry):
    world = PerceptionDouble({"red_object_1": (0.0, 3.5)}, {"red_object_1": "red_cylinder"}, solid={"red_object_1"})
    rec, legs = run(registry, world, "red_cylinder")
    assert rec.status == "succeeded" and rec.result["looked_closer_at"] == "red_object_1"
    assert (legs[0]["x"], legs[0]["y"]) == pytest.approx((0.0, 3.5 - LOOK_M))
    assert (legs[-1]["x"], legs[-1]["y"]) == pytest.approx((0.0, 3.5 - 0.36))


@pytest.mark.parametrize("becomes, says", [("green_ball", "it is green_ball"), (None, "did not see it there again"),
                                           ("green_object_1", "still cannot name it")])
def test_a_look_that_does_not_confirm_the_name_fails_after_the_look_only(registry, becomes, says):
    """Only the look is driven on an unconfirmed name: never the approach (a grasp would follow it)."""
    world = PerceptionDouble({"green_object_1": (3.0, 0.0)}, {"green_object_1": becomes}, solid={"green_object_1"})
    if becomes == "green_object_1":
        world.becomes = {}
    rec, legs = run(registry, world, "green_cylinder")
    assert rec.status == "failed" and says in rec.result["error"]
    assert rec.result["looked_closer_at"] == "green_object_1"
    assert len(legs) == 1 and legs[0]["x"] == pytest.approx(3.0 - LOOK_M)


def test_near_the_thing_already_the_look_only_turns_to_face_it(registry):
    world = PerceptionDouble({"green_object_1": (0.0, 0.6)}, {"green_object_1": "green_cube"}, solid={"green_object_1"},
                             names_within=0.7)
    rec, legs = run(registry, world, "green_cube")
    assert rec.status == "succeeded"
    assert (legs[0]["x"], legs[0]["y"], legs[0]["theta"]) == pytest.approx((0.0, 0.0, math.pi / 2), abs=1e-6)


@pytest.mark.parametrize("objects, areas", [
    ({"green_object_1": (3.0, 0.0), "green_object_2": (0.0, 3.0)}, set()),   # two candidates: which one?
    ({"blue_object_1": (3.0, 0.0)}, set()),                                   # none of the colour
    ({"green_object_1": (3.0, 0.0)}, {"green_object_1"}),                     # an area, not a cylinder
])
def test_without_one_candidate_nothing_moves_and_the_name_is_not_in_memory(registry, objects, areas):
    world = PerceptionDouble(objects, {}, solid=set(objects) - areas)
    rec, legs = run(registry, world, "green_cylinder")
    assert legs == [] and rec.status == "failed" and rec.result["error"].startswith("no object named 'green_cylinder'")
    assert "looked_closer_at" not in rec.result


def test_a_refused_look_is_reported_as_refused(registry):
    from qwen_stack.qwen_node.agent.planner import supervisor_outcome
    world = PerceptionDouble({"green_object_1": (3.0, 0.0)}, {"green_object_1": "green_cylinder"},
                             solid={"green_object_1"})
    t = BaseDouble(world, answers={"skills/go_to_pose": supervisor_outcome(False, False, ["e-stop latched"], "")})
    rec, legs = run(registry, world, "green_cylinder", t)
    assert rec.status == "rejected" and rec.result["reasons"] == ["e-stop latched"] and len(legs) == 1
    assert rec.result["looked_closer_at"] == "green_object_1"
