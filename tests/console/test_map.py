"""The console map's pure parts: zones from safety/zones, laser points in odom, objects, the goal, throttling."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qwen_stack.console.mapview import MAX_OBJECTS, MAX_SCAN_POINTS, MapView, parse_zones, scan_points
from qwen_stack.console.config import ConsoleConfigError, ConsoleSettings
from qwen_stack.console.state import ConsoleState

ZONES = {"format": 1, "robot_radius": 0.25, "laser": {"x": 0.1, "y": 0.0, "yaw": 0.0},
         "stop_zone": [[0.45, 0.3], [0.45, -0.3], [-0.35, -0.3], [-0.35, 0.3]],
         "slowdown_zone": [[1.0, 0.5], [1.0, -0.5], [-0.6, -0.5], [-0.6, 0.5]],
         "geofence": [[-5, -5], [5, -5], [5, 5], [-5, 5]],
         "keep_out": {"table": [[2, 1], [3, 1], [3, 2], [2, 2]]}}


def test_zones_parsed_and_bad_zones_refused_with_a_reason():
    zones, why = parse_zones(json.dumps(ZONES))
    assert why == "" and zones["keep_out"] == [{"name": "table", "polygon": [[2.0, 1.0], [3.0, 1.0], [3.0, 2.0],
                                                                               [2.0, 2.0]]}]
    assert zones["robot_radius"] == 0.25 and zones["laser"] == {"x": 0.1, "y": 0.0, "yaw": 0.0}
    assert parse_zones("not json") == (None, "safety/zones is not JSON")
    assert "robot_radius" in parse_zones(json.dumps({**ZONES, "robot_radius": -1}))[1]
    bad = json.dumps({**ZONES, "geofence": [[0, 0], [1, 0]]})
    assert parse_zones(bad)[0] is None and "geofence" in parse_zones(bad)[1]
    nan = json.dumps({**ZONES, "keep_out": {"t": [[0, 0], [1, 0], [float("nan"), 1]]}})   # Python writes NaN
    assert parse_zones(nan)[0] is None and "'t'" in parse_zones(nan)[1]
    huge = json.dumps({**ZONES, "keep_out": {"t": [[0, 0], [1e300, 0], [1, 1]]}})
    assert parse_zones(huge)[0] is None
    m = MapView()
    m.on_zones(bad)
    assert m.zones is None and "geofence" in m.as_dict()["zones_error"]
    # creep_zone: absent or [] (creep off) is none to draw; a bad one is refused like the others
    assert zones["creep_zone"] == [] and parse_zones(json.dumps({**ZONES, "creep_zone": []}))[0]["creep_zone"] == []
    creep = [[0.28, 0.26], [0.28, -0.26], [-0.27, -0.26], [-0.27, 0.26]]
    assert parse_zones(json.dumps({**ZONES, "creep_zone": creep}))[0]["creep_zone"] == creep
    assert "creep_zone" in parse_zones(json.dumps({**ZONES, "creep_zone": [[0, 0], [1, 0]]}))[1]


def test_scan_points_in_odom_with_mount_and_pose_downsampled():
    # a beam straight ahead at 2 m, robot at (1, 2) facing +y, laser 0.1 m ahead of the base
    pts = scan_points(0.0, 0.1, 0.05, 10.0, np.array([2.0]), (1.0, 2.0, math.pi / 2), {"x": 0.1, "y": 0.0, "yaw": 0.0})
    assert pts == [[1.0, 4.1]]
    ranges = np.full(1000, 3.0)
    ranges[::2] = np.inf                      # no return: not drawn
    ranges[1] = np.nan
    pts = scan_points(-math.pi, 2 * math.pi / 1000, 0.05, 10.0, ranges, (0.0, 0.0, 0.0), {"x": 0, "y": 0, "yaw": 0})
    assert 0 < len(pts) <= MAX_SCAN_POINTS
    assert all(abs(math.hypot(x, y) - 3.0) < 1e-3 for x, y in pts)
    assert scan_points(0.0, float("nan"), 0.05, 10.0, np.ones(5), (0, 0, 0), {"x": 0, "y": 0, "yaw": 0}) == []


def test_scan_placed_with_the_pose_at_its_time():
    m = MapView()
    m.on_pose(0.0, 0.0, 0.0, stamp=10.0)
    m.on_pose(5.0, 0.0, 0.0, stamp=11.0)
    m.on_scan(0.0, 0.1, 0.05, 10.0, np.array([1.0]), stamp=10.02)
    assert m.scan == [[1.0, 0.0]]             # the pose at 10.0, not the latest
    m.on_scan(0.0, 0.1, 0.05, 10.0, np.array([1.0]), stamp=30.0)
    assert m.scan == [[6.0, 0.0]]             # no pose near its time: the latest


def test_bad_pose_and_objects_are_dropped_and_lists_capped():
    m = MapView()
    m.on_pose(1.0, 2.0, 0.5)
    m.on_pose(float("nan"), 0.0, 0.0)
    m.on_pose(1e9, 0.0, 0.0)
    assert m.robot == {"x": 1.0, "y": 2.0, "theta": 0.5}
    objs = [{"name": f"o{i}", "x": i * 0.01, "y": 0.0} for i in range(3 * MAX_OBJECTS)]
    objs.insert(0, {"name": "bad", "x": float("inf"), "y": 0.0})
    m.on_objects(objs)
    assert len(m.objects) <= MAX_OBJECTS and all(o["name"] != "bad" for o in m.objects)
    m.on_objects([{"name": "x" * 500, "x": 1, "y": 1}])
    assert len(m.objects[0]["name"]) <= 64


def test_goal_from_go_to_pose_and_go_to_object_follows_memory():
    s = ConsoleState()
    s.on_tool_call({"task_id": "t", "step": 1, "name": "go_to_pose", "status": "requested", "actuating": True,
                    "arguments_json": json.dumps({"x": 1.5, "y": -2.0, "theta": 1.0, "use_theta": True})})
    assert s.map.goal == {"x": 1.5, "y": -2.0, "theta": 1.0, "label": "goal (1.50, -2.00)", "tool": "go_to_pose"}
    s.on_tool_call({"task_id": "t", "step": 2, "name": "go_to_object", "status": "requested", "actuating": True,
                    "arguments_json": json.dumps({"object_name": "red_cube"})})
    assert s.map.goal is None                 # not in memory yet: no place to draw
    s.map.on_objects([{"name": "red_cube", "x": 2.0, "y": 1.0}])
    assert (s.map.goal["x"], s.map.goal["y"], s.map.goal["label"]) == (2.0, 1.0, "goal: red_cube")
    s.map.on_objects([{"name": "red_cube", "x": 2.2, "y": 1.0}])
    assert s.map.goal["x"] == 2.2
    s.on_tool_call({"task_id": "t", "step": 3, "name": "grasp", "status": "requested", "actuating": True,
                    "arguments_json": "{}"})
    assert s.map.goal["x"] == 2.2             # other tools leave the goal
    s.on_tool_call({"task_id": "t", "step": 4, "name": "go_to_pose", "status": "requested", "actuating": True,
                    "arguments_json": json.dumps({"x": "NaN", "y": 0})})
    assert s.map.goal["x"] == 2.2             # an unusable goal is not drawn


def test_map_events_throttled_and_only_on_change_and_in_snapshot():
    s = ConsoleState(map_period_s=0.25)
    assert s.map_tick(0.0) is None            # nothing yet
    s.map.on_pose(1.0, 0.0, 0.0)
    ev = s.map_tick(1.0)
    assert ev["type"] == "map" and ev["map"]["robot"]["x"] == 1.0
    s.map.on_pose(2.0, 0.0, 0.0)
    assert s.map_tick(1.1) is None            # too soon
    assert s.map_tick(1.3)["map"]["robot"]["x"] == 2.0
    assert s.map_tick(5.0) is None            # nothing changed
    assert s.snapshot()["map"]["robot"]["x"] == 2.0
    json.dumps(s.snapshot(), allow_nan=False)


def test_map_hz_validated():
    assert ConsoleSettings(map_hz=2.0).map_hz == 2.0
    for bad in (0, -1, float("nan"), 100.0, True):
        with pytest.raises(ConsoleConfigError, match="map_hz"):
            ConsoleSettings(map_hz=bad)
