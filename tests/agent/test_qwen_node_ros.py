"""qwen_node over real ROS topics/services/actions, with the replay backend and service doubles.

The doubles (in this test process) stand in for the skills node and the safety supervisor's
CallTool proxy: they record requests and answer; they are not the robot.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("qwen_stack_interfaces", reason="ros_ws not built (scripts/build_ros_ws.sh)")
from rclpy.action import ActionClient  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import Bool, String  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.paths import config_file  # noqa: E402
from qwen_stack_interfaces.action import RunTask  # noqa: E402
from qwen_stack_interfaces.msg import ToolCall  # noqa: E402
from qwen_stack_interfaces.srv import CallTool, DescribeState  # noqa: E402
from tests.agent.tool_calls import call  # noqa: E402
from tests.ros_processes import SpinThread, ros_args, start_node, stop_all  # noqa: E402

pytestmark = pytest.mark.ros


class RobotServicesDouble:
    """describe_state + the supervisor's CallTool proxy, recording requests."""

    def __init__(self, node, call_tool_delay_s: float = 0.0):
        grp = ReentrantCallbackGroup()
        self.call_tool_requests: list[tuple[str, dict]] = []
        self.delay = call_tool_delay_s
        node.create_service(DescribeState, topics.SKILL_DESCRIBE_STATE, self._describe, callback_group=grp)
        node.create_service(CallTool, topics.SAFETY_CALL_TOOL, self._call_tool, callback_group=grp)

    def _describe(self, req, resp):
        resp.success, resp.state_json = True, json.dumps({"pose": {"x": 0.0, "y": 0.0, "theta": 0.0}})
        return resp

    def _call_tool(self, req, resp):
        self.call_tool_requests.append((req.service, json.loads(req.arguments_json)))
        t_end = time.monotonic() + self.delay
        while time.monotonic() < t_end:
            time.sleep(0.01)
        resp.accepted, resp.success, resp.response_json = True, True, json.dumps({"success": True, "message": "ok"})
        return resp


@pytest.fixture
def graph(ros_env, tmp_path):
    procs = []
    rclpy.init()
    node = rclpy.create_node("agent_test_client")
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    spin = SpinThread(ex)
    spin.start()

    def start(script_turns, *params):
        script = tmp_path / "script.jsonl"
        script.write_text("".join(json.dumps({"output": t}) + "\n" for t in script_turns))
        args = ros_args([config_file("agent.yaml")], ["backend:=replay", f"replay_script:={script}", "camera:=none", *params])
        proc = start_node("qwen_stack.qwen_node.node", args, ros_env)
        procs.append(proc)
        return proc

    yield node, start
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    stop_all(procs)


def _send(node, instruction, feedback):
    client = ActionClient(node, RunTask, topics.AGENT_RUN_TASK)
    assert client.wait_for_server(timeout_sec=30), "qwen_node's RunTask server did not appear"
    goal = RunTask.Goal(instruction=instruction, max_steps=0)
    fut = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback))
    deadline = time.time() + 20
    while not fut.done() and time.time() < deadline:
        time.sleep(0.02)
    handle = fut.result()
    assert handle.accepted
    return handle.get_result_async()


def _wait(fut, timeout):
    deadline = time.time() + timeout
    while not fut.done() and time.time() < deadline:
        time.sleep(0.02)
    assert fut.done(), "no result in time"
    return fut.result()


def test_task_runs_through_the_node_with_feedback_topics_and_the_proxy(graph):
    node, start = graph
    services = RobotServicesDouble(node)
    calls, statuses, thinking = [], [], []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(ToolCall, topics.AGENT_TOOL_CALLS, calls.append, 50)
    node.create_subscription(String, topics.AGENT_STATUS, lambda m: statuses.append(json.loads(m.data)), latched)
    node.create_subscription(String, topics.AGENT_THINKING, lambda m: thinking.append(m.data), 50)
    start(["<think>where am I?</think>" + call("describe_state"),
           call("drive_distance", distance="0.5", speed="0.2") + call("rotate", angle="1.0", speed="0.5"),
           "Done: drove and turned."])
    feedback = []
    res = _wait(_send(node, "drive half a metre then turn left", feedback), 30)
    assert res.result.success and res.result.message == "Done: drove and turned." and res.result.steps == 3
    assert services.call_tool_requests == [("skills/drive_distance", {"distance": 0.5, "speed": 0.2}),
                                           ("skills/rotate", {"angle": 1.0, "speed": 0.5})]
    kinds = [f.kind for f in feedback]
    assert kinds.count("tool_call") == 3 and kinds.count("tool_result") == 3 and "thinking" in kinds
    results = [f.tool_call for f in feedback if f.kind == "tool_result"]
    assert [r.name for r in results] == ["describe_state", "drive_distance", "rotate"]
    assert [r.actuating for r in results] == [False, True, True] and all(r.status == "succeeded" for r in results)
    assert json.loads(results[0].result_json)["response"]["state_json"]
    time.sleep(0.5)
    assert [c.name for c in calls if c.status != "requested"] == ["describe_state", "drive_distance", "rotate"]
    assert "where am I?" in "".join(thinking)
    assert statuses and statuses[-1]["is_model"] is False and "NOT a language model" in statuses[-1]["note"]


def test_estop_latch_cancels_the_task_at_once(graph):
    node, start = graph
    services = RobotServicesDouble(node, call_tool_delay_s=8.0)   # a long drive
    estop = node.create_publisher(Bool, topics.SAFETY_ESTOP_STATE, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    estop.publish(Bool(data=False))
    start([call("drive_distance", distance="2.0", speed="0.1"), "should not get here"])
    feedback = []
    fut = _send(node, "drive", feedback)
    deadline = time.time() + 20
    while not services.call_tool_requests and time.time() < deadline:
        time.sleep(0.02)
    assert services.call_tool_requests, "the drive never reached the proxy"
    t0 = time.monotonic()
    estop.publish(Bool(data=True))
    res = _wait(fut, 6.0)   # the drive double would hold the call for 8 s
    assert not res.result.success and res.result.message == "cancelled: e-stop latched"
    assert time.monotonic() - t0 < 6.0
    # and a new task is refused while the latch holds
    res2 = _wait(_send(node, "drive again", []), 20)
    assert not res2.result.success and "e-stop latched" in res2.result.message
    assert len(services.call_tool_requests) == 1


def test_bad_parameter_stops_the_node_with_a_message(graph):
    _, start = graph
    proc = start(["x"], "backend:=gpt5")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "'backend'" in out


def test_task_command_follows_a_task_to_its_result(graph, ros_env):
    node, start = graph
    RobotServicesDouble(node)
    start(["<think>look</think>" + call("describe_state"), "All done."])
    out = subprocess.run([sys.executable, "-m", "qwen_stack.qwen_node.task_cli", "check the state",
                          "--wait-node", "30", "--wait-server", "30", "--timeout", "60"], env=ros_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "-> describe_state {}" in out.stdout and "<- describe_state: succeeded" in out.stdout
    assert "SUCCESS after 1 tool calls: All done." in out.stdout
    assert "NOT a language model" in out.stdout   # the replay backend says so in the task's status


def test_task_command_without_qwen_node_exits_2(ros_env):
    out = subprocess.run([sys.executable, "-m", "qwen_stack.qwen_node.task_cli", "x", "--wait-server", "1"],
                         env=ros_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no qwen_node" in out.stderr


def test_node_refuses_an_empty_instruction_from_any_client(graph):
    node, start = graph
    start(["All done."])
    client = ActionClient(node, RunTask, topics.AGENT_RUN_TASK)
    assert client.wait_for_server(timeout_sec=30), "qwen_node's RunTask server did not appear"
    for instruction in ("", "  \n\t"):
        handle = _wait(client.send_goal_async(RunTask.Goal(instruction=instruction, max_steps=0)), 20)
        assert not handle.accepted, repr(instruction)
