"""Issue 16, items 1, 2 and 4: clock jumps, the sign of the odometry-lag hold, laser faults (pure core, no ROS).

Each test drives the core through the sequence that broke the old code and states what the old code did."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qwen_stack.safety.geometry import ScanProjector, scan_fault
from qwen_stack.safety.geometry_reference import scan_points as ref_scan_points
from qwen_stack.safety.inputs import LaserScanData, TeleopLock
from qwen_stack.safety.verdict import VerdictLevel

from .helpers import clear_scan, cmd, make_config, odom, ready_core, scan_with_point

L = VerdictLevel


def sensors(core, t):
    core.on_scan(clear_scan(t))
    core.on_odom(odom(t, v=core.last_sent.linear_x))


# ------------------------------------------------------------------ item 1: backward clock jumps
def test_command_from_before_a_backward_jump_never_drives():
    """The reported case: a command received at t=16 s, sim time resets to 0; the old core drove on it
    again for the steps between 16.0 and 16.5 s (age now - stamp was negative before, fresh after)."""
    core = ready_core(make_config(max_linear_accel=100.0), t=15.9)
    sensors(core, 16.0)
    core.on_command(cmd(0.3, stamp=16.0))
    assert core.step(16.0).output.linear_x == pytest.approx(0.3)
    moved = []
    for k in range(0, 180):                       # clock reset to 0, runs to 17.9 s with fresh sensors
        t = 0.1 * k
        sensors(core, t)
        r = core.step(t)
        moved += [t] if not r.output.is_zero else []
        assert min(0.0, t) <= r.stamp
    assert moved == [], f"drove on a command from before the clock jump at t={moved}"


def test_first_step_after_a_jump_stops_and_names_it():
    core = ready_core(t=5.0)
    core.on_command(cmd(0.1, stamp=5.0))
    core.step(5.0)
    r = core.step(1.0)
    assert r.output.is_zero and r.verdict.level == L.STOP
    assert any("clock went backwards" in s and "discarded" in s for s in r.verdict.reasons), r.verdict.reasons


def test_stack_recovers_right_after_a_jump_without_waiting_for_the_old_time():
    """Old code: STOP 'clock went backwards' on every step until the clock passed its old maximum, and the
    acceleration shaping then saw dt = 0 (last send 'in the future'), so nothing could move for 100 s."""
    core = ready_core(make_config(max_linear_accel=1.0), t=100.0)
    core.on_command(cmd(0.2, stamp=100.0))
    core.step(100.0)
    outs = []
    for k in range(1, 6):
        t = 0.1 * k
        sensors(core, t)
        core.on_command(cmd(0.2, stamp=t))
        outs.append(round(core.step(t).output.linear_x, 9))
    assert outs == [0.0, 0.1, 0.2, 0.2, 0.2]             # the step that sees the jump stops, then ramps


@pytest.mark.parametrize("missing", ["odom", "scan"])
def test_sensor_data_from_before_a_jump_is_not_fresh(missing):
    """Old code: odometry/scan stamped 100 s looked fresh after the clock went back to 0 (negative age)."""
    core = ready_core(t=100.0)
    for k in range(1, 5):
        t = 0.1 * k
        if missing != "odom":
            core.on_odom(odom(t))
        if missing != "scan":
            core.on_scan(clear_scan(t))
        core.on_command(cmd(0.1, stamp=t))
        r = core.step(t)
        assert r.output.is_zero and r.verdict.level == L.STOP, r.verdict
    name = "odometry" if missing == "odom" else "laser scan"
    assert any(name in s for s in r.verdict.reasons), r.verdict.reasons


def test_teleop_lock_held_before_a_jump_stops_until_refreshed():
    """A held lock stays held over a jump (autonomy must not take over) but counts as stale until the
    console refreshes it; old code counted it fresh (negative age) until the clock passed its old stamp."""
    core = ready_core(make_config(max_linear_accel=100.0), t=50.0)
    core.on_lock(TeleopLock(True, 50.0))
    sensors(core, 0.1)                                     # the clock jumped back to 0
    core.on_command(cmd(0.2, source="autonomy", stamp=0.1))
    core.on_command(cmd(0.1, source="teleop", stamp=0.1))
    r = core.step(0.1)
    assert r.output.is_zero and any("teleop lock" in s and "clock" in s for s in r.verdict.reasons), r.verdict
    core.on_lock(TeleopLock(True, 0.15))
    sensors(core, 0.15)
    core.on_command(cmd(0.1, source="teleop", stamp=0.15))
    core.on_command(cmd(0.2, source="autonomy", stamp=0.15))
    r = core.step(0.15)
    assert r.source == "teleop" and r.output.linear_x == pytest.approx(0.1)


def test_heartbeat_from_before_a_jump_does_not_keep_the_operator_alive():
    """Old code: a heartbeat stamped 100 s kept 'silence' negative after a jump to 0 for 100 s."""
    core = ready_core(make_config(heartbeat_enabled=True, heartbeat_timeout=1.0), t=100.0)
    core.on_heartbeat(100.0)
    core.step(100.0)
    core.step(0.0)                                         # jump
    assert not core.step(0.9).estop_latched
    r = core.step(1.2)
    assert r.estop_latched and "heartbeat" in r.verdict.reasons[0]


def test_ages_are_never_negative_for_inputs_stamped_ahead_of_the_step():
    """An input stamped later than the step that judges it cannot be 'fresh' (the clock went back
    between its reception and the step)."""
    core = ready_core(t=0.0)
    core.on_command(cmd(0.1, stamp=10.0))
    core.on_odom(odom(10.0))
    core.on_scan(clear_scan(10.0))
    r = core.step(9.0)
    assert r.output.is_zero and r.verdict.level == L.STOP


def test_forward_jump_makes_inputs_stale():
    core = ready_core(make_config(max_linear_accel=100.0), t=0.0)
    core.on_command(cmd(0.2, stamp=0.0))
    assert not core.step(0.0).output.is_zero
    r = core.step(60.0)
    assert r.output.is_zero and r.verdict.level == L.STOP


# ------------------------------------------------------------------ item 2: odometry lag and the sign
def test_odometry_lag_never_keeps_the_old_direction_when_reverse_is_asked():
    """Old code: prev +0.1, odometry 0, request -0.2: |v| > |prev| and the lag 0.1 > 0.05 held +0.1 forward."""
    core = ready_core(make_config(odom_lag_tolerance=0.05, max_linear_accel=100.0, max_linear_decel=100.0))
    core.on_command(cmd(0.1, stamp=0.0))
    assert core.step(0.0).output.linear_x == pytest.approx(0.1)
    for k in range(1, 5):
        t = 0.1 * k
        core.on_scan(clear_scan(t))
        core.on_odom(odom(t, v=0.0))                      # the base lags: still standing
        core.on_command(cmd(-0.2, stamp=t))
        r = core.step(t)
        assert r.output.linear_x <= 0.0, (k, r.output, r.verdict)


def test_odometry_moving_the_other_way_counts_as_lag():
    """Odometry reports the sent speed backwards (wheels slipping): the lag is 2|v|, not |v| - |-v| = 0; the
    old code saw no lag and ramped on to 0.5 m/s."""
    core = ready_core(make_config(odom_lag_tolerance=0.1, max_linear_accel=1.0))
    outs = []
    for k in range(5):
        t = 0.1 * k
        core.on_scan(clear_scan(t))
        core.on_odom(odom(t, v=-abs(core.last_sent.linear_x)))
        core.on_command(cmd(0.5, stamp=t))
        outs.append(core.step(t).output.linear_x)
    assert max(outs) == pytest.approx(0.1)               # 0.1, then lag 0.1 - (-0.1) = 0.2 > 0.1 holds it


# ------------------------------------------------------------------ item 4: laser faults
def _scan(ranges, stamp, angle_min=-math.pi, inc=None, rmin=0.05, rmax=10.0):
    ranges = np.asarray(ranges, dtype=np.float64)
    inc = 2 * math.pi / max(len(ranges), 1) if inc is None else inc
    return LaserScanData(angle_min, inc, rmin, rmax, ranges, stamp)


@pytest.mark.parametrize("close", [-math.inf, 0.0, 0.03])
def test_too_close_beam_is_an_obstacle_at_the_sensor(close):
    """REP 117: -inf is 'too close to measure'; 0.0 and values below range_min are the same. Old code
    dropped them, i.e. read free space, and drove at full speed."""
    core = ready_core(make_config(max_linear_accel=100.0))
    ranges = np.full(360, np.inf)
    ranges[180] = close                                    # straight ahead
    core.on_scan(_scan(ranges, 0.0))
    core.on_command(cmd(0.3, stamp=0.0))
    r = core.step(0.0)
    assert r.output.is_zero and any("stop zone" in s for s in r.verdict.reasons), r.verdict


@pytest.mark.parametrize("bad", ["all_nan", "no_beams", "nan_increment", "nan_angle_min", "inf_range_min",
                                 "range_max_below_min", "zero_increment", "range_max_short_of_stop_zone"])
def test_unusable_scan_is_not_free_space_and_goes_stale(bad):
    """The reported case: an obstacle 0.3 m ahead (stop zone), then scans without usable data. Old code
    replaced the obstacle by 'no points' with a fresh stamp and drove at 0.3 m/s toward it."""
    cfg = make_config(max_linear_accel=100.0)
    core = ready_core(cfg)
    core.on_scan(scan_with_point(0.0, 0.0, 0.3))
    core.on_command(cmd(0.3, stamp=0.0))
    assert core.step(0.0).output.is_zero
    kw = {}
    ranges = np.full(360, np.inf)
    if bad == "all_nan":
        ranges[:] = np.nan
    elif bad == "no_beams":
        ranges = np.zeros(0)
    elif bad == "nan_increment":
        kw["inc"] = math.nan
    elif bad == "nan_angle_min":
        kw["angle_min"] = math.nan
    elif bad == "inf_range_min":
        kw["rmin"] = math.inf
    elif bad == "range_max_below_min":
        kw["rmax"] = 0.01
    elif bad == "zero_increment":
        kw["inc"] = 0.0
    elif bad == "range_max_short_of_stop_zone":
        kw["rmax"] = 0.3                                   # +inf beams then say nothing beyond 0.3 m
    if bad != "range_max_short_of_stop_zone":
        assert scan_fault(*_fields(_scan(ranges, 0.0, **kw))) is not None
    reasons = []
    for k in range(1, 15):
        t = 0.1 * k
        core.on_scan(_scan(ranges, t, **kw))
        core.on_odom(odom(t))
        core.on_command(cmd(0.3, stamp=t))
        r = core.step(t)
        assert r.output.is_zero, (t, r.verdict)
        reasons = r.verdict.reasons
    assert any("laser" in s and "unusable" in s for s in reasons), reasons


def test_partly_nan_scan_keeps_its_valid_beams():
    ranges = np.full(360, np.nan)
    ranges[0:10] = np.inf                                  # behind: nothing in range
    assert scan_fault(*_fields(_scan(ranges, 0.0))) is None


def _fields(scan):
    return scan.angle_min, scan.angle_increment, scan.range_min, scan.range_max, scan.ranges


@pytest.mark.parametrize("seed", range(5))
def test_projection_with_faulty_beams_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    n = 360
    ranges = rng.uniform(-0.5, 4.0, n)
    for value in (np.nan, np.inf, -np.inf, 0.0):
        ranges[rng.integers(0, n, 20)] = value
    lx, ly, lyaw = rng.uniform(-0.2, 0.2, 3)
    pts = ScanProjector(lx, ly, lyaw).points(-math.pi, 2 * math.pi / n, 0.1, 3.5, ranges)
    pts_ref = ref_scan_points(lx, ly, lyaw, -math.pi, 2 * math.pi / n, 0.1, 3.5, ranges)
    assert pts == pytest.approx(np.array(pts_ref), abs=1e-12)
    at_sensor = np.count_nonzero(~np.isnan(ranges) & (ranges < 0.1))
    assert np.count_nonzero(np.all(np.abs(pts - [lx, ly]) < 1e-12, axis=1)) == at_sensor
