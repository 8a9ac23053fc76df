"""Grounding geometry with hand-derived expectations."""
from __future__ import annotations

import math

import pytest

from qwen_stack.geometry import Pose2D
from qwen_stack.qwen_node.agent.grounding import (
    CameraIntrinsics, CameraMount, LaserReading, approach_pose, ground_point, world_to_odom)

FY = 240 / math.tan(math.radians(30))  # 60 deg vertical field of view, 480 rows
CAM = CameraIntrinsics(FY, FY, 320.0, 240.0, 640, 480)
MOUNT = CameraMount((0.10, 0.0, 0.15))


def laser_with(ranges_by_angle: dict[float, float], n=360) -> LaserReading:
    inc = 2 * math.pi / n
    ranges = [float("inf")] * n
    for a, r in ranges_by_angle.items():
        ranges[int(round((a + math.pi) / inc)) % n] = r
    return LaserReading((0.05, 0.0), -math.pi, inc, ranges, 0.05, 10.0)


def test_bottom_centre_point_hits_the_floor_30_degrees_down():
    g = ground_point(500, 1000, CAM, MOUNT, 0.0, None, Pose2D(1.0, 2.0, math.pi / 2), standoff=0.1)
    d = 0.15 / math.tan(math.radians(30))          # 0.2598 m ahead of the camera
    assert g.source == "floor" and g.range_m == pytest.approx(d)
    assert g.target_base == pytest.approx((0.10 + d, 0.0))
    assert g.target_odom == pytest.approx((1.0, 2.0 + 0.10 + d))     # robot faces +y in odom
    assert (g.goal.x, g.goal.y, g.goal.yaw) == pytest.approx((1.0, 2.0 + d, math.pi / 2))


def test_horizon_point_uses_the_laser():
    g = ground_point(500, 500, CAM, MOUNT, 0.0, laser_with({0.0: 1.0}), Pose2D(0, 0, 0), standoff=0.3)
    assert g.source == "laser" and g.target_base == pytest.approx((1.05, 0.0), abs=1e-6)
    assert (g.goal.x, g.goal.y) == pytest.approx((0.75, 0.0))


def test_nearer_obstacle_wins_over_the_floor():
    # the floor point would be 0.26 m ahead; a box 0.2 m in front of the laser is nearer
    g = ground_point(500, 1000, CAM, MOUNT, 0.0, laser_with({0.0: 0.2}), Pose2D(0, 0, 0), standoff=0.0)
    assert g.source == "laser" and g.target_base[0] == pytest.approx(0.25, abs=1e-6)


def test_off_centre_point_with_pan():
    pan = 0.5
    g = ground_point(250, 1000, CAM, MOUNT, pan, None, Pose2D(0, 0, 0), standoff=0.0)
    bearing = pan + math.atan((320 - 160) / FY)   # left of the optical axis
    tx, ty = g.target_base
    assert math.atan2(ty - 0.0, tx - 0.10) == pytest.approx(bearing)


@pytest.mark.parametrize("x, y", [(-1, 500), (500, 1001)])
def test_points_outside_the_image_are_errors(x, y):
    assert "outside the image" in ground_point(x, y, CAM, MOUNT, 0.0, None, Pose2D(0, 0, 0), 0.1)


def test_point_above_horizon_without_laser_return_is_an_error():
    msg = ground_point(500, 100, CAM, MOUNT, 0.0, laser_with({}), Pose2D(0, 0, 0), 0.1)
    assert isinstance(msg, str) and "nothing found" in msg


def test_approach_pose_and_world_to_odom():
    p = approach_pose(Pose2D(0, 0, 0), (0.0, 2.0), 0.5)
    assert (p.x, p.y, p.yaw) == pytest.approx((0.0, 1.5, math.pi / 2))
    # odom = world rotated by 90 deg and shifted: base at world (1, 1, 0) is odom (0, 0, pi/2)
    assert world_to_odom((2.0, 1.0), Pose2D(1, 1, 0), Pose2D(0, 0, math.pi / 2)) == pytest.approx((0.0, 1.0))
