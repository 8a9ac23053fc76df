"""go_to_pose through the real safety supervisor: sim_node + safety_supervisor + skills_node.

The skills node publishes on cmd_vel/autonomy; the supervisor is the only publisher of cmd_vel;
the robot still reaches a goal 2 m away within 5 cm (ground truth).
"""
from __future__ import annotations

import importlib.util
import json
import math
import time

import pytest
import yaml
from tests.ros_processes import SpinThread
from sim_ros_helpers import SIM_TEST_DOMAIN, call, private_env, start_node, stop
from sim_test_worlds import open_arena

rclpy = pytest.importorskip("rclpy")
srv = pytest.importorskip("qwen_stack_interfaces.srv", reason="qwen_stack_interfaces not built (scripts/build_ros_ws.sh)")
if importlib.util.find_spec("qwen_stack.safety.node") is None:
    pytest.skip("the safety supervisor (qwen_stack.safety.node) is not there", allow_module_level=True)

from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.paths import config_file  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_go_to_pose_2m_through_the_safety_supervisor(tmp_path, ros_env):
    ros_env = private_env(ros_env)
    scenario = tmp_path / "open.yaml"
    scenario.write_text(yaml.safe_dump(open_arena(robot=(0.0, 0.0, 0.0))))
    sim_params = ["--params-file", str(config_file("sim.yaml"))]
    procs = [
        start_node("qwen_stack.sim.node", sim_params + ["-p", f"scenario:={scenario}"], ros_env, tmp_path / "sim.log"),
        start_node("qwen_stack.safety.node",
                   ["--params-file", str(config_file("safety.yaml")),
                    "-p", f"audit_log_path:={tmp_path / 'audit.jsonl'}"], ros_env, tmp_path / "safety.log"),
        start_node("qwen_stack.sim.skills_node", sim_params, ros_env, tmp_path / "skills.log"),
    ]
    context = rclpy.Context()
    context.init(domain_id=SIM_TEST_DOMAIN)
    node = Node("sim_supervisor_test", context=context)
    truth = {}
    node.create_subscription(Odometry, topics.SIM_GROUND_TRUTH, lambda m: truth.update(last=m), 10)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    spinner = SpinThread(executor)
    spinner.start()
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not ({"sim", "skills", "safety_supervisor"} <= set(node.get_node_names())
                                               and "last" in truth):
            time.sleep(0.1)
        time.sleep(2.0)  # let the supervisor see scan and odometry
        resp = call(node, srv.GoToPose, topics.SKILL_GO_TO_POSE,
                    srv.GoToPose.Request(x=-1.2, y=1.6, use_theta=False, max_speed=0.4), timeout=90)
        assert resp.success, resp.message
        publishers = {i.node_name for i in node.get_publishers_info_by_topic("/" + topics.BASE_CMD_VEL)}
        assert publishers == {"safety_supervisor"}
        assert "skills" in {i.node_name for i in node.get_publishers_info_by_topic("/" + topics.AUTONOMY_CMD_VEL)}
        time.sleep(0.5)
        p = truth["last"].pose.pose.position  # the robot started at the world origin heading +x: odom = world
        assert math.hypot(p.x + 1.2, p.y - 1.6) < 0.05
        state = json.loads(call(node, srv.DescribeState, topics.SKILL_DESCRIBE_STATE,
                                srv.DescribeState.Request()).state_json)
        assert state["estop_latched"] is False
    finally:
        for p in procs:
            stop(p)
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=5)
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
