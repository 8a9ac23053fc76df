"""Sim state -> ROS messages, and the frames' geometry (REP 103/105), against hand-derived values."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from qwen_stack.sim import ros_messages as rm  # noqa: E402
from qwen_stack.sim.config import SimNodeConfig  # noqa: E402
from qwen_stack.sim.robot_description import OPTICAL_RPY, quat_matrix  # noqa: E402
from qwen_stack.geometry import Pose2D  # noqa: E402
from qwen_stack.sim.scenario import FloorArea  # noqa: E402
from qwen_stack.sim.simulator import BaseState, LaserSpec, ObjectState  # noqa: E402
from qwen_stack.robot import load_robot  # noqa: E402


def rotation(q) -> np.ndarray:
    return np.array(quat_matrix(q))


def test_optical_frame_axes():
    r = rotation(rm.quat_rpy(*OPTICAL_RPY))  # columns: optical x, y, z in camera_link
    np.testing.assert_allclose(r[:, 2], [1, 0, 0], atol=1e-12)   # z forward
    np.testing.assert_allclose(r[:, 0], [0, -1, 0], atol=1e-12)  # x right
    np.testing.assert_allclose(r[:, 1], [0, 0, -1], atol=1e-12)  # y down


def test_quat_rpy_is_z_y_x():
    roll, pitch, yaw = 0.3, -0.4, 1.2
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    ry = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
    rx = np.array([[1, 0, 0], [0, math.cos(roll), -math.sin(roll)], [0, math.sin(roll), math.cos(roll)]])
    np.testing.assert_allclose(rotation(rm.quat_rpy(roll, pitch, yaw)), rz @ ry @ rx, atol=1e-12)


def test_camera_transforms_tilt_down_and_pan():
    robot, cfg = load_robot(), SimNodeConfig()
    tf = rm.robot_transforms(robot, BaseState(1.0, 2.0, 0.5, 0.0, 0.0), {"camera_pan_joint": 0.7}, 3.25, cfg)
    odom, pan = tf
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    assert (odom.transform.translation.x, odom.transform.translation.z) == (1.0, robot.wheel_radius)
    assert (pan.header.frame_id, pan.child_frame_id) == ("base_link", "camera_pan_link")
    tilt_tf = {t.child_frame_id: t for t in rm.static_transforms(robot, 0.0, cfg)}["camera_link"]
    q1, q2 = pan.transform.rotation, tilt_tf.transform.rotation
    forward = (rotation((q1.x, q1.y, q1.z, q1.w)) @ rotation((q2.x, q2.y, q2.z, q2.w)))[:, 0]
    tilt = math.radians(robot.camera_tilt_deg)
    np.testing.assert_allclose(forward, [math.cos(tilt) * math.cos(0.7), math.cos(tilt) * math.sin(0.7),
                                         -math.sin(tilt)], atol=1e-12)
    assert (pan.header.stamp.sec, pan.header.stamp.nanosec) == (3, 250_000_000)


def test_stamp_never_rolls_over():
    s = rm.stamp(1.9999999999)
    assert s.sec in (1, 2) and 0 <= s.nanosec <= 999_999_999


def test_laser_scan_and_odometry_fields():
    spec = LaserSpec(beams=4, angle_min=-math.pi, angle_max=math.pi / 2)
    msg = rm.laser_scan(np.array([1.0, np.inf, -np.inf, 2.5]), spec, 1.5, "laser", 10.0)
    assert msg.angle_increment == pytest.approx(math.pi / 2) and msg.scan_time == pytest.approx(0.1)
    assert msg.ranges[1] == math.inf and msg.ranges[2] == -math.inf and msg.ranges[3] == 2.5
    odom = rm.odometry(BaseState(1.0, -2.0, math.pi / 2, 0.3, -0.1), 2.0, "odom", "base_link")
    q = odom.pose.pose.orientation
    assert (q.z, q.w) == pytest.approx((math.sin(math.pi / 4), math.cos(math.pi / 4)))
    assert odom.twist.twist.linear.x == 0.3 and odom.twist.twist.angular.z == -0.1


def test_images_and_objects_json():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    img = rm.image(rgb, 0.5, "camera_optical_frame")
    assert (img.width, img.height, img.step, len(img.data)) == (6, 4, 18, 72)
    jpeg = rm.compressed_image(rgb, 0.5, "camera_optical_frame", 90)
    import cv2
    back = cv2.imdecode(np.frombuffer(bytes(jpeg.data), np.uint8), cv2.IMREAD_COLOR)  # BGR
    assert back[..., 2].mean() > 150 and back[..., 0].mean() < 50
    objs = [ObjectState("red_cube", "box", (1, 0, 0, 1), 1.0, 2.0, 0.04, 0.1, True)]
    area = FloorArea("blue_square", (0.25, 0.25), (0, 0, 1, 1), Pose2D(-1, 1, 0))
    doc = json.loads(rm.objects_json(objs, [area], 3.0, "world").data)
    assert doc["held"] == "red_cube" and doc["objects"][0]["x"] == 1.0 and doc["areas"][0]["half_size"] == [0.25, 0.25]
