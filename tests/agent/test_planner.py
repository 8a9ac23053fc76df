"""Planner core with doubles of the model, the ROS services and the world view."""
from __future__ import annotations

import json
import math
import threading
import time

import pytest
import yaml

from qwen_stack.paths import config_file
from qwen_stack.geometry import Pose2D
from qwen_stack.qwen_node.agent.route import DOCK_M, _closest_on_segment
from qwen_stack.qwen_node.agent.planner import (
    CancelToken, ChatMessage, Planner, PlannerConfig, ServiceOutcome, ToolExecutor, fold_context,
    supervisor_outcome)
from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry

from .doubles import ScriptedModelDouble, TransportDouble, WorldDouble
from .srv_files import srv_file_request_fields
from .tool_calls import call, planner_registry


@pytest.fixture(scope="module")
def registry():
    return planner_registry()


def make(registry, outputs, transport=None, world=None, cfg=PlannerConfig(), frames=None):
    transport = transport or TransportDouble()
    events = []
    model = ScriptedModelDouble(outputs)
    ex = ToolExecutor(registry, transport, world, grounding_standoff_m=0.3, object_standoff_m=0.22)
    planner = Planner(model, registry, ex, "SYSTEM", cfg, frame_source=frames, on_event=events.append)
    return planner, model, transport, events


def test_calls_are_executed_in_order_and_answered(registry):
    planner, model, transport, events = make(registry, [
        "<think>look first</think>" + call("describe_state") + call("drive_distance", distance="0.5", speed="0.2"),
        "<think>done</think>I drove half a metre.",
    ])
    res = planner.run("drive forward a bit", CancelToken())
    assert res.success and res.message == "I drove half a metre." and res.steps == 2
    assert transport.log == [("direct", "skills/describe_state", {}),
                             ("supervisor", "skills/drive_distance", {"distance": 0.5, "speed": 0.2})]
    # the second prompt carries both tool responses, as JSON
    tool_msgs = [json.loads(c) for r, c, _ in model.seen[1] if r == "tool"]
    assert [m["tool"] for m in tool_msgs] == ["describe_state", "drive_distance"]
    assert all(m["status"] == "succeeded" for m in tool_msgs)
    kinds = [e.kind for e in events]
    assert kinds.count("tool_call") == 2 and kinds.count("tool_result") == 2 and "thinking" in kinds
    assert "".join(e.text for e in events if e.kind == "thinking") == "look firstdone"
    assert not any("NOT a language model" in e.text for e in events if e.kind == "status")


def test_malformed_turn_executes_nothing_and_gets_an_error_response(registry):
    planner, model, transport, _ = make(registry, [
        call("describe_state") + call("drive_distance", distance="99", speed="0.1"),  # out of range: whole turn refused
        call("drive_distance", distance="1.0", speed="0.3"),
        "ok",
    ])
    res = planner.run("go", CancelToken())
    assert res.success
    assert transport.log == [("supervisor", "skills/drive_distance", {"distance": 1.0, "speed": 0.3})]
    err = json.loads([c for r, c, _ in model.seen[1] if r == "tool"][-1])
    assert "above its maximum" in err["problems"][0] and err["not_executed"] == ["describe_state"]


def test_repeated_malformed_output_fails_the_task_without_acting(registry):
    bad = call("fly", height="3")
    planner, _, transport, _ = make(registry, [bad] * 5, cfg=PlannerConfig(max_parse_retries=2))
    res = planner.run("go", CancelToken())
    assert not res.success and "malformed 3 times" in res.message and transport.log == []


def test_step_budget(registry):
    planner, _, transport, _ = make(registry, [call("describe_state")] * 10)
    res = planner.run("loop", CancelToken(), max_steps=3)
    assert not res.success and "step budget" in res.message and len(transport.log) == 3


def test_rejection_by_the_supervisor_is_reported_to_the_model(registry):
    t = TransportDouble({"skills/drive_distance": supervisor_outcome(False, False, ["e-stop latched"], "")})
    planner, model, _, _ = make(registry, [call("drive_distance", distance="1", speed="0.1"), "I could not move."], t)
    res = planner.run("go", CancelToken())
    assert res.records[0].status == "rejected"
    resp = json.loads([c for r, c, _ in model.seen[1] if r == "tool"][0])
    assert resp["status"] == "rejected" and resp["reasons"] == ["e-stop latched"]


def test_cancel_during_a_tool_call_returns_at_once(registry):
    t = TransportDouble(block={"skills/go_to_pose"})
    planner, _, _, _ = make(registry, [call("go_to_pose", x="1", y="2", theta="0", use_theta="false"), "x"], t)
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel, args=("e-stop latched",)).start()
    t0 = time.monotonic()
    res = planner.run("go", cancel)
    took = time.monotonic() - t0
    t.released.set()
    assert not res.success and res.message == "cancelled: e-stop latched"
    assert res.records[0].status == "cancelled"
    assert took < 5.0  # the blocked call would hold it for 10 s; this bounds a hang, not latency


def test_cancel_before_the_model_turn_stops_without_calling_the_model(registry):
    planner, model, transport, _ = make(registry, [call("describe_state")])
    cancel = CancelToken()
    cancel.cancel("operator took over")
    res = planner.run("go", cancel)
    assert res.message == "cancelled: operator took over" and model.seen == [] and transport.log == []


def test_grounding_tool_goes_through_go_to_pose_via_supervisor(registry):
    world = WorldDouble()
    planner, _, transport, _ = make(registry, [call("go_to_point", x="500", y="900"), "there"], world=world)
    res = planner.run("go to the spot", CancelToken())
    assert world.grounded == [(500.0, 900.0, 0.3)]
    assert transport.log == [("supervisor", "skills/go_to_pose",
                              {"x": 0.7, "y": 0.0, "theta": 0.0, "use_theta": False, "max_speed": 0.0})]
    assert res.records[0].result["goal"] == {"x": 0.7, "y": 0.0, "theta": 0.0}


def test_object_goal_approaches_the_object_facing_it(registry):
    world = WorldDouble({"red_cube": (2.0, 0.0)}, pose=Pose2D(0.0, 0.0, 1.0))
    planner, _, transport, _ = make(registry, [call("go_to_object", object_name="red_cube"),
                                               call("go_to_object", object_name="unicorn"), "done"], world=world)
    res = planner.run("fetch", CancelToken())
    route, service, req = transport.log[0]
    assert (route, service) == ("supervisor", "skills/go_to_pose")
    assert req["x"] == pytest.approx(2.0 - 0.22) and req["y"] == pytest.approx(0.0) and req["use_theta"] is True
    assert res.records[1].status == "failed" and "unicorn" in res.records[1].result["error"]
    assert len(transport.log) == 1


def test_detect_objects_answers_from_the_world_view_without_a_service(registry):
    world = WorldDouble({"red_cube": (2.0, 0.0)})
    planner, model, transport, _ = make(registry, [call("detect_objects"), "seen"], world=world)
    res = planner.run("what do you see", CancelToken())
    assert res.success and transport.log == []               # no ROS service, nothing actuated
    tool = json.loads(next(c for r, c, _ in model.seen[1] if r == "tool"))
    assert tool == {"tool": "detect_objects", "status": "succeeded", "in_view": ["red_cube"],
                    "memory": [{"name": "red_cube", "x": 2.0, "y": 0.0}]}
    planner, _, _, _ = make(registry, [call("detect_objects"), "seen"], world=None)
    res = planner.run("what do you see", CancelToken())
    assert res.records[0].status == "failed" and "needs perception" in res.records[0].result["error"]


def test_describe_state_carries_the_object_memory_inside_its_state(registry):
    state = {"odom_frame_pose": {"x": 0.0, "y": 0.0, "theta": 0.0}, "held_object": None}
    transport = TransportDouble({"skills/describe_state": ServiceOutcome(
        "succeeded", {"success": True, "state_json": json.dumps(state)})})
    world = WorldDouble({"blue_square": (1.0, 1.0)})
    planner, _, _, _ = make(registry, [call("describe_state"), "ok"], transport=transport, world=world)
    res = planner.run("where am I", CancelToken())
    got = json.loads(res.records[0].result["response"]["state_json"])
    assert got == {**state, "objects": [{"name": "blue_square", "x": 1.0, "y": 1.0}]}
    # a response without a state_json: the memory goes beside it
    planner, _, _, _ = make(registry, [call("describe_state"), "ok"], world=world)
    res = planner.run("where am I", CancelToken())
    assert res.records[0].result["objects"] == [{"name": "blue_square", "x": 1.0, "y": 1.0}]


def test_context_folding_keeps_totals_bounded_and_newest_intact():
    cfg = PlannerConfig(fold_threshold_chars=1000, fold_keep_chars=50, max_images_in_context=1)
    msgs = [ChatMessage("system", "s"), ChatMessage("user", "task", images=["f0"])]
    for i in range(10):
        msgs.append(ChatMessage("tool", f"{i}:" + "x" * 400))
        msgs.append(ChatMessage("user", "view", images=[f"f{i + 1}"]))
        fold_context(msgs, cfg)
    tools = [m for m in msgs if m.role == "tool"]
    assert sum(len(m.content) for m in tools) <= 1000 + 400
    assert not tools[-1].folded and tools[-1].content == "9:" + "x" * 400
    assert tools[0].folded and tools[0].content.startswith("0:xxx") and "folded" in tools[0].content
    assert [m.images for m in msgs if m.images] == [["f10"]]


def test_frames_are_attached_to_the_task_and_after_actions(registry):
    planner, model, _, _ = make(registry, [call("describe_state"), "done"], frames=lambda: ["frame"])
    planner.run("look", CancelToken())
    assert model.seen[0][1] == ("user", "look", 1)
    assert model.seen[1][-1] == ("user", "Current camera view after the tool calls.", 1)
    assert model.seen[1][1][2] == 0  # the older frame was dropped (max_images_in_context=1)


def test_a_text_only_model_gets_no_frames_and_no_frame_turns(registry):
    """A checkpoint without a vision tower (the stand-in brain) with camera raw: the conversation is the
    one it was trained on, tool responses straight after its calls; no "Current camera view" user turn,
    which the brain read as a new task (it started over 40 times in the default demo)."""
    planner, model, _, _ = make(registry, [call("describe_state"), "done"], frames=lambda: ["frame"])
    model.sees_images = False
    planner.run("look", CancelToken())
    assert model.seen[0][1] == ("user", "look", 0)
    assert [r for r, _, _ in model.seen[1]] == ["system", "user", "assistant", "tool"]


def test_backend_failure_ends_the_task_with_its_reason(registry):
    planner, _, _, _ = make(registry, [])
    res = planner.run("go", CancelToken())
    assert not res.success and "model backend failed: IndexError" in res.message


@pytest.mark.parametrize("bad", [dict(max_steps=0), dict(max_parse_retries=-1), dict(fold_threshold_chars=0)])
def test_planner_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="PlannerConfig"):
        PlannerConfig(**bad)


def test_a_turn_with_only_thinking_is_not_an_answer(registry):
    planner, model, transport, _ = make(registry, ["<think>hmm, still thinking when tokens ran out", "Done."])
    res = planner.run("go", CancelToken())
    assert res.success and res.message == "Done."
    err = json.loads([c for r, c, _ in model.seen[1] if r == "tool"][-1])
    assert "without a tool call or an answer" in err["problems"][0]


def test_object_goal_detours_around_a_known_obstacle(registry):
    world = WorldDouble({"red_cube": (3.0, 0.0), "grey_crate": (1.5, 0.0)}, pose=Pose2D(0.0, 0.0, 0.0))
    planner, _, transport, _ = make(registry, [call("go_to_object", object_name="red_cube"), "done"], world=world)
    res = planner.run("fetch", CancelToken())
    legs = [req for _, service, req in transport.log if service == "skills/go_to_pose"]
    assert len(legs) == 3 and [leg["use_theta"] for leg in legs] == [False, False, True]
    assert abs(legs[0]["y"]) > 0.4                     # around the crate
    # then head-on up to the cube: a docking point DOCK_M further out on the line of the approach
    assert (legs[1]["x"], legs[1]["y"]) == pytest.approx((3.0 - 0.22 - DOCK_M, 0.0), abs=1e-6)
    assert (legs[2]["x"], legs[2]["y"]) == pytest.approx((3.0 - 0.22, 0.0), abs=1e-6)
    path = [(0.0, 0.0), (legs[0]["x"], legs[0]["y"]), (legs[1]["x"], legs[1]["y"])]
    for a, b in zip(path, path[1:]):
        assert _closest_on_segment(a, b, (1.5, 0.0))[2] >= 0.5 - 2e-3
        assert _closest_on_segment(a, b, (3.0, 0.0))[2] >= 0.5 - 2e-3     # the target too, until docking
    assert res.records[0].result["waypoints"] == [[round(leg["x"], 3), round(leg["y"], 3)] for leg in legs[:2]]


@pytest.mark.parametrize("name, standoff, delivered", [("red_cube", 0.36, None), ("blue_square", 0.22, None),
                                                       ("blue_square", 0.36, (0.1, 2.05))])
def test_a_floor_area_is_driven_onto_with_the_pick_site_over_its_centre(registry, name, standoff, delivered):
    """A solid object is approached to the object standoff; a floor area (not solid) to the area standoff, the
    robot's pick site (robot.yaml pick_x), so a release there puts the load on the area's centre. At the
    objects' 0.36 m a released cylinder landed 0.28 m from the centre of a 0.25 m half-size square: outside it,
    with the release reported done (simulator, runs/brain_eval_sim9 none-15). An area that already holds a
    solid object (delivered before) is approached as an object: the supervisor would stop the base short."""
    objects = {"red_cube": (2.0, 0.0), "blue_square": (0.0, 2.0)} | ({"green_cube": delivered} if delivered else {})
    world = WorldDouble(objects, solid={"red_cube", "green_cube"})
    transport = TransportDouble()
    ex = ToolExecutor(registry, transport, world, grounding_standoff_m=0.3, object_standoff_m=0.36,
                      area_standoff_m=0.22)
    planner = Planner(ScriptedModelDouble([call("go_to_object", object_name=name), "done"]), registry, ex, "SYSTEM",
                      PlannerConfig())
    planner.run("go", CancelToken())
    (leg,) = [req for _, service, req in transport.log if service == "skills/go_to_pose"]
    assert math.dist((leg["x"], leg["y"]), world.objects[name]) == pytest.approx(standoff)


class RefiningWorld(WorldDouble):
    """Perception's memory after each drive (a test double): the far first fix of the blue square is 0.4 m
    off; the close-up sightings on the way correct it, then it stays (5 cm jitter is not a new goal)."""

    def __init__(self, fixes):
        super().__init__({"blue_square": fixes[0]}, pose=Pose2D(0.0, 0.0, 0.0), solid=set())
        self.fixes = list(fixes)

    def locate_object(self, name):
        return self.fixes.pop(0) if len(self.fixes) > 1 else self.fixes[0]


@pytest.mark.parametrize("fixes, drives", [
    ([(3.4, 0.0), (3.0, 0.0), (3.05, 0.0)], 2),            # corrected once, then within 0.1 m
    ([(3.0, 0.0), (3.04, 0.03)], 1),                         # already right: no second drive
    ([(3.8, 0.0), (3.4, 0.0), (3.0, 0.0), (2.6, 0.0)], 3),  # keeps moving: two corrections at most
])
def test_object_goal_drives_on_to_where_perception_places_the_target_after_the_drive(registry, fixes, drives):
    world = RefiningWorld(fixes)
    planner, _, transport, _ = make(registry, [call("go_to_object", object_name="blue_square"), "done"], world=world)
    res = planner.run("go to the blue square", CancelToken())
    legs = [req for _, service, req in transport.log if service == "skills/go_to_pose"]
    assert len(legs) == drives and all(leg["use_theta"] is True for leg in legs)
    last = fixes[min(drives, len(fixes)) - 1]
    assert res.records[0].result["object_odom"] == [round(v, 3) for v in last]
    assert legs[-1]["x"] == pytest.approx(last[0] - 0.22) and res.records[0].result["goal"]["x"] == round(legs[-1]["x"], 3)


def test_a_failed_drive_is_not_refined(registry):
    t = TransportDouble({"skills/go_to_pose": supervisor_outcome(False, False, ["too fast"], "")})
    world = RefiningWorld([(3.4, 0.0), (3.0, 0.0)])
    planner, _, transport, _ = make(registry, [call("go_to_object", object_name="blue_square"), "done"], t, world)
    res = planner.run("go", CancelToken())
    assert len(transport.log) == 1 and res.records[0].status == "rejected"


def test_a_replay_stops_at_the_first_failed_call_instead_of_claiming_success(registry):
    t = TransportDouble({"skills/drive_distance": supervisor_outcome(False, False, ["e-stop latched"], "")})
    planner, model, _, events = make(registry, [call("drive_distance", distance="1", speed="0.1"), "Done, I moved."], t)
    model.is_model = False  # as the replay backend: it cannot read the tool response
    res = planner.run("go", CancelToken())
    assert events[0].kind == "status" and "NOT a language model" in events[0].text
    assert not res.success and "replay stopped: drive_distance rejected" in res.message
    assert len(model.seen) == 1, "the script's next turn is never played"


def test_deadline_sent_to_the_supervisor_includes_the_approval_wait():
    """Issue 16 item 6: release (operator approval in the safety policy) is given its timeout_s plus
    approval_wait_s, and that whole deadline travels to the supervisor, which acts on nothing after it."""
    policy = yaml.safe_load(config_file("safety_policy.yaml").read_text())
    tools = yaml.safe_load(config_file("tools.yaml").read_text())
    reg = ToolRegistry.from_dict(tools, srv_file_request_fields, policy)

    class Recording(TransportDouble):
        def call_via_supervisor(self, service, request, timeout_s):
            self.timeouts = getattr(self, "timeouts", []) + [(service, timeout_s)]
            return super().call_via_supervisor(service, request, timeout_s)

    planner, _, transport, _ = make(reg, [call("release") + call("drive_distance", distance="0.5", speed="0.2"),
                                          "done"], transport=Recording())
    assert planner.run("put it down", CancelToken()).success
    release, drive = reg["release"], reg["drive_distance"]
    assert transport.timeouts == [("skills/release", release.timeout_s + tools["approval_wait_s"]),
                                  ("skills/drive_distance", drive.timeout_s)]


def test_an_approach_blocked_by_a_neighbour_comes_from_the_nearest_clear_side(registry):
    """The layout of runs/brain_eval_sim9 none-16: the straight approach to the blue cylinder ended 0.26 m from
    the yellow cylinder (the body's footprint is 0.22 m); the supervisor held the base short of it and the drive
    timed out ten times over. The goal now keeps the footprint and an object's half-width (0.31 m) from every
    other remembered object, coming from the nearest clear bearing."""
    objects = {"blue_cylinder": (-0.14, 2.14), "yellow_cylinder": (-0.29, 1.59), "orange_cube": (0.13, 1.45)}
    world = WorldDouble(objects, pose=Pose2D(0.0, 0.0, 0.0))
    straight = (-0.14 + 0.36 * 0.14 / math.hypot(0.14, 2.14), 2.14 - 0.36 * 2.14 / math.hypot(0.14, 2.14))
    assert math.dist(straight, objects["yellow_cylinder"]) < 0.27          # the old goal, in the cylinder's way
    transport = TransportDouble()
    ex = ToolExecutor(registry, transport, world, grounding_standoff_m=0.3, object_standoff_m=0.36,
                      footprint_radius_m=0.22)
    planner = Planner(ScriptedModelDouble([call("go_to_object", object_name="blue_cylinder"), "done"]), registry, ex,
                      "SYSTEM", PlannerConfig())
    planner.run("go", CancelToken())
    legs = [req for _, service, req in transport.log if service == "skills/go_to_pose"]
    leg = legs[-1]
    assert math.dist((leg["x"], leg["y"]), objects["blue_cylinder"]) == pytest.approx(0.36)
    for other in ("yellow_cylinder", "orange_cube"):
        assert math.dist((leg["x"], leg["y"]), objects[other]) >= 0.31
    # runs/brain_eval_sim12: that goal was clear, but the straight leg to it ran through the 0.44 m gap between
    # the two (the base held in it, 5 s a try): every leg now keeps the body's clearance from both
    path = [(0.0, 0.0)] + [(req["x"], req["y"]) for req in legs]
    assert len(path) > 2
    for a, b in zip(path, path[1:]):
        for other in ("yellow_cylinder", "orange_cube"):
            assert _closest_on_segment(a, b, objects[other])[2] >= 0.31
    # facing the target
    assert leg["theta"] == pytest.approx(math.atan2(2.14 - leg["y"], -0.14 - leg["x"]), abs=1e-6)


@pytest.mark.parametrize("radius, count, error", [
    (0.4, 6, "no pose 0.36 m from 'red_cube' keeps the robot 0.31 m from the other objects"),  # no clear approach
    (0.9, 10, "no route to 'red_cube' keeps the robot clear"),   # 0.56 m gaps: the 0.44 m robot cannot pass
])
def test_an_object_walled_in_fails_at_once_without_driving(registry, radius, count, error):
    ring = {f"grey_crate_{i}": (2.0 + radius * math.cos(2 * i * math.pi / count),
                                radius * math.sin(2 * i * math.pi / count)) for i in range(count)}
    world = WorldDouble({"red_cube": (2.0, 0.0), **ring})
    transport = TransportDouble()
    ex = ToolExecutor(registry, transport, world, grounding_standoff_m=0.3, object_standoff_m=0.36,
                      footprint_radius_m=0.22)
    planner = Planner(ScriptedModelDouble([call("go_to_object", object_name="red_cube"), "done"]), registry, ex,
                      "SYSTEM", PlannerConfig())
    res = planner.run("go", CancelToken())
    assert transport.log == [] and res.records[0].status == "failed"
    assert error in res.records[0].result["error"] and "cannot be reached; ask the operator" in res.records[0].result["error"]


def test_each_model_turn_reports_its_generation_figures(registry):
    """A backend with last_stats (the local engine) has each turn's figures passed to on_turn, which qwen_node
    logs as a line the simulator bench reads back; a backend without them (replay) reports nothing."""
    from qwen_stack.qwen_node.agent.backends.local import GenerationStats, parse_turn_stats

    outputs = ["<think>look</think>" + call("describe_state"), "<think>done</think>Nothing to do."]
    model = ScriptedModelDouble(list(outputs))
    ex = ToolExecutor(registry, TransportDouble(), None, grounding_standoff_m=0.3, object_standoff_m=0.22)
    turns = []
    Planner(model, registry, ex, "SYSTEM", on_turn=lambda t, s: turns.append((t, s))).run("look", CancelToken())
    assert turns == []                    # no last_stats: nothing to report
    model = ScriptedModelDouble(list(outputs))
    model.last_stats = GenerationStats(prompt_tokens=1500, completion_tokens=41, first_token_s=0.1, total_s=0.3)
    Planner(model, registry, ex, "SYSTEM", on_turn=lambda t, s: turns.append((t, s))).run("look", CancelToken())
    assert [t for t, _ in turns] == [0, 1] and turns[0][1] is model.last_stats
    assert turns[0][1].decode_tok_s == pytest.approx(200.0)
    log = "[INFO] [qwen_node]: " + turns[0][1].log_line(0) + "\n[INFO] other\n[INFO] [qwen_node]: " + \
        GenerationStats(1600, 1, "stop_token", "", 0.2, 0.2).log_line(1)
    got = parse_turn_stats(log)
    assert [(g["turn"], g["prompt_tokens"], g["completion_tokens"]) for g in got] == [(0, 1500, 41), (1, 1600, 1)]
    assert got[0]["decode_tok_s"] == pytest.approx(200.0) and got[1]["decode_tok_s"] == 0.0
