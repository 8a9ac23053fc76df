"""Schema text of recorded types: rosbag2's ros2msg layout, checked against hand-written expectations."""
from __future__ import annotations

import pytest

from qwen_stack.recorder.schema import DELIMITER, DefinitionError, DefinitionSource, dependencies, split_type_name


def _tree(tmp_path, files: dict) -> list:
    share = tmp_path / "share"
    for rel, text in files.items():
        p = share / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return [share]


OUTER = "# outer\nuint8 MODE_A=1\nInner first\npkg_b/Leaf[] leaves\nInner[2] second\nstring<=8 label\n"
INNER = "pkg_b/Leaf leaf\nfloat64 x\n"
LEAF = "int32 n\n"


def test_nested_type_text_equals_hand_written_expectation(tmp_path):
    src = DefinitionSource(_tree(tmp_path, {"pkg_a/msg/Outer.msg": OUTER, "pkg_a/msg/Inner.msg": INNER,
                                            "pkg_b/msg/Leaf.msg": LEAF}))
    # dependencies of one text sorted (pkg_a/Inner < pkg_b/Leaf), each type once, depth first
    expected = ("# outer\nuint8 MODE_A=1\nInner first\npkg_b/Leaf[] leaves\nInner[2] second\nstring<=8 label\n"
                "\n================================================================================\n"
                "MSG: pkg_a/Inner\n"
                "pkg_b/Leaf leaf\nfloat64 x\n"
                "\n================================================================================\n"
                "MSG: pkg_b/Leaf\n"
                "int32 n\n")
    assert src.full_text("pkg_a/msg/Outer") == expected
    assert DELIMITER == "=" * 80 + "\n"


def test_dependencies_skip_primitives_comments_and_bounded_strings():
    text = "# pkg/Fake in a comment\nint32 a\nstring<=5 s\nbyte[] b\nOther o   # trailing\nx_msgs/Y[<=3] y\n"
    assert dependencies(text, "mine") == ["mine/Other", "x_msgs/Y"]


def test_missing_definition_names_the_type_and_the_folders(tmp_path):
    src = DefinitionSource(_tree(tmp_path, {"pkg_a/msg/Outer.msg": OUTER}))
    with pytest.raises(DefinitionError, match=r"pkg_a/Inner.*pkg_a/msg/Inner\.msg"):
        src.full_text("pkg_a/msg/Outer")
    with pytest.raises(DefinitionError, match="not a message type name"):
        split_type_name("no_slash")


def test_cycle_is_refused_not_looped(tmp_path):
    src = DefinitionSource(_tree(tmp_path, {"p/msg/A.msg": "B b\n", "p/msg/B.msg": "A a\n"}))
    text = src.full_text("p/msg/A")   # A -> B -> A: A is appended once (as rosbag2 does), then seen
    assert text.count("MSG: p/B") == 1 and text.count("MSG: p/A") == 1


def test_real_tf_message_round_trips_through_the_mcap_decoder():
    """The installed TFMessage definition, as we write it, decodes rclpy's CDR bytes field for field."""
    pytest.importorskip("rclpy")
    tf2 = pytest.importorskip("tf2_msgs.msg", reason="ros_ws not built")
    from geometry_msgs.msg import TransformStamped
    from mcap.records import Schema
    from mcap_ros2.decoder import DecoderFactory
    from rclpy.serialization import serialize_message

    text = DefinitionSource().full_text("tf2_msgs/msg/TFMessage")
    for dep in ("geometry_msgs/TransformStamped", "std_msgs/Header", "builtin_interfaces/Time",
                "geometry_msgs/Transform", "geometry_msgs/Vector3", "geometry_msgs/Quaternion"):
        assert text.count(f"\nMSG: {dep}\n") == 1, dep
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = "odom", "base_link"
    t.header.stamp.sec, t.header.stamp.nanosec = 12, 345
    t.transform.translation.x, t.transform.rotation.z, t.transform.rotation.w = 1.5, 0.6, 0.8
    decode = DecoderFactory().decoder_for("cdr", Schema(id=1, name="tf2_msgs/msg/TFMessage", encoding="ros2msg", data=text.encode()))
    out = decode(serialize_message(tf2.TFMessage(transforms=[t, t])))
    assert len(out.transforms) == 2
    d = out.transforms[1]
    assert (d.header.frame_id, d.child_frame_id, d.header.stamp.sec, d.header.stamp.nanosec) == ("odom", "base_link", 12, 345)
    assert (d.transform.translation.x, d.transform.rotation.z, d.transform.rotation.w) == (1.5, 0.6, 0.8)


RECORDED_TYPES = ["tf2_msgs/msg/TFMessage", "std_msgs/msg/String", "std_msgs/msg/Bool", "nav_msgs/msg/Odometry",
                  "sensor_msgs/msg/LaserScan", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image",
                  "geometry_msgs/msg/Twist", "visualization_msgs/msg/MarkerArray",
                  "qwen_stack_interfaces/msg/SafetyVerdict", "qwen_stack_interfaces/msg/ToolCall",
                  "qwen_stack_interfaces/msg/ApprovalRequest", "qwen_stack_interfaces/msg/DetectedObjects"]


@pytest.mark.parametrize("type_name", RECORDED_TYPES)
def test_every_recorded_type_decodes_from_the_schema_we_write(type_name):
    """A default message of each type the stack records, serialized by rclpy, decodes with mcap_ros2 from our text."""
    pytest.importorskip("rclpy")
    pytest.importorskip("qwen_stack_interfaces", reason="ros_ws not built")
    import importlib

    from mcap.records import Schema
    from mcap_ros2.decoder import DecoderFactory
    from rclpy.serialization import serialize_message

    pkg, ns, name = type_name.split("/")
    msg = getattr(importlib.import_module(f"{pkg}.{ns}"), name)()
    text = DefinitionSource().full_text(type_name)
    decode = DecoderFactory().decoder_for("cdr", Schema(id=1, name=type_name, encoding="ros2msg", data=text.encode()))
    out = decode(serialize_message(msg))
    for field in msg.get_fields_and_field_types():
        assert hasattr(out, field), (type_name, field)
