"""console_node as a process on a real ROS graph, against SupervisorDouble (tests/console/ros_doubles.py).

Checks the ROS side of every control: e-stop topic and latched state, reset service, take-over
with lock and deadman on cmd_vel/teleop, approvals, operator heartbeat, video and odometry.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("qwen_stack_interfaces", reason="qwen_stack_interfaces is not built (scripts/build_ros_ws.sh)")
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402

from qwen_stack import topics  # noqa: E402
from tests.console.console_process import console_node  # noqa: E402
from tests.console.ros_doubles import SupervisorDouble  # noqa: E402
from tests.ros_processes import SpinThread  # noqa: E402

pytestmark = pytest.mark.ros
TOKEN = "ros-test-controller-token-0123456789"
H = {"Authorization": f"Bearer {TOKEN}"}


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def graph(ros_env, tmp_path_factory):
    rclpy.init()
    supervisor = SupervisorDouble()
    helper = rclpy.create_node("console_test_helper")
    executor = SingleThreadedExecutor()
    executor.add_node(supervisor)
    executor.add_node(helper)
    thread = SpinThread(executor)
    thread.start()
    try:
        with console_node(ros_env, tmp_path_factory.mktemp("console"), TOKEN) as (url, log, _proc):
            client = httpx.Client(base_url=url, timeout=10)
            wait_for(lambda: client.get("/api/state").json()["estop_latched"] is False, 15,
                     "the console to see the supervisor double's latched state")
            yield url, client, supervisor, helper, log
            client.close()
    finally:
        executor.shutdown(timeout_sec=1)
        supervisor.destroy_node()
        helper.destroy_node()
        rclpy.try_shutdown()


@pytest.fixture(autouse=True)
def clean_start(graph):
    """Every test (and every rerun) starts released and with nobody in control, whatever a failed one left."""
    _, client, _, _, _ = graph
    if client.get("/api/state").json()["estop_latched"]:
        client.post("/api/estop/reset", json={"reason": "test set-up"}, headers=H)
    # a take-over nobody keeps alive ends after teleop_session_timeout_s (1.5 s)
    wait_for(lambda: not any(client.get("/api/state").json()[k] for k in ("estop_latched", "teleop_in_control")),
             10, "e-stop released and nobody in control")
    yield


def test_estop_latches_supervisor_and_state_comes_back(graph):
    url, client, sup, _, _ = graph
    r = client.post("/api/estop", headers=H)
    assert r.status_code == 200
    wait_for(lambda: sup.latched, what="supervisor latched")
    wait_for(lambda: client.get("/api/state").json()["estop_latched"] is True, what="console shows latched")
    assert client.post("/api/estop/reset", json={"reason": ""}, headers=H).status_code == 422
    r = client.post("/api/estop/reset", json={"reason": "test over"}, headers=H)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "e-stop reset"}
    assert sup.resets[-1] == ("test over", "operator")
    wait_for(lambda: client.get("/api/state").json()["estop_latched"] is False, what="console shows released")


def test_take_over_lock_commands_deadman_and_hand_back(graph):
    _, client, sup, _, _ = graph
    cid = client.post("/api/teleop/take_over", headers=H).json()["control_id"]
    wait_for(lambda: client.post("/api/teleop/heartbeat", json={"control_id": cid}, headers=H).status_code == 200
             and sup.lock_held, what="teleop lock held")
    t0 = time.monotonic()
    client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.3, "angular": 0.0}, headers=H)
    wait_for(lambda: any(t > t0 and lin == 0.3 for t, lin, _ in list(sup.teleop_received)), what="forward command")
    for _ in range(4):              # no command refresh: the deadman (0.3 s) turns it into zero, published at 20 Hz
        time.sleep(0.2)
        client.post("/api/teleop/heartbeat", json={"control_id": cid}, headers=H)   # the session stays alive
    recent = [(lin, ang) for t, lin, ang in list(sup.teleop_received) if t > t0 + 0.6]
    assert recent and all(c == (0.0, 0.0) for c in recent)
    assert sup.lock_held            # lock kept fresh while in control
    client.post("/api/teleop/hand_back", json={"control_id": cid}, headers=H)
    wait_for(lambda: not sup.lock_held, what="lock released")
    n = len(sup.teleop_received)
    time.sleep(0.3)
    assert len(sup.teleop_received) == n   # nothing published once handed back


def test_silent_holder_loses_control_zero_then_lock_released(graph):
    """Issue 16 item 9 over ROS: a take-over whose session sends no heartbeat ends after
    teleop_session_timeout_s (1.5 s in config/console.yaml): zero on cmd_vel/teleop, then teleop/lock False."""
    _, client, sup, _, _ = graph
    cid = client.post("/api/teleop/take_over", headers=H).json()["control_id"]
    wait_for(lambda: sup.lock_held, what="teleop lock held")
    client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.3, "angular": 0.0}, headers=H)
    n_lock = len(sup.lock_received)
    wait_for(lambda: False in sup.lock_received[n_lock:], 10, "the lock released after the session timeout")
    assert sup.teleop_received[-1][1:] == (0.0, 0.0)
    assert client.get("/api/state").json()["teleop_in_control"] is False
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.3, "angular": 0.0}, headers=H)
    assert r.status_code == 409
    n = len(sup.teleop_received)
    time.sleep(0.3)
    assert len(sup.teleop_received) == n   # nothing published once released


def test_approval_request_shown_and_denied(graph):
    _, client, sup, _, _ = graph
    sup.request_approval("req-42", "skills/grasp", json.dumps({"object_name": "cube"}), 20.0)
    pending = wait_for(lambda: client.get("/api/state").json()["approvals"], what="approval in console state")
    assert [(p["request_id"], p["service"], p["arguments"]) for p in pending] == [
        ("req-42", "skills/grasp", {"object_name": "cube"})]
    r = client.post("/api/approvals/req-42", json={"approved": False}, headers=H)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "denied"}
    assert sup.approvals == [("req-42", False, "operator")]
    assert client.get("/api/state").json()["approvals"] == []


def test_task_without_agent_is_503(graph):
    _, client, _, _, _ = graph
    r = client.post("/api/task", json={"instruction": "go"}, headers=H)
    assert r.status_code == 503
    assert r.json() == {"ok": False, "message": "the agent's action agent/run_task is not available"}


def test_heartbeat_video_and_odometry_over_websockets(graph):
    import websockets
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CompressedImage

    url, client, sup, helper, _ = graph
    pub_jpeg = helper.create_publisher(CompressedImage, topics.CAMERA_COMPRESSED, qos_profile_sensor_data)
    pub_odom = helper.create_publisher(Odometry, topics.ODOM, qos_profile_sensor_data)
    ws_url = url.replace("http://", "ws://")
    origin = url

    async def run():
        async with websockets.connect(ws_url + "/ws/events", origin=origin) as ev, \
                websockets.connect(ws_url + "/ws/video", origin=origin) as video:
            await ev.send(json.dumps({"type": "hello", "token": TOKEN}))
            await video.send(json.dumps({"type": "hello", "token": None}))
            assert json.loads(await ev.recv()) == {"type": "session", "role": "controller"}
            assert json.loads(await video.recv()) == {"type": "session", "role": "viewer"}
            before = sup.heartbeats
            for _ in range(3):
                await ev.send(json.dumps({"type": "heartbeat"}))
            frames = set()
            for i in range(40):
                msg = CompressedImage(format="jpeg")
                msg.data = bytes([0xFF, 0xD8, i, 0xFF, 0xD9])
                pub_jpeg.publish(msg)
                odom = Odometry()
                odom.pose.pose.position.x = 1.5
                odom.twist.twist.linear.x = 0.25
                pub_odom.publish(odom)
                try:
                    frames.add(await asyncio.wait_for(video.recv(), 0.1))
                except asyncio.TimeoutError:
                    pass
                if len(frames) >= 2:
                    break
            return before, frames

    before, frames = asyncio.run(run())
    assert len(frames) >= 2 and all(isinstance(f, bytes) and f[:2] == b"\xff\xd8" for f in frames)
    wait_for(lambda: sup.heartbeats >= before + 3, what="heartbeats")
    robot = wait_for(lambda: client.get("/api/state").json()["robot"], what="odometry")
    assert robot["x"] == 1.5 and robot["linear"] == 0.25


def test_perceptions_annotated_image_is_the_annotated_video_view(graph):
    """perception/image_annotated (rgb8, sensor_msgs/Image) reaches /ws/video?view=annotated as JPEG,
    colours kept (rgb8 is not bgr8); the camera view does not carry it."""
    import cv2
    import numpy as np
    import websockets
    from sensor_msgs.msg import Image

    url, _, _, helper, _ = graph
    pub = helper.create_publisher(Image, topics.PERCEPTION_IMAGE_ANNOTATED, qos_profile_sensor_data)
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (230, 40, 40)                       # a red box drawn on the left half: [H, W, 3] RGB
    msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
    msg.data = rgb.tobytes()
    ws_url = url.replace("http://", "ws://")

    async def run():
        async with websockets.connect(ws_url + "/ws/video?view=annotated", origin=url) as video:
            await video.send(json.dumps({"type": "hello", "token": None}))
            assert json.loads(await video.recv()) == {"type": "session", "role": "viewer"}
            for _ in range(50):
                pub.publish(msg)
                try:
                    return await asyncio.wait_for(video.recv(), 0.2)
                except asyncio.TimeoutError:
                    pass
            return None

    frame = asyncio.run(run())
    assert isinstance(frame, bytes) and frame[:2] == b"\xff\xd8"
    bgr = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)    # [48, 64, 3] BGR
    assert bgr.shape == (48, 64, 3)
    b, g, r = (int(v) for v in bgr[24, 8])
    assert r > 180 and g < 90 and b < 90                              # still red
    assert int(bgr[24, 56].max()) < 40                                # the right half still black


def test_real_server_refuses_foreign_origin_websocket(graph):
    import websockets

    url = graph[0]

    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatus) as exc:
            async with websockets.connect(url.replace("http://", "ws://") + "/ws/events", origin="http://evil.example"):
                pass
        return exc.value.response.status_code

    assert asyncio.run(run()) == 403


def test_node_refuses_to_bind_beyond_localhost_without_credentials(ros_env, tmp_path):
    env = {k: v for k, v in ros_env.items() if not k.startswith("QWEN_STACK_CONSOLE_")}
    pfile = tmp_path / "p.yaml"
    pfile.write_text(f"/**:\n  ros__parameters:\n    host: '0.0.0.0'\n    port: 0\n"
                     f"    token_file: '{tmp_path / 'token'}'\n")
    r = subprocess.run([sys.executable, "-m", "qwen_stack.console.node", "--ros-args", "--params-file", str(pfile)],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "refusing to bind to '0.0.0.0' (beyond localhost) without a control credential" in r.stderr + r.stdout
    assert not (tmp_path / "token").exists()


@pytest.mark.parametrize("value, why", [(-1.0, "must be a number"), (0.9, "above the robot's max_linear_vel")])
def test_node_rejects_bad_parameter_by_name(ros_env, tmp_path, value, why):
    pfile = tmp_path / "p.yaml"
    pfile.write_text(f"/**:\n  ros__parameters:\n    teleop_max_linear: {value}\n")
    r = subprocess.run([sys.executable, "-m", "qwen_stack.console.node", "--ros-args", "--params-file", str(pfile)],
                       env=ros_env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "'teleop_max_linear'" in r.stderr + r.stdout and why in r.stderr + r.stdout


def test_sigint_with_page_open_hands_back_control_and_exits(graph, ros_env, tmp_path):
    """Stopping the console while in control sends zero and releases the lock (pages still connected)."""
    import signal

    import websockets

    _, _, sup, _, _ = graph
    with console_node(ros_env, tmp_path, TOKEN) as (url, _log, proc):
        client = httpx.Client(base_url=url, timeout=10)
        cid = client.post("/api/teleop/take_over", headers=H).json()["control_id"]
        client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.2, "angular": 0.0}, headers=H)
        # a console just started may take a while to be discovered: its session is kept alive meanwhile
        wait_for(lambda: client.post("/api/teleop/heartbeat", json={"control_id": cid}, headers=H).status_code == 200
                 and sup.lock_held, 20, what="lock held")
        n_lock = len(sup.lock_received)

        async def hold_page_open_and_stop():
            async with websockets.connect(url.replace("http://", "ws://") + "/ws/events", origin=url) as ws:
                await ws.send(json.dumps({"type": "hello", "token": TOKEN}))
                await ws.recv()
                await ws.send(json.dumps({"type": "heartbeat", "control_id": cid}))   # the page holds control
                proc.send_signal(signal.SIGINT)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 10:
                    if proc.poll() is not None:
                        return proc.returncode
                    await asyncio.sleep(0.05)
                return None

        returncode = asyncio.run(hold_page_open_and_stop())
        client.close()
    assert returncode == 0
    assert False in sup.lock_received[n_lock:]
    assert sup.teleop_received[-1][1:] == (0.0, 0.0)


def test_map_from_latched_zones_odom_scan_and_objects(graph):
    """The map's inputs over ROS: the supervisor's latched safety/zones, odometry, a scan placed in odom, and
    perception's objects (the console never reads the safety config itself)."""
    import math

    from nav_msgs.msg import Odometry
    from qwen_stack_interfaces.msg import DetectedObject, DetectedObjects
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import LaserScan
    from std_msgs.msg import String

    _, client, _, helper, _ = graph
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    zones = {"robot_radius": 0.3, "laser": {"x": 0.0, "y": 0.0, "yaw": 0.0},
             "stop_zone": [[0.5, 0.3], [0.5, -0.3], [-0.4, -0.3], [-0.4, 0.3]],
             "slowdown_zone": [[1.0, 0.5], [1.0, -0.5], [-0.6, -0.5], [-0.6, 0.5]],
             "geofence": [[-4, -4], [4, -4], [4, 4], [-4, 4]], "keep_out": {"bin": [[1, 1], [2, 1], [2, 2]]}}
    helper.create_publisher(String, topics.SAFETY_ZONES, latched).publish(String(data=json.dumps(zones)))
    pub_odom = helper.create_publisher(Odometry, topics.ODOM, qos_profile_sensor_data)
    pub_scan = helper.create_publisher(LaserScan, topics.SCAN, qos_profile_sensor_data)
    pub_obj = helper.create_publisher(DetectedObjects, topics.PERCEPTION_OBJECTS, 10)
    odom = Odometry()
    odom.pose.pose.position.x, odom.pose.pose.position.y = 1.0, -1.0
    odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = math.sin(math.pi / 4), math.cos(math.pi / 4)
    odom.header.stamp.sec = 1000     # the scan is placed with the pose at its own stamp
    scan = LaserScan(angle_min=0.0, angle_increment=0.01, range_min=0.05, range_max=10.0, ranges=[2.0] * 3)
    scan.header.stamp.sec = 1000
    objects = DetectedObjects(objects=[DetectedObject(name="red_cube", colour="red", solid=True)])
    objects.objects[0].pose.position.x, objects.objects[0].pose.position.y = 2.5, 0.5

    def published_map():
        pub_odom.publish(odom)
        pub_scan.publish(scan)
        pub_obj.publish(objects)
        m = client.get("/api/state").json()["map"]
        return m if m["zones"] and m["robot"] and m["scan"] and m["objects"] else None
    m = wait_for(published_map, 10, "the map's inputs")
    assert m["zones"]["keep_out"] == [{"name": "bin", "polygon": [[1.0, 1.0], [2.0, 1.0], [2.0, 2.0]]}]
    assert m["robot"]["x"] == 1.0 and abs(m["robot"]["theta"] - math.pi / 2) < 1e-6
    x, y = m["scan"][0]        # first beam straight ahead (+y in odom), 2 m from the robot
    assert abs(x - 1.0) < 1e-3 and abs(y - 1.0) < 1e-3
    assert m["objects"][0]["name"] == "red_cube" and m["objects"][0]["x"] == 2.5
