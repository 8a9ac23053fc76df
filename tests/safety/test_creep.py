"""Creep (field switching) and the load mask: a tall object to grasp may come inside the stop zone at creep
speed, never inside the creep zone; the carried load is not an obstacle while the gripper says it holds one."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen_stack.paths import config_file
from qwen_stack.safety.config import ConfigError, load_config
from qwen_stack.safety.geometry import points_in_polygon
from qwen_stack.safety.verdict import VerdictLevel as L

from .helpers import cmd, make_config, odom, ready_core, scan_with_point

CREEP = dict(creep_speed=0.05, creep_angular_vel=0.3, load_mask_radius=0.08,
             creep_zone=[0.28, 0.25, 0.28, -0.25, -0.28, -0.25, -0.28, 0.25],
             max_linear_accel=100.0, max_angular_accel=100.0, time_before_collision=0.1)


def _core(**changes):
    return ready_core(make_config(**{**CREEP, **changes}))


def _step(core, v, w=0.0, t=0.0):
    core.on_command(cmd(v, w, stamp=t))
    return core.step(t)


def test_creep_off_by_default_any_stop_zone_point_stops():
    core = ready_core(make_config(max_linear_accel=100.0))
    core.on_scan(scan_with_point(0.0, 0.0, 0.35))
    assert _step(core, 0.3).verdict.level == L.STOP


def test_stop_zone_with_creep_zone_clear_creeps():
    core = _core()
    core.on_scan(scan_with_point(0.0, 0.0, 0.35))           # stop zone (0.4), outside the creep zone (0.28)
    r = _step(core, 0.3, 0.8)
    assert r.output.linear_x == pytest.approx(0.05) and r.output.angular_z == pytest.approx(0.3)
    assert r.verdict.level == L.SLOWDOWN and "creep" in r.verdict.reasons[0]


@pytest.mark.parametrize("angle,v,w,moves", [
    (0.0, 0.3, 0.0, False),        # toward a point ahead: stop
    (0.0, -0.1, 0.0, True),        # backing away from it
    (0.0, 0.0, 0.5, True),         # turning on the spot
    (math.pi, -0.1, 0.0, False),   # toward a point behind
    (math.pi, 0.2, 0.0, True),     # driving away from it
])
def test_inside_the_creep_zone_only_moving_away_or_turning(angle, v, w, moves):
    core = _core()
    core.on_scan(scan_with_point(0.0, angle, 0.24))         # within robot_radius + margin: creep zone
    r = _step(core, v, w)
    assert (not r.output.is_zero) == moves, r.verdict
    if moves:
        assert abs(r.output.linear_x) <= 0.05 + 1e-12 and abs(r.output.angular_z) <= 0.3 + 1e-12
        assert r.output.linear_x * v >= 0
    else:
        assert r.verdict.level == L.STOP and r.verdict.reasons[0].startswith("creep zone")


def test_load_mask_only_while_the_gripper_holds_something():
    core = _core()
    pick = make_config().robot.pick_x
    core.on_scan(scan_with_point(0.0, 0.0, pick - 0.05))    # the load's near face, in the creep zone
    assert _step(core, 0.2).output.is_zero
    core.on_gripper("orange_cylinder")
    core.on_scan(scan_with_point(0.1, 0.0, pick - 0.05))    # the mask applies from the next scan
    core.on_odom(odom(0.1))
    r = _step(core, 0.2, t=0.1)
    assert r.output.linear_x > 0.05, r.verdict               # nothing else near: full (shaped) speed
    core.on_scan(scan_with_point(0.2, 0.0, pick - 0.09))    # 9 cm from the pick site: outside the 8 cm mask
    core.on_odom(odom(0.2))
    assert _step(core, 0.2, t=0.2).output.is_zero
    core.on_gripper("")
    core.on_scan(scan_with_point(0.3, 0.0, pick - 0.05))
    core.on_odom(odom(0.3))
    assert _step(core, 0.2, t=0.3).output.is_zero


def test_no_load_mask_when_radius_is_zero():
    core = _core(load_mask_radius=0.0)
    core.on_gripper("red_cube")
    core.on_scan(scan_with_point(0.0, 0.0, make_config().robot.pick_x - 0.05))
    assert _step(core, 0.2).output.is_zero


@pytest.mark.parametrize("change,message", [
    (dict(creep_zone=[0.5, 0.25, 0.5, -0.25, -0.28, -0.25, -0.28, 0.25]), "creep_zone: must lie inside stop_zone"),
    (dict(creep_zone=[0.2005, 0.25, 0.2005, -0.25, -0.28, -0.25, -0.28, 0.25]), "creep_zone: the base cannot stop"),
    (dict(creep_speed=0.5, stopping_reaction_time=0.1), "creep_zone: the base cannot stop from creep_speed 0.5"),
    (dict(creep_zone=[1.0, 1.0, 2.0, 1.0, 2.0, 2.0]), "creep_zone: must contain the robot's origin"),
    (dict(creep_speed=-0.1), "creep_speed: must be >= 0"),
    (dict(load_mask_radius=0.3), "load_mask_radius: 0.3 m is more than the robot's pick_reach"),
])
def test_bad_creep_settings_are_refused(change, message):
    with pytest.raises(ConfigError) as exc:
        make_config(**{**CREEP, **change})
    assert message in str(exc.value)


def test_shipped_creep_zone_clears_a_cylinder_at_the_agents_standoff():
    """The shipped numbers fit together: at go_to_object's goal a 5 cm cylinder's near face is outside the
    creep zone (the approach ends there, not stopped short) and within the pick's reach."""
    import yaml
    cfg = load_config(config_file("safety.yaml"))
    agent = yaml.safe_load(config_file("agent.yaml").read_text())
    standoff = next(iter(agent.values()))["ros__parameters"]["object_standoff_m"]
    face = standoff - 0.05
    assert not points_in_polygon(np.array([[face, 0.0]]), cfg.creep_poly)[0]
    assert points_in_polygon(np.array([[face, 0.0]]), cfg.stop_poly)[0]
    assert face - cfg.robot.pick_x <= cfg.robot.pick_reach
    assert standoff - math.hypot(0.04, 0.04) - cfg.robot.pick_x <= cfg.robot.pick_reach   # a 4 cm cube, any yaw


@settings(max_examples=300, deadline=None)
@given(angle=st.floats(-math.pi, math.pi), dist=st.floats(0.06, 1.2), v=st.floats(-0.2, 0.5),
       w=st.floats(-1.0, 1.0), held=st.booleans())
def test_creep_invariants(angle, dist, v, w, held):
    cfg = make_config(**CREEP)
    core = ready_core(cfg)
    core.on_gripper("load" if held else "")
    core.on_scan(scan_with_point(0.0, angle, dist))
    r = _step(core, v, w)
    out = r.output
    pts = core.scan_points
    in_stop = len(pts) and points_in_polygon(pts, cfg.stop_poly)[0]
    in_creep = len(pts) and points_in_polygon(pts, cfg.creep_poly)[0]
    if held and dist * math.cos(angle) and math.hypot(dist * math.cos(angle) - cfg.robot.pick_x,
                                                       dist * math.sin(angle)) <= cfg.load_mask_radius:
        assert len(pts) == 0                                   # the load: masked
    if in_stop:
        assert abs(out.linear_x) <= cfg.creep_speed + 1e-12 and abs(out.angular_z) <= cfg.creep_angular_vel + 1e-12
    if in_creep:
        x = pts[0][0]
        assert out.linear_x * x <= 0, (pts, out)               # never toward a creep-zone point
