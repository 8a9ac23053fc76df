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

import json
import math
import os

import numpy as np
import pytest
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


# ---------------------------------------------------------------------------------------------------------
# Issue 16: the same generators mixed with backward and forward clock jumps, laser faults and malformed tool
# calls. Extra invariants: a non-zero output needs a command, odometry and a usable scan all received after
# the last backward jump and within their timeouts (ages never negative); a scan with a too-close beam
# (-inf, 0, below range_min) means zero; the CallTool proxy never raises, refuses while latched, and accepts
# only arguments inside the policy.
from qwen_stack.paths import config_file  # noqa: E402
from qwen_stack.safety.action_policy import ActionVetter, load_policy, parse_arguments  # noqa: E402
from qwen_stack.safety.verdict import MAX_REASON_CHARS, MAX_REASONS  # noqa: E402

jump = st.tuples(st.just("jump"), st.just(""),
                 st.one_of(st.floats(-200.0, -0.001), st.just(-1e9), st.floats(0.6, 120.0)), st.just(0.0),
                 st.just(0.0))
laser_fault = st.tuples(st.just("laser_fault"),
                        st.sampled_from(["minus_inf", "zero", "below_min", "all_nan", "no_beams", "nan_increment",
                                         "nan_range_max", "zero_increment"]),
                        st.integers(0, 359), st.just(0.0), gap)
odom_dropout = st.tuples(st.just("odom_dropout"), st.just(""), st.just(0.0), st.just(0.0), gap)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), wild_float, st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                         st.dictionaries(st.text(max_size=5), c, max_size=3)),
                          max_leaves=8)
valid_pan = st.builds(lambda v: json.dumps({"pan": v}), st.floats(-1.6, 1.6))
tool_args = st.one_of(
    valid_pan, valid_pan, valid_pan,
    st.builds(lambda v: json.dumps({"pan": v}), wild_float),
    st.builds(lambda d, s: json.dumps({"distance": d, "speed": s}), wild_float, wild_float),
    st.builds(lambda v: json.dumps(v), json_value),
    st.builds(lambda n: '{"pan": ' + "9" * n + "}", st.integers(15, 6000)),
    st.builds(lambda n: '{"pan": ' + "[" * n + "]" * n + "}", st.integers(100, 60000)),
    st.builds(lambda a, b: '{"pan": %r, "pan": %r}' % (a, b), st.floats(-1, 1), st.floats(-1, 1)),
    st.text(max_size=40),
)
tool_call = st.tuples(st.just("tool"), st.sampled_from(["skills/look_at", "skills/look_at", "skills/drive_distance",
                                                        "skills/self_destruct", "s" * 1000]),
                      tool_args, st.just(0.0), gap)
hostile_event = st.one_of(event, event, event, jump, jump, laser_fault, odom_dropout, tool_call, tool_call)

_POLICY = load_policy(config_file("safety_policy.yaml"))


def _fault_scan(stamp, kind, beam):
    n, inc, rmin, rmax = 360, 2 * math.pi / 360, 0.05, 10.0
    ranges = np.full(n, np.inf)
    if kind in ("minus_inf", "zero", "below_min"):
        ranges[beam] = {"minus_inf": -np.inf, "zero": 0.0, "below_min": 0.02}[kind]
    elif kind == "all_nan":
        ranges[:] = np.nan
    elif kind == "no_beams":
        ranges = np.zeros(0)
    elif kind == "nan_increment":
        inc = math.nan
    elif kind == "nan_range_max":
        rmax = math.nan
    elif kind == "zero_increment":
        inc = 0.0
    return LaserScanData(-math.pi, inc, rmin, rmax, ranges, stamp)


def _proxy(core):
    from .test_tool_proxy import FakeNode
    from qwen_stack.safety.tool_proxy import ToolProxy

    return ToolProxy(FakeNode(), ActionVetter(_POLICY), 0.01, None, lambda: core.estop.latched,
                     lambda *a: None, lambda *a, **k: None)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(hostile_event, min_size=5, max_size=40), pose0=start_pose)
def test_clock_jumps_laser_faults_and_malformed_tool_calls(events, pose0):
    pytest.importorskip("qwen_stack_interfaces", reason="the proxy's service types need ros_ws built")
    cfg = CFG
    name = "test_clock_jumps_laser_faults_and_malformed_tool_calls"
    stats = PROPERTY_CASES.setdefault(name, [0, 0, {"backward jumps": 0, "forward jumps": 0, "laser faults": 0,
                                                    "tool calls": 0, "tool calls accepted": 0}])
    extra = stats[2]
    stats[0] += 1
    now = 10.0
    core = SafetyCore(cfg, start_time=now)
    proxy = _proxy(core)
    x, y, th = pose0
    last_cmd_time: dict = {}           # source -> reception time, on the current timeline only
    scan_mode = "clear"                # what the base's laser sends each event: clear, fault kind, or nothing
    fault_beam = 0
    last_usable_scan = None            # (time, too_close) of the latest usable scan on the current timeline
    odom_ok, last_odom = True, None
    seen = now                         # the latest time the core was given
    core.on_scan(_scan(now))
    last_usable_scan = (now, False)
    expanded = []
    for e in events:
        expanded += [("cmd", e[1], e[2], e[3], cfg.control_period)] * e[4] if e[0] == "drive" else [e]
    for kind, a, b, c, gap_s in expanded:
        if kind == "jump":
            # the core can only see a jump against the latest time it was given (`seen`, before the gap): in
            # the node the control timer gives it the clock every control period
            new = max(0.0, now + b)
            extra["backward jumps" if new < seen else "forward jumps"] += 1
            if new < seen:
                last_cmd_time.clear()
                last_usable_scan = last_odom = None
            now = new
        elif kind in ("cmd", "cmd_planar_noise"):
            kw = {"linear_y": c, "angular_x": b} if kind == "cmd_planar_noise" else {}
            core.on_command(VelocityCommand(b, c, a, now, **kw))
            last_cmd_time[a] = now
        elif kind == "lock":
            core.on_lock(TeleopLock(a, now))
        elif kind == "estop":
            core.latch(EStopEvent(a, "property test", now))
        elif kind == "reset":
            if core.reset(a, "op", now)[0]:
                last_cmd_time.clear()
        elif kind == "scan":
            core.on_scan(_scan(now, a, b))
            scan_mode, last_usable_scan = "clear", (now, False)
        elif kind == "scan_dropout":
            scan_mode = "none"
        elif kind == "laser_fault":
            scan_mode, fault_beam = a, b
            extra["laser faults"] += 1
        elif kind == "odom_dropout":
            odom_ok = not odom_ok
        elif kind == "tool":
            extra["tool calls"] += 1
            out = proxy.call(a, b, "prop", 1.0)
            assert set(out) == {"accepted", "success", "verdict_level", "reasons", "response_json"}
            assert len(out["reasons"]) <= MAX_REASONS + 1
            assert all(len(r) <= MAX_REASON_CHARS + 40 for r in out["reasons"])
            if out["accepted"]:
                extra["tool calls accepted"] += 1
                args, err = parse_arguments(b)
                assert err is None and not core.estop.latched and a in _POLICY.services
                assert all(_POLICY.services[a].arguments[k].check(v) is None for k, v in args.items())
            elif core.estop.latched:
                assert out["verdict_level"] >= 4            # REJECT or ESTOP: refused either way
        if odom_ok:
            core.on_odom(OdometryData(x, y, th, core.last_sent.linear_x, core.last_sent.angular_z, now))
            last_odom = now
        if scan_mode == "clear" and kind not in ("scan", "jump"):
            core.on_scan(_scan(now))
            last_usable_scan = (now, False)
        elif scan_mode not in ("clear", "none"):
            core.on_scan(_fault_scan(now, scan_mode, fault_beam))
            if scan_mode in ("minus_inf", "zero", "below_min"):
                last_usable_scan = (now, True)
        prev = (core.last_sent.linear_x, core.last_sent.angular_z)
        prev_time = core.last_sent_time
        r = core.step(now)
        seen = now
        dt = cfg.control_period if prev_time is None else min(max(now - prev_time, 0.0), cfg.control_period)
        fresh = any(0.0 <= now - t <= (cfg.teleop_timeout if s == "teleop" else cfg.autonomy_timeout)
                    for s, t in last_cmd_time.items())
        _check_step(cfg, r, prev, dt, core.estop.latched, fresh, (x, y, th))
        if not r.output.is_zero:
            assert last_odom is not None and 0.0 <= now - last_odom <= cfg.odom_timeout
            assert last_usable_scan is not None and 0.0 <= now - last_usable_scan[0] <= cfg.scan_timeout, r.verdict
            assert not last_usable_scan[1], ("moved with a too-close beam in the scan", r.verdict)
        stats[1] += 1
        move = min(gap_s, cfg.prediction_horizon)
        if move > 0 and not r.output.is_zero:
            x, y, th = predict_pose(x, y, th, r.output.linear_x, r.output.angular_z, move, substeps=50)
            inside_fence, outside_box = _clearances(x, y)
            assert inside_fence and outside_box, ("robot left the allowed area", x, y)
        now += gap_s
