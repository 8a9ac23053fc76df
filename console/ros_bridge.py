"""All of the console's ROS plumbing: one rclpy node spun in a background thread.

RosConsoleBridge converts messages into plain values for ConsoleState (pushed to the pages by
the EventHub) and JPEG frames for the FrameHubs (the camera; perception's annotated view), and implements ConsoleBackend's sends over the
supervisor's topics and services and the agent's RunTask action. Methods called from the web
thread only publish or start asynchronous calls; results come back to asyncio through futures.

Executor: one SingleThreadedExecutor thread runs every callback (all in the node's default
mutually exclusive group): the callbacks are short and the order of state updates is kept.
The qwen_stack_interfaces package is imported lazily: without it the console still shows video,
odometry, e-stop state and diagnostics, and answers 503 for what needs it.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time

import rclpy
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image, LaserScan
from std_msgs.msg import Bool, Empty, String
from std_srvs.srv import Trigger

from qwen_stack import topics
from qwen_stack.geometry import yaw_of
from qwen_stack.console.backend import ConsoleBackend, Outcome
from qwen_stack.console.config import ConsoleSettings
from qwen_stack.console.teleop import TeleopCommand

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMPRESSED_PREFERRED_S = 1.0   # raw frames are encoded here only when no JPEG came for this long


def _interfaces():
    try:
        import qwen_stack_interfaces.action as action
        import qwen_stack_interfaces.msg as msg
        import qwen_stack_interfaces.srv as srv
        return msg, srv, action
    except ImportError:
        return None


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class RosConsoleBridge(ConsoleBackend):
    def __init__(self, node: Node, settings: ConsoleSettings) -> None:
        super().__init__(settings)
        self.node = node
        self._iface = _interfaces()
        if self._iface is None:
            node.get_logger().warning("qwen_stack_interfaces is not importable (build ros_ws): approvals, "
                                      "verdicts, tool calls, e-stop reset and tasks are unavailable")
        self._last_odom_push = -math.inf
        self._last_frame_push = -math.inf
        self._last_jpeg_seen = -math.inf
        self._last_annotated_push = -math.inf
        self._goal_handle = None
        self._task_instruction = ""

        self.pub_estop = node.create_publisher(Bool, topics.SAFETY_ESTOP_TOPIC, 10)
        self.pub_teleop = node.create_publisher(Twist, topics.TELEOP_CMD_VEL, 10)
        self.pub_lock = node.create_publisher(Bool, topics.TELEOP_LOCK, 10)
        self.pub_heartbeat = node.create_publisher(Empty, topics.OPERATOR_HEARTBEAT, 10)
        self.cli_trigger = node.create_client(Trigger, topics.SAFETY_TRIGGER_ESTOP)

        node.create_subscription(Bool, topics.SAFETY_ESTOP_STATE, self._on_estop_state, LATCHED)
        node.create_subscription(Odometry, topics.ODOM, self._on_odom, qos_profile_sensor_data)
        node.create_subscription(CompressedImage, topics.CAMERA_COMPRESSED, self._on_jpeg, qos_profile_sensor_data)
        node.create_subscription(Image, topics.CAMERA_IMAGE, self._on_raw, qos_profile_sensor_data)
        # perception publishes its annotated view only while someone subscribes: the console always
        # does (at most perception's frame rate, 5 Hz, and video_max_fps)
        node.create_subscription(Image, topics.PERCEPTION_IMAGE_ANNOTATED, self._on_annotated,
                                 qos_profile_sensor_data)
        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, RELIABLE)
        node.create_subscription(String, topics.AGENT_THINKING, self._on_thinking, RELIABLE)
        node.create_subscription(String, topics.AGENT_STATUS, self._on_agent_status, LATCHED)  # the agent latches it
        # the map: zones from the supervisor (latched, its validated config), laser, perception's objects
        node.create_subscription(String, topics.SAFETY_ZONES, self._on_zones, LATCHED)
        node.create_subscription(LaserScan, topics.SCAN, self._on_scan, qos_profile_sensor_data)
        if self._iface is not None:
            msg, srv, action = self._iface
            node.create_subscription(msg.SafetyVerdict, topics.SAFETY_VERDICT, self._on_verdict, RELIABLE)
            node.create_subscription(msg.ApprovalRequest, topics.SAFETY_APPROVAL_REQUEST, self._on_approval, RELIABLE)
            node.create_subscription(msg.ToolCall, topics.AGENT_TOOL_CALLS, self._on_tool_call, RELIABLE)
            node.create_subscription(msg.DetectedObjects, topics.PERCEPTION_OBJECTS, self._on_objects, RELIABLE)
            self.cli_reset = node.create_client(srv.ResetEStop, topics.SAFETY_RESET_ESTOP)
            self.cli_approve = node.create_client(srv.Approve, topics.SAFETY_APPROVE)
            self.run_task = ActionClient(node, action.RunTask, topics.AGENT_RUN_TASK)
            from action_msgs.srv import CancelGoal
            self.cli_cancel_all = node.create_client(CancelGoal, f"{topics.AGENT_RUN_TASK}/_action/cancel_goal")

        node.create_timer(1.0 / settings.teleop_publish_hz, self.teleop_tick)
        node.create_timer(0.25, self.expire_approvals)
        node.create_timer(1.0 / settings.map_hz, lambda: self.hub.update(self.state.map_tick, time.monotonic()))
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, name="console-ros", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception as exc:  # context shut down while spinning
            if rclpy.ok():
                self.node.get_logger().error(f"console executor stopped: {exc}")

    def shutdown(self) -> None:
        self.close()
        self.executor.shutdown(timeout_sec=1.0)
        self._thread.join(timeout=2.0)

    # --- sends --------------------------------------------------------------------------------
    def _send_estop(self) -> None:
        self.pub_estop.publish(Bool(data=True))
        if self.cli_trigger.service_is_ready():   # the service too, in case the topic is remapped away
            self.cli_trigger.call_async(Trigger.Request())

    def _send_teleop(self, cmd: TeleopCommand) -> None:
        msg = Twist()
        msg.linear.x, msg.angular.z = float(cmd.linear), float(cmd.angular)
        self.pub_teleop.publish(msg)

    def _send_teleop_lock(self, held: bool) -> None:
        self.pub_lock.publish(Bool(data=held))

    def send_heartbeat(self) -> None:
        self.pub_heartbeat.publish(Empty())

    async def _call(self, client, request, what: str):
        """The service's response, or the Outcome to answer without one: `unavailable` when nothing was sent,
        `unknown` when the request went out and no answer came in time (the service may have acted)."""
        if not client.service_is_ready():
            return Outcome(False, f"{what}: service {client.srv_name} is not available; nothing was sent",
                           unavailable=True)
        future = client.call_async(request)
        try:
            return await self._await_rclpy(future)
        except asyncio.TimeoutError:
            return Outcome(False, f"{what} was sent but {client.srv_name} did not answer within "
                                  f"{self.settings.service_timeout_s:g} s: it may have been carried out "
                                  f"(the state shown comes from the robot side)", unknown=True)

    async def _await_rclpy(self, future):
        """Await an rclpy future from asyncio for at most service_timeout_s."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def settle(f) -> None:
            if done.done():
                return
            exc = f.exception()
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(f.result())
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(settle, f))
        return await asyncio.wait_for(done, self.settings.service_timeout_s)

    async def reset_estop(self, reason: str, operator: str) -> Outcome:
        if self._iface is None:
            return Outcome(False, "qwen_stack_interfaces is not built; nothing was sent", unavailable=True)
        resp = await self._call(self.cli_reset, self._iface[1].ResetEStop.Request(
            reason=reason, operator_name=operator), "e-stop reset")
        return resp if isinstance(resp, Outcome) else Outcome(resp.ok, resp.message)

    async def send_approval(self, request_id: str, approved: bool, operator: str) -> Outcome:
        if self._iface is None:
            return Outcome(False, "qwen_stack_interfaces is not built; nothing was sent", unavailable=True)
        resp = await self._call(self.cli_approve, self._iface[1].Approve.Request(
            request_id=request_id, approved=approved, operator_name=operator), "approval")
        return resp if isinstance(resp, Outcome) else Outcome(resp.ok, resp.message)

    async def start_task(self, instruction: str) -> Outcome:
        if self._iface is None:
            return Outcome(False, "qwen_stack_interfaces is not built; nothing was sent", unavailable=True)
        if not self.run_task.server_is_ready():
            return Outcome(False, f"the agent's action {topics.AGENT_RUN_TASK} is not available", unavailable=True)
        goal = self._iface[2].RunTask.Goal(instruction=instruction, max_steps=0)
        self.hub.update(self.state.on_task, instruction, "sending")   # before the agent can stream anything
        future = self.run_task.send_goal_async(goal)
        try:
            handle = await self._await_rclpy(future)
        except asyncio.TimeoutError:
            # The goal went out: the agent may still accept it. A late acceptance is adopted (cancel works).
            future.add_done_callback(lambda f: f.exception() is None and self._adopt_goal(f.result(), instruction))
            self.hub.update(self.state.on_task, instruction, "unanswered",
                            "the goal was sent; the agent has not answered yet")
            return Outcome(False, "the task was sent but the agent did not answer within "
                                  f"{self.settings.service_timeout_s:g} s: it may be running", unknown=True)
        if not self._adopt_goal(handle, instruction):
            return Outcome(False, "the agent rejected the task")
        return Outcome(True, "task accepted")

    def _adopt_goal(self, handle, instruction: str) -> bool:
        """Record the agent's answer to a goal; True when accepted (the result is then followed)."""
        if not handle.accepted:
            self.hub.update(self.state.on_task, instruction, "rejected", "the agent rejected the task")
            return False
        self._goal_handle, self._task_instruction = handle, instruction
        self.hub.update(self.state.on_task, instruction, "running")
        handle.get_result_async().add_done_callback(lambda f, h=handle: self._on_task_result(h, f.result()))
        return True

    def _on_task_result(self, handle, wrapped) -> None:
        from action_msgs.msg import GoalStatus

        state = {GoalStatus.STATUS_SUCCEEDED: "succeeded", GoalStatus.STATUS_CANCELED: "canceled",
                 GoalStatus.STATUS_ABORTED: "failed"}.get(wrapped.status, "failed")
        if state == "succeeded" and not wrapped.result.success:
            state = "failed"
        self.hub.update(self.state.on_task, self._task_instruction, state, wrapped.result.message)
        if self._goal_handle is handle:
            self._goal_handle = None

    async def cancel_task(self) -> Outcome:
        """Cancel the task the agent runs, whoever started it (the page shows it either way)."""
        running = self.hub.read(lambda s: isinstance(s.agent_status, dict) and s.agent_status.get("state") == "running")
        if running and self._iface is not None:
            # A cancel request with an empty goal id and stamp cancels every goal of the action; the agent runs
            # one at a time. Our own goal handle is not used here: it may be a finished goal whose result has
            # not come back yet, and cancelling that would leave the running task alone.
            from action_msgs.srv import CancelGoal

            resp = await self._call(self.cli_cancel_all, CancelGoal.Request(), "task cancel")
            if isinstance(resp, Outcome):
                return resp
            if resp.return_code == CancelGoal.Response.ERROR_NONE:
                return (Outcome(True, "cancel requested") if resp.goals_canceling
                        else Outcome(False, "the agent had no task left to cancel (it may just have ended)"))
            return Outcome(False, f"the agent did not accept the cancel (return code {resp.return_code})")
        handle = self._goal_handle
        if handle is not None:   # started from here, the agent's status not in yet
            handle.cancel_goal_async()
            return Outcome(True, "cancel requested")
        return Outcome(False, "no task is running")

    # --- receptions (executor thread) ---------------------------------------------------------
    def _on_estop_state(self, msg: Bool) -> None:
        self.hub.update(self.state.on_estop_latched, bool(msg.data))

    def _on_odom(self, msg: Odometry) -> None:
        p, t = msg.pose.pose, msg.twist.twist
        # every pose goes to the map's short history (a scan is placed with the pose at its time)
        self.hub.update(self.state.map.on_pose, p.position.x, p.position.y, yaw_of(p.orientation),
                        _stamp_s(msg.header.stamp))
        now = time.monotonic()
        if now - self._last_odom_push < 1.0 / self.settings.robot_state_hz:
            return
        self._last_odom_push = now
        self.hub.update(self.state.on_odometry, p.position.x, p.position.y, yaw_of(p.orientation),
                        t.linear.x, t.angular.z, _stamp_s(msg.header.stamp))

    def _frame_due(self) -> bool:
        now = time.monotonic()
        if now - self._last_frame_push < 1.0 / self.settings.video_max_fps:
            return False
        self._last_frame_push = now
        return True

    def _on_jpeg(self, msg: CompressedImage) -> None:
        if "jpeg" not in msg.format.lower() and "jpg" not in msg.format.lower():
            return
        self._last_jpeg_seen = time.monotonic()
        if self._frame_due():
            self.frames.publish(bytes(msg.data))

    def _on_raw(self, msg: Image) -> None:
        if time.monotonic() - self._last_jpeg_seen < COMPRESSED_PREFERRED_S or not self._frame_due():
            return
        jpeg = self._jpeg_of(msg)
        if jpeg is not None:
            self.frames.publish(jpeg)

    def _on_annotated(self, msg: Image) -> None:
        now = time.monotonic()
        if now - self._last_annotated_push < 1.0 / self.settings.video_max_fps:
            return
        jpeg = self._jpeg_of(msg)
        if jpeg is not None:
            self._last_annotated_push = now
            self.annotated.publish(jpeg)

    def _jpeg_of(self, msg: Image) -> bytes | None:
        """A raw image as JPEG (the encodings of images.decode_raw, padded rows too); None for one it cannot read."""
        from qwen_stack.images import decode_raw, encode_jpeg

        rgb = decode_raw(msg.width, msg.height, msg.encoding, msg.step, bytes(msg.data))   # [H, W, 3] or an error
        if isinstance(rgb, str):
            self.node.get_logger().warning(f"video frame dropped: {rgb}", throttle_duration_sec=10.0)
            return None
        return encode_jpeg(rgb, self.settings.raw_jpeg_quality)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.hub.update(self.state.on_diagnostics, [
            {"name": s.name, "level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
             "message": s.message, "hardware_id": s.hardware_id,
             "values": {kv.key: kv.value for kv in s.values[:50]}} for s in msg.status])

    def _on_zones(self, msg: String) -> None:
        self.hub.update(self.state.map.on_zones, msg.data)

    def _on_scan(self, msg: LaserScan) -> None:
        self.hub.update(self.state.map.on_scan, msg.angle_min, msg.angle_increment, msg.range_min, msg.range_max,
                        msg.ranges, _stamp_s(msg.header.stamp))

    def _on_objects(self, msg) -> None:
        self.hub.update(self.state.map.on_objects, [
            {"name": o.name, "x": o.pose.position.x, "y": o.pose.position.y, "in_view": o.in_view, "solid": o.solid,
             "colour": o.colour}
            for o in msg.objects[:100]])

    def _on_thinking(self, msg: String) -> None:
        self.hub.update(self.state.on_thinking, msg.data)

    def _on_agent_status(self, msg: String) -> None:
        self.hub.update(self.state.on_agent_status, msg.data)

    def _on_verdict(self, msg) -> None:
        self.hub.update(self.state.on_verdict, {
            "time": time.time(), "level": msg.level, "level_name": msg.level_name, "source": msg.source,
            "reasons": list(msg.reasons), "estop_latched": msg.estop_latched})

    def _on_approval(self, msg) -> None:
        self.hub.update(self.state.on_approval_request, {
            "request_id": msg.request_id, "service": msg.service, "arguments_json": msg.arguments_json,
            "timeout_s": msg.timeout_s}, time.time())

    def _on_tool_call(self, msg) -> None:
        self.hub.update(self.state.on_tool_call, {
            "task_id": msg.task_id, "step": msg.step, "name": msg.name, "arguments_json": msg.arguments_json,
            "actuating": msg.actuating, "status": msg.status, "result_json": msg.result_json})

