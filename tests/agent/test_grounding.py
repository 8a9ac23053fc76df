"""Grounding geometry with hand-derived expectations, and against the simulator's camera."""
from __future__ import annotations

import math

import pytest

from qwen_stack.geometry import CameraIntrinsics, Pose2D
from qwen_stack.qwen_node.agent.grounding import (
    CameraMount, LaserReading, approach_pose, ground_point, world_to_odom)

FY = 240 / math.tan(math.radians(30))  # 60 deg vertical field of view, 480 rows
CAM = CameraIntrinsics(FY, FY, 320.0, 240.0, 640, 480)
# pan axis 0.15 above base_link, base_link 0.05 above the floor: the axis is 0.20 up; no tilt, no lens offset
MOUNT = CameraMount((0.10, 0.0, 0.15), pitch=0.0, base_height=0.05, lens_x=0.0)


def laser_with(ranges_by_angle: dict[float, float], n=360) -> LaserReading:
    inc = 2 * math.pi / n
    ranges = [float("inf")] * n
    for a, r in ranges_by_angle.items():
        ranges[int(round((a + math.pi) / inc)) % n] = r
    return LaserReading((0.05, 0.0), -math.pi, inc, ranges, 0.05, 10.0)


def test_bottom_centre_point_hits_the_floor_30_degrees_down():
    g = ground_point(500, 1000, CAM, MOUNT, 0.0, None, Pose2D(1.0, 2.0, math.pi / 2), standoff=0.1)
    d = 0.20 / math.tan(math.radians(30))          # 0.3464 m ahead of the camera, 0.20 m above the floor
    assert g.source == "floor" and g.range_m == pytest.approx(d)
    assert g.target_base == pytest.approx((0.10 + d, 0.0))
    assert g.target_odom == pytest.approx((1.0, 2.0 + 0.10 + d))     # robot faces +y in odom
    assert (g.goal.x, g.goal.y, g.goal.yaw) == pytest.approx((1.0, 2.0 + d, math.pi / 2))


def test_horizon_point_uses_the_laser():
    g = ground_point(500, 500, CAM, MOUNT, 0.0, laser_with({0.0: 1.0}), Pose2D(0, 0, 0), standoff=0.3)
    assert g.source == "laser" and g.target_base == pytest.approx((1.05, 0.0), abs=1e-6)
    assert (g.goal.x, g.goal.y) == pytest.approx((0.75, 0.0))


def test_nearer_obstacle_wins_over_the_floor():
    # the floor point would be 0.35 m ahead; a box 0.2 m in front of the laser is nearer
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


def test_tilted_camera_with_a_lens_ahead_of_the_pan_axis():
    """Pitch 15 deg down, optical centre 0.02 m ahead of the axis along the tilted camera x: the image centre
    meets the floor where the optical axis does, by hand."""
    pitch, lens = math.radians(15.0), 0.02
    mount = CameraMount((0.10, 0.0, 0.15), pitch=pitch, base_height=0.05, lens_x=lens)
    height = 0.20 - lens * math.sin(pitch)                  # optical centre above the floor
    ahead = 0.10 + lens * math.cos(pitch)                   # ... and ahead of base_link
    for pan in (0.0, 0.7):
        g = ground_point(500, 500, CAM, mount, pan, None, Pose2D(0, 0, 0), standoff=0.0)
        reach = height / math.tan(pitch)
        want = (0.10 + (ahead - 0.10 + reach) * math.cos(pan), (ahead - 0.10 + reach) * math.sin(pan))
        assert g.source == "floor" and g.target_base == pytest.approx(want, abs=1e-9)


def test_mount_of_the_robot_description_puts_the_floor_under_the_wheels():
    """The agent builds its mount from config/robot.yaml: the pan axis is wheel_radius + camera z above the floor
    (0.20 m), not camera z (0.15 m: go_to_point stopped about a quarter short of the named point)."""
    from qwen_stack.robot import load_robot

    robot = load_robot()
    mount = CameraMount.of_robot(robot)
    assert mount.xyz == robot.camera_xyz and mount.pitch == pytest.approx(math.radians(robot.camera_tilt_deg))
    assert mount.base_height + mount.xyz[2] == pytest.approx(0.20)
    assert mount.optical_centre(0.0)[2] == pytest.approx(0.20 - robot.camera_lens_x * math.sin(mount.pitch))


@pytest.mark.parametrize("pan", [0.0, 0.6, -1.1])
def test_grounded_floor_point_is_where_the_simulators_camera_sees_it(pan):
    """Project floor points into the simulated camera (MuJoCo's own camera pose and intrinsics) and ground the
    pixels with the mount the agent builds from the robot description: the goal is the point, within 1 cm."""
    import numpy as np

    from qwen_stack.robot import load_robot
    from qwen_stack.sim.scenario import layout_from_dict
    from qwen_stack.sim.simulator import Simulator

    robot = load_robot()
    arena = {"name": "grounding", "seed": 0, "arena": {"half_size": [3.0, 3.0]},
             "robot_start": {"x": 0.0, "y": 0.0, "yaw": 0.0}, "objects": [], "floor_areas": []}
    sim = Simulator(layout_from_dict(arena), robot)
    try:
        assert sim.set_pan(pan) is None
        sim.step_for(1.5)                                    # the pan settles
        truth = sim.ground_truth()
        base = Pose2D(truth.x, truth.y, truth.yaw)
        _, pos, _ = sim.joint_states()
        pan_now = pos[2]
        w, h = 640, 480
        fx, fy, cx, cy = sim.camera_intrinsics(w, h)
        cam = CameraIntrinsics(fx, fy, cx, cy, w, h)
        cid = sim.model.camera("camera").id
        p_cam, r_cam = sim.data.cam_xpos[cid], sim.data.cam_xmat[cid].reshape(3, 3)  # world; looks along -z, y up
        mount = CameraMount.of_robot(robot)
        for u, v in ((320.0, 400.0), (150.0, 460.0), (500.0, 300.0)):
            # the pixel's ray in the world, from MuJoCo's camera (not from the robot description)
            d_cam = np.array([(u - cx) / fx, -(v - cy) / fy, -1.0])
            ray = r_cam @ d_cam
            t = -p_cam[2] / ray[2]
            floor = p_cam + t * ray                          # where that pixel's ray meets the floor (z = 0)
            g = ground_point(u / w * 1000, v / h * 1000, cam, mount, pan_now, None, base, standoff=0.0)
            assert not isinstance(g, str), g
            assert g.source == "floor"
            assert math.dist(g.target_odom, floor[:2]) < 0.01, (u, v, g.target_odom, floor[:2])
    finally:
        sim.close()


def test_approach_pose_and_world_to_odom():
    p = approach_pose(Pose2D(0, 0, 0), (0.0, 2.0), 0.5)
    assert (p.x, p.y, p.yaw) == pytest.approx((0.0, 1.5, math.pi / 2))
    # odom = world rotated by 90 deg and shifted: base at world (1, 1, 0) is odom (0, 0, pi/2)
    assert world_to_odom((2.0, 1.0), Pose2D(1, 1, 0), Pose2D(0, 0, math.pi / 2)) == pytest.approx((0.0, 1.0))
