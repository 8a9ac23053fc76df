"""ros_ws/src/tf2_msgs: ROS 2's own tf2_msgs definitions, built for the pip world (no wheel has them).

Byte-identical files give the same type names and hashes as ROS 2's package, so RViz, Foxglove and tf2
on another machine read our /tf. The hashes are those of ros2/geometry2's tf2_msgs/ files (commit
1b005c6556cf350d7670812ef30eefed8443a759)."""
from __future__ import annotations

import hashlib
import importlib

import pytest

from qwen_stack.paths import SOURCE_ROOT

PKG = SOURCE_ROOT / "ros_ws" / "src" / "tf2_msgs"
OFFICIAL_SHA256 = {
    "msg/TFMessage.msg": "f3fca610a59b31ee4c7b740522ecdd0fd8c76002170088111409e4df513f1dfc",
    "msg/TF2Error.msg": "f1f3603b877ed51a5a28b264257e9bc37312e32a767838f52310d07027d819ab",
    "srv/FrameGraph.srv": "2e2cb255db16243bbedf930cb5e1f192829a43f37b7786a882424c364b37152b",
    "action/LookupTransform.action": "f82a4583b425d75d443d14688eb5fc6be5e86ced6d6017d13f1e18c1aae1315c",
}


@pytest.mark.parametrize("rel", sorted(OFFICIAL_SHA256))
def test_definitions_are_ros2s_bytes(rel):
    assert hashlib.sha256((PKG / rel).read_bytes()).hexdigest() == OFFICIAL_SHA256[rel]


def test_every_definition_is_built():
    cmake = (PKG / "CMakeLists.txt").read_text()
    assert all(f'"{rel}"' in cmake for rel in OFFICIAL_SHA256)


def test_tfmessage_round_trips_through_cdr():
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    TFMessage = importlib.import_module("tf2_msgs.msg").TFMessage
    TransformStamped = importlib.import_module("geometry_msgs.msg").TransformStamped
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = "odom", "base_link"
    t.transform.translation.x, t.transform.rotation.w = 1.5, 1.0
    msg = TFMessage(transforms=[t, t])
    back = rclpy_serialization.deserialize_message(rclpy_serialization.serialize_message(msg), TFMessage)
    assert back == msg and back.transforms[1].child_frame_id == "base_link"
