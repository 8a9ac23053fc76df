"""Hand-derived unit tests of the pure safety core (no ROS)."""
from __future__ import annotations

import math

import pytest

from qwen_stack.safety.inputs import EStopEvent, TeleopLock, VelocityCommand
from qwen_stack.safety.verdict import Verdict, VerdictLevel, combine

from .helpers import clear_scan, cmd, make_config, odom, ready_core, scan_with_point

L = VerdictLevel


def refresh(core, t, x=0.0, y=0.0, theta=0.0):
    core.on_scan(clear_scan(t))
    core.on_odom(odom(t, x, y, theta, core.last_sent.linear_x, core.last_sent.angular_z))


def test_levels_are_ordered_and_most_restrictive_wins():
    assert L.ALLOW < L.LIMIT < L.SLOWDOWN < L.STOP < L.REJECT < L.ESTOP
    v = combine([Verdict(L.LIMIT, ("a",)), Verdict(L.STOP, ("b",)), Verdict(L.ALLOW)])
    assert v.level == L.STOP and v.reasons == ("b", "a")
    assert combine([]).level == L.ALLOW


def test_acceleration_ramp_from_rest():
    # accel 1.0 m/s^2, period 0.1 s: 0.1 m/s per step until the request 0.3
    core = ready_core()
    outs = []
    for k in range(1, 5):
        t = 0.1 * k
        refresh(core, t)
        core.on_command(cmd(0.3, stamp=t))
        r = core.step(t)
        outs.append(round(r.output.linear_x, 9))
    assert outs == [0.1, 0.2, 0.3, 0.3]


def test_velocity_limit_clamps_with_named_reason():
    core = ready_core(make_config(max_linear_accel=100.0))
    core.on_command(cmd(2.0, 3.0, stamp=0.0))
    r = core.step(0.0)
    assert r.output.linear_x == pytest.approx(0.5)
    assert r.output.angular_z == pytest.approx(0.2)    # angular accel 2.0 * 0.1 s
    assert r.verdict.level == L.LIMIT
    assert any("max_linear_vel" in s for s in r.verdict.reasons)
    assert any("max_angular_vel" in s for s in r.verdict.reasons)


def test_reverse_limit():
    core = ready_core(make_config(max_linear_accel=100.0))
    core.on_command(cmd(-1.0, stamp=0.0))
    assert core.step(0.0).output.linear_x == pytest.approx(-0.2)


@pytest.mark.parametrize("field", ["linear_x", "angular_z", "linear_y", "angular_x"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_stops_with_reason(field, bad):
    core = ready_core()
    core.on_command(VelocityCommand(**{"source": "autonomy", "stamp": 0.0, field: bad}))
    r = core.step(0.0)
    assert r.output.is_zero and r.verdict.level == L.STOP
    assert any(s.startswith("non-finite input") and field in s for s in r.verdict.reasons)


def test_watchdog_stops_after_timeout():
    core = ready_core(make_config(max_linear_accel=100.0))
    core.on_command(cmd(0.4, stamp=0.0))
    assert core.step(0.0).output.linear_x == pytest.approx(0.4)
    refresh(core, 0.5)
    assert core.step(0.5).output.linear_x == pytest.approx(0.4)   # age 0.5 == timeout: still fresh
    refresh(core, 0.55)
    r = core.step(0.55)
    assert r.output.is_zero and r.verdict.level == L.STOP
    assert "command watchdog" in r.verdict.reasons[0]


def test_decel_ramp_when_source_asks_for_less_but_stop_is_immediate():
    core = ready_core(make_config(max_linear_accel=100.0))
    core.on_command(cmd(0.5, stamp=0.0))
    core.step(0.0)
    refresh(core, 0.1)
    core.on_command(cmd(0.0, stamp=0.1))
    r = core.step(0.1)
    assert r.output.linear_x == pytest.approx(0.3)        # decel 2.0 * 0.1
    assert r.verdict.level == L.LIMIT


@pytest.mark.parametrize("which", ["scan", "odom"])
def test_stale_sensor_is_invalid_source(which):
    core = ready_core()
    if which == "scan":
        core.on_odom(odom(1.0))
    else:
        core.on_scan(clear_scan(1.0))
    core.on_command(cmd(0.3, stamp=1.0))
    r = core.step(1.0)
    assert r.output.is_zero and r.verdict.level == L.STOP
    assert any(s.startswith("invalid source") for s in r.verdict.reasons)


def test_missing_sensor_is_invalid_source():
    from qwen_stack.safety.supervisor_core import SafetyCore

    core = SafetyCore(make_config())
    core.on_command(cmd(0.3, stamp=0.0))
    r = core.step(0.0)
    assert r.output.is_zero
    assert "invalid source: no odometry received" in r.verdict.reasons
    assert "invalid source: no usable laser scan received" in r.verdict.reasons


def test_stop_zone():
    core = ready_core()
    core.on_scan(scan_with_point(0.0, 0.0, 0.35))            # 0.35 m ahead, inside stop zone (x < 0.4)
    core.on_command(cmd(0.3, stamp=0.0))
    r = core.step(0.0)
    assert r.output.is_zero and r.verdict.level == L.STOP
    assert r.verdict.reasons[0].startswith("stop zone")


def test_slowdown_zone_scales_by_ratio():
    # point 0.9 m to the side (left), inside the slowdown zone (|y| < 0.5? no: y=0.9 outside). Use behind: x=-0.8
    core = ready_core(make_config(max_linear_accel=100.0, time_before_collision=0.1))
    core.on_scan(scan_with_point(0.0, math.pi, 0.8))        # behind the robot, inside slowdown zone
    core.on_command(cmd(0.4, stamp=0.0))
    r = core.step(0.0)
    assert r.output.linear_x == pytest.approx(0.2)            # ratio 0.5
    assert r.verdict.level == L.SLOWDOWN


def test_approach_scales_to_time_before_collision():
    # obstacle 1.5 m ahead (outside the zones); robot radius 0.2 touches it after 1.3 m; at 0.5 m/s the
    # first sampled collision time on [0.1..1.0] s... none within 1 s (0.5 m). With time_before_collision
    # 4 s and 10 samples (0.4 s apart): contact at 1.3/0.5 = 2.6 s -> first sample 2.8 s -> scale 0.7.
    cfg = make_config(max_linear_accel=100.0, time_before_collision=4.0)
    core = ready_core(cfg)
    core.on_scan(scan_with_point(0.0, 0.0, 1.5))
    core.on_command(cmd(0.5, stamp=0.0))
    r = core.step(0.0)
    assert r.verdict.level == L.SLOWDOWN
    assert r.output.linear_x == pytest.approx(0.5 * 2.8 / 4.0)


def test_stopping_distance_cap():
    # stop zone front 0.4, radius 0.2 -> margin 0.2 m; decel 2.0, no reaction time: v = sqrt(2*2*0.2) = 0.894
    # with decel 0.5: v = sqrt(0.2) = 0.447 < max 0.5
    cfg = make_config(max_linear_accel=100.0, max_linear_decel=0.5)
    assert cfg.stop_cap_forward == pytest.approx(math.sqrt(0.2))
    core = ready_core(cfg)
    core.on_command(cmd(0.5, stamp=0.0))
    r = core.step(0.0)
    assert r.output.linear_x == pytest.approx(math.sqrt(0.2))
    assert any("stopping-distance cap" in s for s in r.verdict.reasons)


def test_geofence_stops_before_leaving():
    # 1 m from the fence at x=5, radius 0.2: a 1 s horizon at 0.5 m/s reaches 4.5 (clearance 0.5) OK;
    # at 4.5 the horizon reaches 5.0 -> must not keep going.
    core = ready_core(make_config(max_linear_accel=100.0, max_linear_decel=100.0))
    refresh(core, 0.0, x=4.0)
    core.on_command(cmd(0.5, stamp=0.0))
    assert core.step(0.0).output.linear_x == pytest.approx(0.5)
    refresh(core, 0.1, x=4.5)
    core.on_command(cmd(0.5, stamp=0.1))
    r = core.step(0.1)
    assert r.output.linear_x < 0.5
    assert any("geofence" in s for s in r.verdict.reasons)


def test_keep_out_blocks_entry_but_allows_leaving():
    cfg = make_config(keep_out_zones="box", **{"keep_out.box": [1.0, -1.0, 2.0, -1.0, 2.0, 1.0, 1.0, 1.0]},
                      max_linear_accel=100.0, max_linear_decel=100.0)
    core = ready_core(cfg)
    refresh(core, 0.0, x=0.5)                     # clearance 0.5 - predicted 0.5 m ahead would enter
    core.on_command(cmd(0.5, stamp=0.0))
    r = core.step(0.0)
    assert "keep-out box" in " ".join(r.verdict.reasons)
    assert r.output.linear_x < 0.5
    # already inside the zone (bad odometry): moving away is allowed, moving deeper is not
    core2 = ready_core(cfg)
    refresh(core2, 0.0, x=1.1, theta=math.pi)     # facing -x, i.e. out of the box
    core2.on_command(cmd(0.3, stamp=0.0))
    assert core2.step(0.0).output.linear_x == pytest.approx(0.3)
    core3 = ready_core(cfg)
    refresh(core3, 0.0, x=1.1, theta=0.0)         # facing deeper into the box
    core3.on_command(cmd(0.3, stamp=0.0))
    assert core3.step(0.0).output.is_zero


def test_teleop_outranks_autonomy_and_lock_blocks_autonomy():
    core = ready_core(make_config(max_linear_accel=100.0, max_linear_decel=100.0))
    core.on_command(cmd(0.4, stamp=0.0, source="autonomy"))
    core.on_command(cmd(0.1, stamp=0.0, source="teleop"))
    r = core.step(0.0)
    assert r.source == "teleop" and r.output.linear_x == pytest.approx(0.1)
    # teleop silent, lock held: autonomy stays blocked (REJECT), output zero
    core.on_lock(TeleopLock(True, 0.6))
    refresh(core, 0.6)
    core.on_command(cmd(0.4, stamp=0.6, source="autonomy"))
    r = core.step(0.6)
    assert r.output.is_zero and r.verdict.level == L.REJECT and "teleop lock held" in r.verdict.reasons[0]
    # lock released: autonomy resumes
    core.on_lock(TeleopLock(False, 0.7))
    refresh(core, 0.7)
    core.on_command(cmd(0.4, stamp=0.7, source="autonomy"))
    r = core.step(0.7)
    assert r.source == "autonomy" and r.output.linear_x == pytest.approx(0.4)


def test_stale_lock_fails_safe():
    core = ready_core()
    core.on_lock(TeleopLock(True, 0.0))
    refresh(core, 1.2)
    core.on_command(cmd(0.2, stamp=1.2, source="teleop"))
    r = core.step(1.2)
    assert r.output.is_zero and r.verdict.level == L.STOP
    assert "teleop lock held but not refreshed" in r.verdict.reasons[0]


def test_estop_latches_and_reset_does_not_resume_motion():
    core = ready_core(make_config(max_linear_accel=100.0))
    core.on_command(cmd(0.3, stamp=0.0))
    assert core.step(0.0).output.linear_x == pytest.approx(0.3)
    core.latch(EStopEvent("topic", "test", 0.05))
    refresh(core, 0.1)
    core.on_command(cmd(0.3, stamp=0.1))
    r = core.step(0.1)
    assert r.output.is_zero and r.verdict.level == L.ESTOP and r.estop_latched
    assert core.reset("", "op", 0.2) == (False, "reset refused: a reason is required")
    ok, _ = core.reset("area clear", "op", 0.2)
    assert ok and not core.estop.latched
    # the source keeps sending 0.3: still zero, it must send zero first
    for t in (0.3, 0.4):
        refresh(core, t)
        core.on_command(cmd(0.3, stamp=t))
        r = core.step(t)
        assert r.output.is_zero and r.verdict.level == L.REJECT
    refresh(core, 0.5)
    core.on_command(cmd(0.0, stamp=0.5))
    assert core.step(0.5).output.is_zero
    refresh(core, 0.6)
    core.on_command(cmd(0.3, stamp=0.6))
    assert core.step(0.6).output.linear_x == pytest.approx(0.3)


def test_reset_when_not_latched_is_refused():
    core = ready_core()
    assert core.reset("why", "op", 0.0) == (False, "e-stop is not latched")


def test_heartbeat_silence_latches_and_blocks_reset():
    core = ready_core(make_config(heartbeat_enabled=True, heartbeat_timeout=1.0))
    core.on_heartbeat(0.0)
    core.on_command(cmd(0.1, stamp=0.9))
    refresh(core, 0.9)
    assert not core.step(0.9).estop_latched
    refresh(core, 1.2)
    r = core.step(1.2)
    assert r.estop_latched and "heartbeat" in r.verdict.reasons[0]
    ok, msg = core.reset("fine", "op", 1.3)
    assert not ok and "heartbeat" in msg
    core.on_heartbeat(1.4)
    assert core.reset("fine", "op", 1.4)[0]


def test_odometry_lag_holds_speed():
    core = ready_core(make_config(odom_lag_tolerance=0.1))
    for k in range(4):                    # ramp 0.1 .. 0.4 while odometry reports standing still
        t = 0.1 * k
        core.on_scan(clear_scan(t))
        core.on_odom(odom(t))
        core.on_command(cmd(0.5, stamp=t))
        r = core.step(t)
    assert r.output.linear_x == pytest.approx(0.2)   # stops speeding up once the lag exceeds 0.1
    assert any("odometry lags" in s for s in r.verdict.reasons)


def test_clock_backwards_stops():
    core = ready_core()
    core.on_command(cmd(0.1, stamp=0.0))
    core.step(0.3)
    r = core.step(0.2)
    assert r.output.is_zero and "clock went backwards" in r.verdict.reasons[0]
