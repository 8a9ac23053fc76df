"""The held load in the simulator's camera: never a new object ahead, and nothing real hidden by the filter.

A held cylinder's top is seen as a flat ellipse in mid-image that ranges ~1 m out (found in the
brain's simulator missions: one new blue "square" per turn while carrying the blue cylinder).
Perception (no ROS) on MuJoCo frames: the object is seen on the floor, grasped, and the robot
turns in place; then a second object of the same colour stands ahead while the first is held.
"""
from __future__ import annotations

import math

import pytest

pytest.importorskip("mujoco")

from qwen_stack.geometry import Pose2D  # noqa: E402
from qwen_stack.perception.config import PerceptionConfig  # noqa: E402
from qwen_stack.perception.pipeline import Perceiver  # noqa: E402
from qwen_stack.sim.scenario import layout_from_dict  # noqa: E402
from qwen_stack.sim.simulator import Simulator  # noqa: E402
from tests.perception.sim_sensors import grasp, perceive  # noqa: E402

BLUE = [0.1, 0.2, 0.9, 1.0]
SHAPES = {"cylinder": ("cylinder", [0.05, 0.08]), "cube": ("box", [0.04, 0.04, 0.04]), "ball": ("sphere", [0.05])}


def _scene(objects: list[dict]) -> Simulator:
    data = {"name": "held_load", "seed": 0, "arena": {"half_size": [2.5, 2.5]},
            "robot_start": {"x": 0.0, "y": 0.0, "yaw": 0.0}, "min_clearance": 0.0,
            "objects": [{"rgba": BLUE, "mass": 0.2} | o for o in objects]}
    sim = Simulator(layout_from_dict(data), max_render=(320, 240))
    sim.step_for(0.3)
    return sim


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_held_load_never_becomes_an_object_ahead(shape):
    geom, size = SHAPES[shape]
    sim = _scene([{"name": f"blue_{shape}", "shape": geom, "size": size, "x": 0.9, "y": 0.0}])
    p = Perceiver(PerceptionConfig())
    try:
        for _ in range(4):
            sim.step_for(0.2)
            perceive(sim, p)
        assert [e.name for e in p.memory.visible()] == [f"blue_{shape}"]
        grasp(sim, p, f"blue_{shape}")
        seen = []
        for k in range(50):                    # a full turn in place, frames at 5 Hz (turning at 0.6 rad/s)
            sim.set_cmd_vel(0.0, 0.6 if k < 45 else 0.0)
            sim.step_for(0.2)
            seen += [(k, d.colour, d.shape, round(d.distance, 2)) for d in perceive(sim, p).detections]
        assert seen == [], seen                 # nothing but the load is blue in this arena
        load = p.load
        o = sim.odometry()
        assert p.hold(Pose2D(o.x, o.y, o.yaw), f"blue_{shape}").name == f"blue_{shape}"   # reported again
        assert p.load == load and [e.held for e in p.memory.entries].count(True) == 1
        assert p.memory.visible() == [], [e.name for e in p.memory.visible()]
        assert [e.name for e in p.memory.entries if e.held] == [f"blue_{shape}"]
        o = sim.odometry()
        p.release(Pose2D(o.x, o.y, o.yaw))
        assert p.load is None and [e.name for e in p.memory.visible()] == [f"blue_{shape}"]
    finally:
        sim.close()


@pytest.mark.parametrize("colour,ahead,left", [("blue", 2.4, 0.0), ("blue", 1.0, 0.6), ("blue", 1.5, -0.6),
                                               ("red", 1.2, 0.0), ("red", 1.6, 0.0), ("red", 0.8, 0.3)])
def test_an_object_beside_the_load_is_still_seen(colour, ahead, left):
    """Of the load's colour, an object is measured where its image does not touch the load's: while a
    cylinder is carried, its top hides ~0.7-2 m straight ahead just under the horizon, so a blue ball
    there is left out (a known limit); an object of another colour is measured there."""
    rgba = {"blue": BLUE, "red": [0.9, 0.1, 0.1, 1.0]}[colour]
    sim = _scene([{"name": "blue_cylinder", "shape": "cylinder", "size": [0.05, 0.08], "x": 0.9, "y": 0.6},
                  {"name": "ball", "shape": "sphere", "size": [0.05], "x": 1.6, "y": -0.9, "rgba": rgba}])
    p = Perceiver(PerceptionConfig())
    try:
        sim.set_pan(0.6)
        sim.step_for(0.8)
        for _ in range(3):
            sim.step_for(0.2)
            perceive(sim, p)
        sim.set_pan(0.0)
        sim.step_for(0.8)
        grasp(sim, p, "blue_cylinder")         # held tallest, the one whose top is seen mid-image
        gt = sim.ground_truth()
        c, s = math.cos(gt.yaw), math.sin(gt.yaw)
        sim.move_object("ball", gt.x + ahead * c - left * s, gt.y + ahead * s + left * c)
        found = []
        for _ in range(4):
            sim.step_for(0.2)
            found = [(d.colour, round(d.x, 2), round(d.y, 2)) for d in perceive(sim, p).detections]
        assert len(found) == 1 and found[0][0] == colour, found
        assert abs(found[0][1] - ahead) < 0.1 and abs(found[0][2] - left) < 0.1, found
    finally:
        sim.close()
