"""Scenario files: seeded placement is reproducible, and bad scenarios are refused with the field named."""
from __future__ import annotations

import math

import pytest
from sim_test_worlds import RED_CUBE, open_arena

from qwen_stack.sim.scenario import (SCENARIO_DIR, ScenarioError, layout_from_dict,
                                     load_layout)
from qwen_stack.robot import load_robot



@pytest.mark.parametrize("path", sorted(SCENARIO_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path):
    layout = load_layout(str(path))
    assert layout.objects, "a scenario without objects is useless to the agent"


def test_demo_scenario_has_red_cube_and_blue_square():
    layout = load_layout("fetch_red_cube")
    cube = next(o for o in layout.objects if o.name == "red_cube")
    square = next(a for a in layout.areas if a.name == "blue_square")
    assert cube.rgba[0] > 0.8 and max(cube.rgba[1:3]) < 0.2 and cube.graspable
    assert square.rgba[2] > 0.8 and max(square.rgba[:2]) < 0.3


def test_same_seed_same_layout_other_seed_other_layout():
    a, b = load_layout("fetch_red_cube", seed=7), load_layout("fetch_red_cube", seed=7)
    c = load_layout("fetch_red_cube", seed=8)
    assert a == b
    assert a.objects != c.objects and a.robot_start != c.robot_start


def test_placement_respects_walls_and_clearance():
    for seed in range(20):
        layout = load_layout("fetch_red_cube", seed=seed)
        hx, hy = layout.arena_half_size
        things = [(layout.robot_start.x, layout.robot_start.y, load_robot().footprint_radius)]
        things += [(o.pose.x, o.pose.y, o.footprint_radius) for o in layout.objects]
        things += [(a.pose.x, a.pose.y, a.footprint_radius) for a in layout.areas]
        for i, (x, y, r) in enumerate(things):
            assert abs(x) + r <= hx and abs(y) + r <= hy
            for (x2, y2, r2) in things[i + 1:]:
                assert math.hypot(x - x2, y - y2) >= r + r2 + 0.25 - 1e-9


def test_robot_footprint_covers_the_chassis():
    spec = load_robot()
    corner = math.hypot(spec.chassis_half_size[0] - spec.chassis_offset_x, spec.chassis_half_size[1])
    assert corner <= spec.footprint_radius


@pytest.mark.parametrize("patch, field", [
    ({"arena": {"half_size": [2.0, -1.0]}}, "arena.half_size"),
    ({"arena": {"size": [2.0, 2.0]}}, "arena: unknown field"),
    ({"robot_start": {"x": [1.0, 0.0]}}, "robot_start.x"),
    ({"robot_start": {"x": float("nan")}}, "robot_start.x"),
    ({"objects": [dict(RED_CUBE, shape="cone")]}, "objects[0].shape"),
    ({"objects": [dict(RED_CUBE, size=[0.1, 0.1])]}, "objects[0].size"),
    ({"objects": [dict(RED_CUBE, rgba=[2.0, 0, 0])]}, "objects[0].rgba"),
    ({"objects": [dict(RED_CUBE, mass=0)]}, "objects[0].mass"),
    ({"objects": [dict(RED_CUBE, graspable="yes")]}, "objects[0].graspable"),
    ({"objects": [RED_CUBE, RED_CUBE]}, "objects[1].name: duplicate"),
    ({"objects": [dict(RED_CUBE, x=50.0)]}, "objects[0]: no free place"),
    ({"lighting": {"ambient": 3.0}}, "lighting.ambient"),
    ({"seed": -1}, "scenario.seed"),
    ({"colour": "red"}, "scenario: unknown field"),
])
def test_bad_scenarios_are_refused_naming_the_field(patch, field):
    data = open_arena(objects=[dict(RED_CUBE, x=0.0, y=1.0)])
    data.update(patch)
    with pytest.raises(ScenarioError, match=field.replace("[", r"\[").replace("]", r"\]")):
        layout_from_dict(data)


def test_unknown_scenario_name_lists_the_known_ones():
    with pytest.raises(ScenarioError, match="fetch_red_cube"):
        load_layout("no_such_scenario")
