"""The whole stack in the simulator for end-to-end tests and the demo check.

Processes: sim_node, skills_node, safety_supervisor (audit log in a temp folder), perception_node,
qwen_node (replay backend; objects by name from perception's memory, never the sim's truth). In this process: `MissionObserver`, a node that sends the RunTask goal, plays
the operator on the console (`OperatorDouble` behaviour: approves each approval request the
supervisor publishes — release needs one by the project's safety policy), and records what the
robot did (cmd_vel/autonomy, sim ground truth, sim objects, agent tool calls) with wall times.
"""
from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import rclpy
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from qwen_stack import topics
from qwen_stack.paths import config_file
from tests.ros_processes import NodeGroup, SpinThread, params_file


class SimStack(NodeGroup):
    def __init__(self, folder: Path, env: dict, seed: int, agent_overrides: dict | None = None,
                 real_time_factor: float = 3.0, scenario: str = "fetch_red_cube", camera_rate: float = 5.0,
                 sim_overrides: dict | None = None):
        super().__init__(folder, env)
        self.audit_path = folder / "audit.jsonl"
        sim = params_file(folder, "sim_over", {"seed": seed, "real_time_factor": real_time_factor,
                                               "camera_rate": camera_rate, "scenario": scenario,
                                               **(sim_overrides or {})})
        self.start("sim", "qwen_stack.sim.node", [config_file("sim.yaml"), sim])
        self.start("skills", "qwen_stack.sim.skills_node", [config_file("sim.yaml")])
        safety = params_file(folder, "safety_over", {"audit_log_path": str(self.audit_path)})
        self.start("safety", "qwen_stack.safety.node", [config_file("safety.yaml"), safety])
        self.start("perception", "qwen_stack.perception.node", [config_file("perception.yaml")])
        agent = params_file(folder, "agent_over", {"backend": "replay", "object_locator": "perception",
                                                     **(agent_overrides or {})})
        self.start("agent", "qwen_stack.qwen_node.node", [config_file("agent.yaml"), agent])

    def audit(self) -> list[dict]:
        return [json.loads(l) for l in self.audit_path.read_text().splitlines() if l.strip()]


class MissionObserver(Node):
    deny_approvals = False      # the operator double approves every request unless this is set

    def __init__(self):
        super().__init__("mission_observer")
        from qwen_stack_interfaces.action import RunTask
        from qwen_stack_interfaces.msg import ApprovalRequest, ToolCall
        from qwen_stack_interfaces.srv import Approve

        g = ReentrantCallbackGroup()
        self.RunTask, self.lock = RunTask, threading.Lock()
        self.motion: list[tuple[float, float, float]] = []     # (wall, linear, angular) on cmd_vel/autonomy
        self.truth: list[tuple[float, float, float, float]] = []  # (wall, sim stamp, x, y) true base position
        self.objects: dict = {}
        self.held_changes: list[tuple[float, str | None]] = []
        self.tool_calls: list[tuple[float, object]] = []
        self.approvals: list[str] = []
        self.status: list[dict] = []
        self.client = ActionClient(self, RunTask, topics.AGENT_RUN_TASK, callback_group=g,
                                   feedback_sub_qos_profile=QoSProfile(depth=200))
        self.approve = self.create_client(Approve, topics.SAFETY_APPROVE, callback_group=g)
        self.trigger = self.create_client(Trigger, topics.SAFETY_TRIGGER_ESTOP, callback_group=g)
        self.create_subscription(Twist, topics.AUTONOMY_CMD_VEL, self._on_motion, 50, callback_group=g)
        self.create_subscription(Odometry, topics.SIM_GROUND_TRUTH, self._on_truth, 50, callback_group=g)
        self.create_subscription(String, topics.SIM_OBJECTS, self._on_objects, 10, callback_group=g)
        self.create_subscription(ToolCall, topics.AGENT_TOOL_CALLS, lambda m: self.tool_calls.append((time.time(), m)),
                                 50, callback_group=g)
        self.create_subscription(ApprovalRequest, topics.SAFETY_APPROVAL_REQUEST, self._on_approval, 10,
                                 callback_group=g)
        self._Approve = Approve
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, topics.AGENT_STATUS, lambda m: self.status.append(json.loads(m.data)), latched,
                                 callback_group=g)

    def _on_motion(self, m):
        with self.lock:
            self.motion.append((time.time(), m.linear.x, m.angular.z))

    def _on_truth(self, m):
        t = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        p = m.pose.pose.position
        with self.lock:
            self.truth.append((time.time(), t, p.x, p.y))

    def speeds(self, since_sim_t: float = 0.0, window: float = 0.2) -> list[tuple[float, float]]:
        """(sim time, true speed) by finite differences over about `window` seconds of sim time."""
        with self.lock:
            pts = [(t, x, y) for _, t, x, y in self.truth if t >= since_sim_t - window]
        out, j = [], 0
        for t, x, y in pts:
            while pts[j][0] < t - window:   # earliest sample inside the window
                j += 1
            t0, x0, y0 = pts[j]
            if t - t0 >= window * 0.5 and t >= since_sim_t:
                out.append((t, math.hypot(x - x0, y - y0) / (t - t0)))
        return out

    def _on_objects(self, m):
        doc = json.loads(m.data)
        with self.lock:
            held = doc.get("held")
            if not self.held_changes or self.held_changes[-1][1] != held:
                self.held_changes.append((time.time(), held))
            self.objects = doc

    def _on_approval(self, m):
        """OperatorDouble: answers every request (the test's stand-in for a person at the console)."""
        self.approvals.append(m.service)
        req = self._Approve.Request(request_id=m.request_id, approved=not self.deny_approvals,
                                    operator_name="operator_double")
        self.approve.call_async(req)

    def reset_records(self):
        """Forgets what was seen (one observer, many missions: bench/brain_eval.py)."""
        with self.lock:
            self.motion.clear()
            self.truth.clear()
            self.objects = {}
            self.held_changes.clear()
        self.tool_calls.clear()
        self.approvals.clear()
        self.status.clear()

    def wait_ready(self, stack: "SimStack", timeout: float = 60.0) -> None:
        """Until the sim publishes, the skills and the proxy serve, and qwen_node's action server is up."""
        from qwen_stack_interfaces.srv import CallTool, DescribeState

        clients = [self.create_client(DescribeState, topics.SKILL_DESCRIBE_STATE),
                   self.create_client(CallTool, topics.SAFETY_CALL_TOOL)]
        end = time.time() + timeout
        while time.time() < end:
            stack.check_alive()
            with self.lock:
                seen = bool(self.objects) and bool(self.truth)
            if seen and all(c.service_is_ready() for c in clients) and self.client.server_is_ready():
                fut = clients[0].call_async(DescribeState.Request())   # the skills node has odometry
                t_end = time.time() + 5
                while not fut.done() and time.time() < t_end:
                    time.sleep(0.05)
                if fut.done() and fut.result().success:
                    return
            time.sleep(0.1)
        raise AssertionError("the stack did not come up")

    def run_task(self, instruction: str, timeout: float, on_feedback=None):
        if not self.client.wait_for_server(timeout_sec=60):
            raise AssertionError("qwen_node's RunTask server did not appear")
        feedback = []

        def fb(f):
            feedback.append(f.feedback)
            if on_feedback:
                on_feedback(f.feedback)

        fut = self.client.send_goal_async(self.RunTask.Goal(instruction=instruction), feedback_callback=fb)
        end = time.time() + 60
        while not fut.done() and time.time() < end:
            time.sleep(0.02)
        assert fut.done(), "qwen_node did not answer the goal request within 60 s"
        handle = fut.result()
        assert handle.accepted, "goal rejected"
        res = handle.get_result_async()
        end = time.time() + timeout
        while not res.done() and time.time() < end:
            time.sleep(0.05)
        assert res.done(), f"mission did not finish in {timeout} s; feedback: {[(f.kind, f.text[:80]) for f in feedback[-10:]]}"
        result = res.result().result
        end = time.time() + 5   # the last agent/tool_calls messages (a topic: they may trail the result)
        while time.time() < end and len([m for _, m in self.tool_calls if m.status != "requested"]) < result.steps:
            time.sleep(0.05)
        return result, feedback


def start_observer():
    """A MissionObserver spinning in its own threads: (node, executor). close_observer() undoes it."""
    rclpy.init()
    node = MissionObserver()
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    SpinThread(ex).start()
    return node, ex


def close_observer(node: MissionObserver, ex: MultiThreadedExecutor) -> None:
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def cube_on_square(objects: dict) -> tuple[bool, str]:
    cube = next((o for o in objects.get("objects", []) if o["name"] == "red_cube"), None)
    square = next((a for a in objects.get("areas", []) if a["name"] == "blue_square"), None)
    if cube is None or square is None:
        return False, "red_cube or blue_square missing from sim/objects"
    dx, dy = cube["x"] - square["x"], cube["y"] - square["y"]
    c, s = math.cos(square["yaw"]), math.sin(square["yaw"])
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    hx, hy = square["half_size"]
    inside = abs(lx) <= hx and abs(ly) <= hy and not cube["held"]
    return inside, f"cube at ({cube['x']:.2f}, {cube['y']:.2f}) held={cube['held']}; square at ({square['x']:.2f}, {square['y']:.2f}) half {hx}x{hy}"
