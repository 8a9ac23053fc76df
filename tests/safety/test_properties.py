"""Property-based tests (hypothesis) of the safety core over arbitrary input sequences.

A simulated base integrates every output exactly (unicycle arcs) and feeds it back as odometry.
Sequences mix NaN/inf/huge values, timing gaps, source switches, teleop locks, random scans,
sensor dropouts and e-stop/reset interleavings. After every step:
  - the output is finite and within the velocity limits;
  - a non-zero output changed from the previous one by at most accel*dt (speeding up) or decel*dt
    (slowing down), dt = min(elapsed, control period); stops are exactly zero;
  - the output is zero while the e-stop is latched and when no command is fresher than its timeout;
  - the path predicted for the output over the horizon stays inside the geofence and outside every
    keep-out zone, and so does the simulated robot.
Assumption (stated, not hidden): during a timing gap the simulated base moves on its last command for
at most prediction_horizon seconds (a base has its own command timeout); the supervisor cannot act
inside a gap in which it does not run.
"""
from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_stack.safety.geometry_reference import point_in_polygon, predict_pose
from qwen_stack.safety.inputs import EStopEvent, LaserScanData, OdometryData, TeleopLock, VelocityCommand
from qwen_stack.safety.supervisor_core import SafetyCore

from .helpers import make_config
from .property_counts import PROPERTY_CASES

EXAMPLES = int(os.environ.get("SAFETY_PROPERTY_EXAMPLES", "300"))

KEEP_OUT = [1.0, -1.0, 2.0, -1.0, 2.0, 1.0, 1.0, 1.0]
CFG = make_config(keep_out_zones="box", **{"keep_out.box": KEEP_OUT},
                  geofence=[-3.0, -3.0, 3.0, -3.0, 3.0, 3.0, -3.0, 3.0],
                  max_linear_jerk=20.0, max_angular_jerk=40.0)
FENCE_POLY = [tuple(p) for p in CFG.geofence_poly]
BOX_POLY = [tuple(p) for p in CFG.keep_out_polys["box"]]

wild_float = st.one_of(
    st.floats(-1.0, 1.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf, 0.5, -0.2, 1.0]),
)
gap = st.one_of(st.sampled_from([0.0, 0.1, 0.1, 0.1, 0.05]), st.floats(0.0, 3.0))

# a sustained command: the same request every control period for n periods (lets the robot travel)
drive = st.tuples(st.just("drive"), st.sampled_from(["autonomy", "teleop"]), st.floats(-0.3, 0.6),
                  st.floats(-1.2, 1.2), st.integers(1, 40))
event = st.one_of(
    drive, drive,
    st.tuples(st.just("cmd"), st.sampled_from(["autonomy", "teleop"]), wild_float, wild_float, gap),
    st.tuples(st.just("cmd_planar_noise"), st.sampled_from(["autonomy", "teleop"]), wild_float, wild_float, gap),
    st.tuples(st.just("lock"), st.booleans(), st.just(0.0), st.just(0.0), gap),
    st.tuples(st.just("estop"), st.sampled_from(["topic", "service", "console"]), st.just(0.0), st.just(0.0), gap),
    st.tuples(st.just("reset"), st.sampled_from(["", "  ", "area clear"]), st.just(0.0), st.just(0.0), gap),
    st.tuples(st.just("scan"), st.integers(0, 359), st.floats(0.0, 3.0), st.just(0.0), gap),
    st.tuples(st.just("scan_dropout"), st.just(""), st.just(0.0), st.just(0.0), gap),
    st.tuples(st.just("tick"), st.just(""), st.just(0.0), st.just(0.0), gap),
)
start_pose = st.tuples(st.floats(-2.5, 2.5), st.floats(-2.5, 2.5), st.floats(-math.pi, math.pi)).filter(
    lambda p: not point_in_polygon(p[0], p[1], [(0.6, -1.4), (2.4, -1.4), (2.4, 1.4), (0.6, 1.4)]))


def _scan(stamp, beam=None, dist=0.0, n=360):
    ranges = np.full(n, np.inf)
    if beam is not None:
        ranges[beam] = dist
    return LaserScanData(-math.pi, 2 * math.pi / n, 0.05, 10.0, ranges, stamp)


def _clearances(x, y):
    """(inside geofence, outside keep-out) for a point."""
    return point_in_polygon(x, y, FENCE_POLY), not point_in_polygon(x, y, BOX_POLY)


def _check_step(cfg, r, prev, dt, latched, any_fresh, pose):
    out = r.output
    v, w = out.linear_x, out.angular_z
    assert math.isfinite(v) and math.isfinite(w)
    assert -cfg.max_reverse_vel - 1e-9 <= v <= cfg.max_linear_vel + 1e-9
    assert abs(w) <= cfg.max_angular_vel + 1e-9
    if latched or not any_fresh:
        assert out.is_zero, (r.verdict, latched, any_fresh)
    if not out.is_zero:
        for new, old, acc, dec in ((v, prev[0], cfg.max_linear_accel, cfg.max_linear_decel),
                                   (w, prev[1], cfg.max_angular_accel, cfg.max_angular_decel)):
            assert new * old >= 0 or old == 0.0 or new == 0.0, "sign flip in one step"
            limit = (acc if abs(new) > abs(old) else dec) * dt
            assert abs(new - old) <= limit + 1e-9, (new, old, limit, r.verdict)
        # predicted path of the output stays legal (fine reference integration, 20 samples)
        for k in range(1, 21):
            t = cfg.prediction_horizon * k / 20
            px, py, _ = predict_pose(pose[0], pose[1], pose[2], v, w, t, substeps=50)
            inside_fence, outside_box = _clearances(px, py)
            assert inside_fence and outside_box, ("predicted path leaves the allowed area", pose, v, w, t)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, min_size=5, max_size=40), pose0=start_pose)
def test_output_is_always_within_limits_and_bounds(events, pose0):
    cfg = CFG
    stats = PROPERTY_CASES.setdefault("test_output_is_always_within_limits_and_bounds", [0, 0])
    stats[0] += 1
    now = 10.0
    core = SafetyCore(cfg, start_time=now)
    x, y, th = pose0
    last_cmd_time = {}
    scan_ok = True
    core.on_scan(_scan(now))
    expanded = []
    for e in events:
        if e[0] == "drive":
            expanded += [("cmd", e[1], e[2], e[3], cfg.control_period)] * e[4]
        else:
            expanded.append(e)
    for kind, a, b, c, gap_s in expanded:
        if kind in ("cmd", "cmd_planar_noise"):
            extra = {"linear_y": c, "angular_x": b} if kind == "cmd_planar_noise" else {}
            core.on_command(VelocityCommand(b, c, a, now, **extra))
            last_cmd_time[a] = now
        elif kind == "lock":
            core.on_lock(TeleopLock(a, now))
        elif kind == "estop":
            core.latch(EStopEvent(a, "property test", now))
        elif kind == "reset":
            was_latched = core.estop.latched
            ok, _ = core.reset(a, "op", now)
            assert ok == (was_latched and a.strip() != "")
            if ok:
                last_cmd_time.clear()
        elif kind == "scan":
            core.on_scan(_scan(now, a, b))
            scan_ok = True
        elif kind == "scan_dropout":
            scan_ok = False
        core.on_odom(OdometryData(x, y, th, core.last_sent.linear_x, core.last_sent.angular_z, now))
        if scan_ok and kind != "scan":
            core.on_scan(_scan(now))
        prev = (core.last_sent.linear_x, core.last_sent.angular_z)
        prev_time = core.last_sent_time
        r = core.step(now)
        dt = cfg.control_period if prev_time is None else min(max(now - prev_time, 0.0), cfg.control_period)
        fresh = any(now - t <= (cfg.teleop_timeout if s == "teleop" else cfg.autonomy_timeout)
                    for s, t in last_cmd_time.items())
        _check_step(cfg, r, prev, dt, core.estop.latched, fresh, (x, y, th))
        stats[1] += 1
        # the simulated base moves on the output during the gap (at most prediction_horizon, see module doc)
        move = min(gap_s, cfg.prediction_horizon)
        if move > 0 and not r.output.is_zero:
            x, y, th = predict_pose(x, y, th, r.output.linear_x, r.output.angular_z, move, substeps=50)
            inside_fence, outside_box = _clearances(x, y)
            assert inside_fence and outside_box, ("robot left the allowed area", x, y)
        now += gap_s


@settings(max_examples=EXAMPLES, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(["estop", "reset", "reset_noreason", "cmd", "zero", "tick"]),
                                 st.floats(0.0, 0.3)), min_size=3, max_size=40))
def test_estop_output_zero_while_latched_and_no_automatic_restart(events):
    """While latched: zero. After a reset: zero until the source sent a zero command after the reset."""
    stats = PROPERTY_CASES.setdefault("test_estop_output_zero_while_latched_and_no_automatic_restart", [0, 0])
    stats[0] += 1
    cfg = make_config(max_linear_accel=100.0, max_linear_decel=100.0)
    now = 0.0
    core = SafetyCore(cfg)
    zero_since_reset = True
    was_reset = False
    for kind, gap_s in events:
        if kind == "estop":
            core.latch(EStopEvent("service", "prop", now))
        elif kind in ("reset", "reset_noreason"):
            ok, _ = core.reset("ok" if kind == "reset" else "", "op", now)
            if ok:
                zero_since_reset, was_reset = False, True
        elif kind == "cmd":
            core.on_command(VelocityCommand(0.3, 0.0, "autonomy", now))
        elif kind == "zero":
            core.on_command(VelocityCommand(0.0, 0.0, "autonomy", now))
            if not core.estop.latched:
                zero_since_reset = True
        core.on_odom(OdometryData(0.0, 0.0, 0.0, 0.0, 0.0, now))
        core.on_scan(_scan(now))
        r = core.step(now)
        stats[1] += 1
        if core.estop.latched:
            assert r.output.is_zero and r.verdict.level.name == "ESTOP"
        if was_reset and not zero_since_reset:
            assert r.output.is_zero
        now += gap_s
