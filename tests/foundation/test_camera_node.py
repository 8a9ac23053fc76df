"""camera_node over real ROS topics, across processes."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.camera.sources import decode_counter  # noqa: E402
from tests.ros_processes import ros_args, start_node, stop  # noqa: E402

pytestmark = pytest.mark.ros


def _start_camera(ros_env, *params):
    return start_node("qwen_stack.camera.node", ros_args(params=params), ros_env)


def test_camera_frames_cross_process(ros_env):
    proc = _start_camera(ros_env, "width:=320", "height:=240", "fps:=20.0", "encoding:=bgr8",
                         "frame_id:=cam_test")
    rclpy.init()
    node = rclpy.create_node("camera_test_listener")
    got = {"raw": [], "jpeg": [], "info": []}
    node.create_subscription(Image, topics.CAMERA_IMAGE, lambda m: got["raw"].append((m, time.time())),
                             qos_profile_sensor_data)
    node.create_subscription(CompressedImage, topics.CAMERA_COMPRESSED, lambda m: got["jpeg"].append(m),
                             qos_profile_sensor_data)
    node.create_subscription(CameraInfo, topics.CAMERA_INFO, lambda m: got["info"].append(m), qos_profile_sensor_data)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and min(len(v) for v in got.values()) < 10:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert min(len(v) for v in got.values()) >= 10, f"too few messages: { {k: len(v) for k, v in got.items()} }"
        counters = []
        for msg, received in got["raw"]:
            assert (msg.width, msg.height, msg.encoding, msg.step) == (320, 240, "bgr8", 960)
            assert len(msg.data) == 320 * 240 * 3 and msg.header.frame_id == "cam_test"
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            assert 0 <= received - stamp < 2.0, "stamp is the publish time (wall clock without sim time)"
            frame = np.frombuffer(msg.data, np.uint8).reshape(240, 320, 3)
            counters.append(decode_counter(frame))
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m, _ in got["raw"]]
        assert stamps == sorted(stamps) and counters == sorted(counters)
        jpeg = cv2.imdecode(np.frombuffer(bytes(got["jpeg"][0].data), np.uint8), cv2.IMREAD_COLOR)
        assert jpeg.shape == (240, 320, 3) and "jpeg" in got["jpeg"][0].format
        info = got["info"][-1]
        assert (info.width, info.height, info.header.frame_id) == (320, 240, "cam_test")
        assert info.k[2] == pytest.approx(159.5) and info.k[5] == pytest.approx(119.5)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        stop(proc)


def test_unopenable_source_exits_nonzero_with_message(ros_env):
    proc = _start_camera(ros_env, "source:=/no/such/video.mp4")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "/no/such/video.mp4" in out and "cannot open" in out


def test_folder_that_empties_is_reported_on_diagnostics(ros_env, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    proc = _start_camera(ros_env, f"source:={tmp_path}", "width:=32", "height:=24", "fps:=10.0",
                         "retry_period_s:=0.2")
    rclpy.init()
    node = rclpy.create_node("camera_diag_listener")
    diags, frames = [], []
    node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, lambda m: diags.extend(m.status), 10)
    node.create_subscription(Image, topics.CAMERA_IMAGE, lambda m: frames.append(m), qos_profile_sensor_data)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not frames:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert frames, "no frames from the folder"
        img.write_bytes(b"garbage now")  # the source stops delivering valid frames
        deadline = time.time() + 20
        while time.time() < deadline and not any(s.level == DiagnosticStatus.ERROR for s in diags):
            rclpy.spin_once(node, timeout_sec=0.1)
        errors = [s for s in diags if s.level == DiagnosticStatus.ERROR]
        assert errors and ("stopped" in errors[0].message or "no images" in errors[0].message)
        n = len(frames)
        end = time.time() + 1.0
        while time.time() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert len(frames) == n, "nothing is published while the source is down"
        assert proc.poll() is None, "the node keeps running and retrying"
    finally:
        node.destroy_node()
        rclpy.shutdown()
        stop(proc)
