"""qwen_stack.ros_messages on real generated messages (the planner's direct calls and the supervisor's
proxy both use it), and qwen_stack.geometry's one Pose2D / yaw / wrap."""
from __future__ import annotations

import json
import math
import random

import pytest

from qwen_stack.geometry import Pose2D, quaternion_of_yaw, wrap_angle, yaw_of, yaw_of_quaternion

pytest.importorskip("rclpy")
from qwen_stack.ros_messages import InterfaceUnavailable, fill_message, message_to_dict, service_class  # noqa: E402


def test_service_class_resolves_and_says_why_not():
    srv = service_class("qwen_stack_interfaces/srv/GoToPose")
    assert set(srv.Request.get_fields_and_field_types()) == {"x", "y", "theta", "use_theta", "max_speed"}
    for bad, why in [("qwen_stack_interfaces/GoToPose", "pkg/srv/Name"), ("a/msg/B", "pkg/srv/Name"),
                     ("no_such_pkg/srv/X", "cannot be imported"), ("qwen_stack_interfaces/srv/Nope", "cannot be imported"),
                     ("//", "pkg/srv/Name")]:
        with pytest.raises(InterfaceUnavailable, match=why):
            service_class(bad)


def test_fill_casts_to_field_types_and_refuses_unknown_fields():
    req = fill_message(service_class("qwen_stack_interfaces/srv/GoToPose").Request(),
                       {"x": 1, "y": "2.5", "theta": 0, "use_theta": 1, "max_speed": 0.3})
    assert (req.x, req.y, req.theta, req.use_theta, req.max_speed) == (1.0, 2.5, 0.0, True, 0.3)
    assert isinstance(req.x, float)
    with pytest.raises(ValueError, match="no field 'z'"):
        fill_message(service_class("qwen_stack_interfaces/srv/GoToPose").Request(), {"z": 1.0})


def test_nested_messages_arrays_and_non_finite_values_become_json():
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import CompressedImage, LaserScan

    p = fill_message(PoseStamped(), {"header": {"frame_id": "odom"}, "pose": {"position": {"x": 1, "y": 2}}})
    d = message_to_dict(p)
    assert d["header"]["frame_id"] == "odom" and d["pose"]["position"] == {"x": 1.0, "y": 2.0, "z": 0.0}
    scan = LaserScan(ranges=[1.0, float("inf"), float("nan")], range_max=8.0)
    assert message_to_dict(scan)["ranges"] == [1.0, "inf", "nan"]
    img = CompressedImage(format="jpeg", data=b"\x00\xff\x10")
    assert message_to_dict(img)["data"] == [0, 255, 16]
    json.dumps(message_to_dict(scan))          # everything JSON-able
    json.dumps(message_to_dict(img))


def test_pose_frames_round_trip_and_yaw_helpers_agree():
    rng = random.Random(7)
    for _ in range(200):
        pose = Pose2D(rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-math.pi, math.pi))
        bx, by = rng.uniform(-3, 3), rng.uniform(-3, 3)
        assert pose.to_base(*pose.to_odom(bx, by)) == pytest.approx((bx, by))
        x, y, z, w = quaternion_of_yaw(pose.yaw)
        assert yaw_of_quaternion(x, y, z, w) == pytest.approx(pose.yaw)
        a = rng.uniform(-20, 20)
        wrapped = wrap_angle(a)
        assert -math.pi <= wrapped < math.pi and math.sin(wrapped) == pytest.approx(math.sin(a))
        assert math.cos(wrapped) == pytest.approx(math.cos(a))

    class Q:
        x, y, z, w = quaternion_of_yaw(1.0)
    assert yaw_of(Q) == pytest.approx(1.0)
    assert Pose2D(1.0, 0.0, math.pi / 2).to_odom(1.0, 0.0) == pytest.approx((1.0, 1.0))
