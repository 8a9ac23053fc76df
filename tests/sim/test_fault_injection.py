"""Injected faults of the simulator (evaluation of the agent's recoveries, bench/brain_eval.py):
failing grasps and an object moved during the approach. Off by default; the node names them in
its log and refuses an unknown object."""
from __future__ import annotations

import math

import pytest
from sim_test_worlds import RED_CUBE, open_arena

from qwen_stack.sim.config import SimConfigError, SimNodeConfig
from qwen_stack.sim.scenario import layout_from_dict
from qwen_stack.sim.simulator import Simulator


def _cube_sim(x: float = -1.0):
    return Simulator(layout_from_dict(open_arena(robot=(-1.5, 0.0, 0.0), objects=[dict(RED_CUBE, x=x, y=0.0)])))


def _drive(sim, distance: float, speed: float = 0.2) -> None:
    """Closed loop on odometry, as the skills do it."""
    from qwen_stack.geometry import Pose2D
    from qwen_stack.robot import load_robot
    from qwen_stack.sim.config import SkillsNodeConfig
    from qwen_stack.sim.skill_control import DriveDistanceController, Twist2D

    o = sim.odometry()
    c = DriveDistanceController(Pose2D(o.x, o.y, o.yaw), distance, speed, SkillsNodeConfig().limits(load_robot()))
    t_end = sim.time + 20
    while not c.done and sim.time < t_end:
        o = sim.odometry()
        tw = c.update(Pose2D(o.x, o.y, o.yaw), Twist2D(o.linear, o.angular))
        sim.set_cmd_vel(tw.linear, tw.angular)
        sim.step_for(1 / 30)
    assert c.done


def test_failing_grasps_fail_then_the_magnet_works():
    sim = _cube_sim()
    _drive(sim, 0.2)           # the cube at the pick, as in the simulator's own pick test
    sim.fail_next_attaches = 2
    for _ in range(2):
        ok, msg = sim.attach("red_cube")
        assert not ok and "slipped" in msg and sim.held is None
    assert sim.attach("red_cube") == (True, "red_cube")


def test_default_has_no_faults():
    sim = _cube_sim()
    _drive(sim, 0.2)
    assert sim.attach("red_cube") == (True, "red_cube")


def _cube(sim):
    return next(o for o in sim.objects() if o.name == "red_cube")


def test_object_moves_once_the_base_has_left_its_start():
    sim = _cube_sim(x=0.5)
    sim.move_on_approach = "red_cube"
    sim.set_cmd_vel(0.3, 0.0)
    sim.step_for(1.0)           # ~0.3 m: not yet
    assert _cube(sim).x == pytest.approx(0.5, abs=0.01) and abs(_cube(sim).y) < 0.01
    for _ in range(4):          # keep commanding (the driver stops without fresh commands)
        sim.set_cmd_vel(0.3, 0.0)
        sim.step_for(0.5)
    c = _cube(sim)
    assert math.hypot(c.x - 0.5, c.y) == pytest.approx(0.9, abs=0.05)   # moved sideways, once
    assert sim.move_on_approach == ""
    sim.step_for(0.5)
    c2 = _cube(sim)
    assert math.hypot(c2.x - c.x, c2.y - c.y) < 0.02 and c2.z == pytest.approx(0.04, abs=0.005)   # at rest


def test_fault_parameters_are_validated():
    assert SimNodeConfig().fault_fail_grasps == 0 and SimNodeConfig().fault_move_on_approach == ""
    with pytest.raises(SimConfigError, match="fault_fail_grasps"):
        SimNodeConfig(fault_fail_grasps=-1)
    with pytest.raises(SimConfigError, match="fault_fail_grasps"):
        SimNodeConfig(fault_fail_grasps=True)
    with pytest.raises(SimConfigError, match="fault_move_on_approach"):
        SimNodeConfig(fault_move_on_approach=3)
