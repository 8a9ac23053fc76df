"""Kinematics, motor driver watchdog and wheel odometry, against hand-derived values."""
from __future__ import annotations

import math

import pytest

from qwen_stack.geometry import wrap_angle
from qwen_stack.sim.diff_drive import DiffDriveKinematics, MotorDriver, WheelOdometry

KIN = DiffDriveKinematics(wheel_radius=0.05, wheel_separation=0.26)


def test_wheel_speeds_hand_derived():
    assert KIN.wheel_speeds(0.3, 0.0) == pytest.approx((6.0, 6.0))
    # 1 rad/s in place: each wheel moves at 0.13 m/s, i.e. 2.6 rad/s, left backwards.
    assert KIN.wheel_speeds(0.0, 1.0) == pytest.approx((-2.6, 2.6))
    assert KIN.body_twist(*KIN.wheel_speeds(0.2, -0.7)) == pytest.approx((0.2, -0.7))


def test_driver_clamps_keeping_curvature_and_times_out():
    d = MotorDriver(KIN, timeout=0.5, max_wheel_speed=10.0)
    assert d.command(1.0, 1.0, now=0.0) is None  # wheels (17.4, 22.6) -> scaled to peak 10
    left, right = d.commanded(0.1)
    assert max(abs(left), abs(right)) == pytest.approx(10.0)
    v, w = KIN.body_twist(left, right)
    assert w / v == pytest.approx(1.0)
    assert d.commanded(0.5) != (0.0, 0.0)
    assert d.commanded(0.5001) == (0.0, 0.0)


def test_driver_ramps_both_wheels_together():
    d = MotorDriver(KIN, timeout=0.5, max_wheel_speed=20.0, max_wheel_accel=40.0)
    d.wheel_targets(0.0)
    d.command(0.2, 1.0, now=0.0)  # wheels (1.4, 6.6) rad/s
    left, right = d.wheel_targets(0.1)  # 0.1 s at 40 rad/s^2: the larger change is 4 rad/s
    assert right == pytest.approx(4.0)
    assert left == pytest.approx(1.4 * 4.0 / 6.6)
    assert d.wheel_targets(0.2) == pytest.approx((1.4, 6.6))
    assert d.wheel_targets(0.5) == pytest.approx((1.4, 6.6))  # last instant of the timeout
    # Timed out after 0.5 s: ramps down to zero, 2 rad/s per 0.05 s on the faster wheel.
    assert d.wheel_targets(0.55) == pytest.approx((1.4 - 1.4 * 2.0 / 6.6, 4.6))
    assert d.wheel_targets(0.8) == (0.0, 0.0)


@pytest.mark.parametrize("bad", [(math.nan, 0.0), (0.0, math.inf), (-math.inf, 1.0)])
def test_driver_refuses_non_finite_and_stops(bad):
    d = MotorDriver(KIN)
    d.command(0.3, 0.0, now=0.0)
    err = d.command(*bad, now=0.1)
    assert err and "not finite" in err
    assert d.wheel_targets(0.1) == (0.0, 0.0)


@pytest.mark.parametrize("kwargs", [{"timeout": 0.0}, {"timeout": -1.0}, {"max_wheel_speed": 0.0},
                                    {"max_wheel_accel": -1.0}])
def test_driver_rejects_bad_configuration(kwargs):
    with pytest.raises(ValueError):
        MotorDriver(KIN, **kwargs)


def test_odometry_straight_and_quarter_circle():
    odo = WheelOdometry(KIN)
    odo.update(0.0, 0.0, 0.0)
    odo.update(20.0, 20.0, 1.0)  # 20 rad * 0.05 m = 1 m straight
    assert (odo.x, odo.y, odo.yaw) == pytest.approx((1.0, 0.0, 0.0))
    assert odo.linear == pytest.approx(1.0)
    # Quarter circle of radius R=0.5 to the left in 1000 steps: left wheel on, right on R+0.13.
    odo = WheelOdometry(KIN)
    R, n = 0.5, 1000
    odo.update(0.0, 0.0, 0.0)
    for i in range(1, n + 1):
        arc = math.pi / 2 * i / n
        odo.update((R - 0.13) * arc / 0.05, (R + 0.13) * arc / 0.05, i * 0.01)
    assert (odo.x, odo.y, odo.yaw) == pytest.approx((R, R, math.pi / 2), abs=1e-6)


def test_wrap_angle():
    assert wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)
    assert wrap_angle(-3 * math.pi / 2) == pytest.approx(math.pi / 2)
    assert wrap_angle(0.1) == pytest.approx(0.1)
