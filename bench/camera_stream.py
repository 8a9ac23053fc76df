"""Cross-process camera streaming: delivery ratio and latency, ours vs the default Fast DDS profile.

    .venv/bin/python -m qwen_stack.rosenv .venv/bin/python bench/camera_stream.py [--seconds 5]

camera_node (test pattern, which draws a frame counter into every frame) runs in its own
process; this process subscribes. Delivery = distinct frames received / frames published
between the first and last received (read from the counter, so discovery at start-up is
not counted as loss). Latency = receive time - header stamp (same host clock).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from qwen_stack import topics
from qwen_stack.camera.sources import decode_counter
from qwen_stack.rosenv import ros_environment

CASES = [  # (label, width, height, stream, qos)
    ("raw best-effort", 640, 480, "raw", "sensor_data"),
    ("raw reliable", 640, 480, "raw", "reliable"),
    ("compressed", 640, 480, "jpeg", "sensor_data"),
    ("raw best-effort", 1280, 720, "raw", "sensor_data"),
    ("raw reliable", 1280, 720, "raw", "reliable"),
    ("compressed", 1280, 720, "jpeg", "sensor_data"),
]


def run_case(width, height, stream, qos, seconds, fps, env, node):
    received: dict[int, float] = {}
    latencies: list[float] = []
    jpegs: list[tuple[bytes, float]] = []

    def on_raw(msg):
        now = time.time()
        frame = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        received.setdefault(decode_counter(frame), now)
        latencies.append(now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    def on_jpeg(msg):
        now = time.time()
        jpegs.append((bytes(msg.data), now))
        latencies.append(now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    profile = qos_profile_sensor_data if qos == "sensor_data" else QoSProfile(
        depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    sub = (node.create_subscription(Image, topics.CAMERA_IMAGE, on_raw, profile) if stream == "raw" else
           node.create_subscription(CompressedImage, topics.CAMERA_COMPRESSED, on_jpeg, profile))
    cmd = [sys.executable, "-m", "qwen_stack.camera.node", "--ros-args", "-p", f"width:={width}",
           "-p", f"height:={height}", "-p", f"fps:={fps}", "-p", f"qos:={qos}",
           "-p", f"publish_raw:={'true' if stream == 'raw' else 'false'}",
           "-p", f"publish_compressed:={'true' if stream == 'jpeg' else 'false'}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = time.time()
        while time.time() - start < 20 and not (received or jpegs):  # wait for discovery
            rclpy.spin_once(node, timeout_sec=0.05)
        first = time.time()
        while time.time() - first < seconds:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        node.destroy_subscription(sub)
    for data, now in jpegs:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        received.setdefault(decode_counter(frame), now)
    if len(received) < 2:
        return dict(received=len(received), expected=0, ratio=0.0, p50=float("nan"), p99=float("nan"))
    expected = max(received) - min(received) + 1
    lat = np.array(latencies[1:]) * 1000.0  # the first frame waits for discovery
    return dict(received=len(received), expected=expected, ratio=len(received) / expected,
                p50=float(np.percentile(lat, 50)), p99=float(np.percentile(lat, 99)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per case")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    ours = ros_environment(domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0))
    default = dict(ours)
    default.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # baseline: Fast DDS defaults (512 KB SHM segment)

    rclpy.init()
    node = rclpy.create_node("camera_stream_bench")
    rows = []
    for label, w, h, stream, qos in CASES:
        for profile_name, env in (("qwen_stack", ours), ("default", default)):
            if profile_name == "default" and not (stream == "raw" and qos == "sensor_data"):
                continue  # the baseline row is the case the profile exists for
            r = run_case(w, h, stream, qos, args.seconds, args.fps, env, node)
            rows.append((f"{label} {w}x{h}@{args.fps:g}", profile_name, r))
            print(f"  done: {rows[-1][0]} [{profile_name}]", file=sys.stderr, flush=True)
    node.destroy_node()
    rclpy.shutdown()

    print(f"\n{'stream':<34} {'DDS profile':<11} {'delivered':>13} {'ratio':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for name, profile_name, r in rows:
        print(f"{name:<34} {profile_name:<11} {r['received']:>6}/{r['expected']:<6} {r['ratio']:>7.1%} "
              f"{r['p50']:>8.2f} {r['p99']:>8.2f}")
    print("\nnote: the subscriber's DDS settings come from this process's environment (our profile).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
