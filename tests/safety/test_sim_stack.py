"""The supervisor in the running simulator stack (sim_node + safety_supervisor + skills_node):
- ROS graph: the supervisor is the only publisher on cmd_vel;
- an in-policy drive_distance through the CallTool proxy moves the robot (ground truth);
- an out-of-policy one is rejected and the robot does not move;
- an e-stop mid-drive stops the robot, and the reset does not restart it."""
from __future__ import annotations

import importlib.util
import json
import math
import threading
import time

import pytest
import yaml

from qwen_stack.rosenv import apply_to_current_process

apply_to_current_process()
rclpy = pytest.importorskip("rclpy")
srv = pytest.importorskip("qwen_stack_interfaces.srv", reason="qwen_stack_interfaces not built (scripts/build_ros_ws.sh)")
if importlib.util.find_spec("qwen_stack.sim.node") is None or importlib.util.find_spec("mujoco") is None:
    pytest.skip("the simulator (qwen_stack.sim.node, mujoco) is not there", allow_module_level=True)

from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from qwen_stack import topics as T  # noqa: E402
from qwen_stack.paths import config_file  # noqa: E402
from tests.ros_processes import NodeGroup, SpinThread, call_service  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

OPEN_ARENA = {
    "name": "safety_open_arena",
    "arena": {"half_size": [3.0, 3.0], "wall_height": 0.3, "wall_thickness": 0.05},
    "min_clearance": 0.05,
    "robot_start": {"x": -1.5, "y": 0.0, "yaw": 0.0},
    "objects": [], "floor_areas": [],
    "lighting": {"ambient": 0.4, "diffuse": 0.6, "direction": [0.3, 0.2, -1.0]},
}


def _call(node, type_, name, request, timeout=30.0):
    return call_service(node.create_client(type_, name), request, timeout)


def test_supervisor_in_the_sim_stack(tmp_path, ros_env):
    scenario = tmp_path / "open.yaml"
    scenario.write_text(yaml.safe_dump(OPEN_ARENA))
    nodes = NodeGroup(tmp_path, ros_env)
    nodes.start("sim", "qwen_stack.sim.node", [config_file("sim.yaml")], [f"scenario:={scenario}"])
    nodes.start("safety", "qwen_stack.safety.node", [config_file("safety.yaml")],
                [f"audit_log_path:={tmp_path / 'audit.jsonl'}"])
    nodes.start("skills", "qwen_stack.sim.skills_node", [config_file("sim.yaml")])
    context = rclpy.Context()
    context.init()
    node = rclpy.create_node("safety_sim_stack_test", context=context)
    truth = {}
    node.create_subscription(Odometry, T.SIM_GROUND_TRUTH, lambda m: truth.update(last=m), 10)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    spinner = SpinThread(executor)
    spinner.start()

    def pos():
        p = truth["last"].pose.pose.position
        return p.x, p.y

    def call_tool(args, timeout_s=30.0):
        return _call(node, srv.CallTool, T.SAFETY_CALL_TOOL, srv.CallTool.Request(
            service=T.SKILL_DRIVE_DISTANCE, arguments_json=json.dumps(args), source="test", timeout_s=timeout_s),
            timeout=timeout_s + 10)

    try:
        end = time.monotonic() + 40
        while time.monotonic() < end and not ({"sim", "skills", "safety_supervisor"} <= set(node.get_node_names())
                                               and "last" in truth):
            time.sleep(0.1)
        time.sleep(2.0)                                  # the supervisor sees scan and odometry
        publishers = {i.node_name for i in node.get_publishers_info_by_topic("/" + T.BASE_CMD_VEL)}
        assert publishers == {"safety_supervisor"}

        x0, y0 = pos()
        resp = call_tool({"distance": 0.5, "speed": 0.3})
        assert resp.accepted and resp.success, (resp.reasons, resp.response_json)
        assert json.loads(resp.response_json)["travelled"] == pytest.approx(0.5, abs=0.05)
        time.sleep(0.5)
        x1, y1 = pos()
        assert math.hypot(x1 - x0, y1 - y0) == pytest.approx(0.5, abs=0.05)

        resp = call_tool({"distance": 5.0, "speed": 0.3})
        assert not resp.accepted and any("above policy maximum" in r for r in resp.reasons)
        time.sleep(0.5)
        assert math.hypot(pos()[0] - x1, pos()[1] - y1) < 0.01

        # e-stop mid-drive
        result = {}
        threading.Thread(target=lambda: result.update(r=call_tool({"distance": 2.0, "speed": 0.3}, 8.0)),
                         daemon=True).start()
        end = time.monotonic() + 10
        while time.monotonic() < end and math.hypot(pos()[0] - x1, pos()[1] - y1) < 0.2:
            time.sleep(0.02)
        assert math.hypot(pos()[0] - x1, pos()[1] - y1) >= 0.2, "the robot did not start the drive"
        assert _call(node, Trigger, T.SAFETY_TRIGGER_ESTOP, Trigger.Request()).success
        time.sleep(1.0)                                  # braking
        xs, ys = pos()
        time.sleep(1.0)
        assert math.hypot(pos()[0] - xs, pos()[1] - ys) < 0.01, "robot moved while the e-stop was latched"
        assert _call(node, srv.ResetEStop, T.SAFETY_RESET_ESTOP,
                     srv.ResetEStop.Request(reason="test", operator_name="tester")).ok
        time.sleep(1.5)                                  # the skill may still be asking for motion: no restart
        assert math.hypot(pos()[0] - xs, pos()[1] - ys) < 0.01, "motion resumed by itself after the reset"
    finally:
        nodes.stop()
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=5)
        print(nodes.logs(tail=2000))
