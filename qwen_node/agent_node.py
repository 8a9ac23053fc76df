"""The rclpy Node of qwen_node: wiring only; decisions live in agent/ (planner, parser, registry)."""
from __future__ import annotations

import json
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from qwen_stack import topics
from qwen_stack.qwen_node.agent.backends.factory import make_backend
from qwen_stack.qwen_node.agent.grounding import CameraMount
from qwen_stack.qwen_node.agent.planner import AgentEvent, CancelToken, Planner, PlannerConfig, ToolExecutor
from qwen_stack.qwen_node.agent.config import AgentSettings, config_path
from qwen_stack.node_parameters import settings_from_node
from qwen_stack.robot import load_robot
from qwen_stack.qwen_node.agent.tool_registry import RegistryError, ToolRegistry
from qwen_stack.images import decode_compressed, decode_raw
from qwen_stack.qwen_node.agent.feedback import DeltaCoalescer
from qwen_stack.qwen_node.agent.frame_window import FrameWindow
from qwen_stack.qwen_node.ros_transport import RosToolTransport
from qwen_stack.geometry import yaw_of
from qwen_stack.qwen_node.agent.world_view import SensorWorldView


# the supervisor's e-stop state and this node's status: the last message, kept for late joiners
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class AgentNode(Node):
    def __init__(self) -> None:
        super().__init__("qwen_node")
        from qwen_stack_interfaces.action import RunTask
        from qwen_stack_interfaces.msg import ToolCall
        from std_msgs.msg import String

        self._RunTask, self._ToolCall, self._String = RunTask, ToolCall, String
        self.s = s = settings_from_node(self, AgentSettings)
        self.robot = robot = load_robot(s.robot_file)   # camera and laser mounts
        try:
            self.registry = ToolRegistry.load(config_path(s.tools_file), safety_policy_path=config_path(s.safety_policy_file))
        except (RegistryError, OSError) as exc:
            raise ValueError(f"tools_file {s.tools_file!r}: {exc}") from exc
        self.backend = make_backend(s)

        self.sensors = ReentrantCallbackGroup()        # sensors, safety state, service responses
        self.task_group = MutuallyExclusiveCallbackGroup()  # one task at a time
        self.frames = FrameWindow(s.frame_window_s)
        self.world = SensorWorldView(CameraMount.of_robot(robot), tuple(robot.laser_xyz[:2]), s.object_locator)
        self.transport = RosToolTransport(self, self.registry.supervisor_proxy, self.sensors)
        self.executor_ = ToolExecutor(self.registry, self.transport, self.world, s.grounding_standoff_m,
                                      s.object_standoff_m, area_standoff_m=robot.pick_x,
                                      footprint_radius_m=robot.footprint_radius)
        self.cfg = PlannerConfig(s.max_steps, s.max_parse_retries, s.max_turns, s.fold_threshold_chars,
                                 s.fold_keep_chars, s.max_images_in_context)
        self.cancel: CancelToken | None = None
        self.estop_latched = self.teleop_locked = False
        self.task_text, self.steps, self.state = "", 0, "idle"
        self.timings: list[tuple[str, float]] = []   # (event, monotonic time) of the current task, for bench

        self._subscribe_inputs()
        self._advertise()
        self.create_timer(1.0, self._publish_status, callback_group=self.sensors)
        if not self.backend.is_model:
            self.get_logger().warn(f"backend {self.backend.name}: NOT a language model, it replays a fixed script")
        self.get_logger().info(f"qwen_node ready: backend={s.backend} camera={s.camera} tools={sorted(self.registry.tools)}")
        self._publish_status()

    def _subscribe_inputs(self) -> None:
        """Camera (as configured), CameraInfo, laser, odometry, joints, perception's objects, safety state."""
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, LaserScan
        from std_msgs.msg import Bool

        s = self.s
        sd, grp = qos_profile_sensor_data, self.sensors
        if s.camera == "raw":
            self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, sd, callback_group=grp)
        elif s.camera == "compressed":
            self.create_subscription(CompressedImage, topics.CAMERA_COMPRESSED, self._on_compressed, sd, callback_group=grp)
        if s.camera != "none":
            self.create_subscription(CameraInfo, topics.CAMERA_INFO,
                                     lambda m: self.world.set_intrinsics(list(m.k), m.width, m.height), sd, callback_group=grp)
        self.create_subscription(LaserScan, topics.SCAN, lambda m: self.world.set_laser(
            m.angle_min, m.angle_increment, list(m.ranges), m.range_min, m.range_max), sd, callback_group=grp)
        self.create_subscription(Odometry, topics.ODOM, lambda m: self.world.set_odom(*_pose2d(m)), sd, callback_group=grp)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_joints, sd, callback_group=grp)
        if s.object_locator == "perception":   # objects by name: perception's memory (never the sim's truth)
            from qwen_stack_interfaces.msg import DetectedObjects
            self.create_subscription(DetectedObjects, topics.PERCEPTION_OBJECTS, lambda m: self.world.set_objects(
                detected_objects_to_dicts(m), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 10,
                callback_group=grp)
        self.create_subscription(Bool, topics.SAFETY_ESTOP_STATE, self._on_estop, LATCHED, callback_group=grp)
        self.create_subscription(Bool, topics.TELEOP_LOCK, self._on_teleop, 10, callback_group=grp)

    def _advertise(self) -> None:
        """agent/thinking, agent/status (latched), agent/tool_calls and the RunTask action."""
        self.pub_thinking = self.create_publisher(self._String, topics.AGENT_THINKING, 50)
        self.pub_status = self.create_publisher(self._String, topics.AGENT_STATUS, LATCHED)
        self.pub_calls = self.create_publisher(self._ToolCall, topics.AGENT_TOOL_CALLS, 50)
        self.server = ActionServer(self, self._RunTask, topics.AGENT_RUN_TASK, self._execute, callback_group=self.task_group,
                                   goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                                   feedback_pub_qos_profile=QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))

    # --- sensors and safety state ---------------------------------------------------------
    def _on_image(self, m) -> None:
        self._add_frame(decode_raw(m.width, m.height, m.encoding, m.step, bytes(m.data)))

    def _on_compressed(self, m) -> None:
        self._add_frame(decode_compressed(bytes(m.data)))

    def _add_frame(self, frame) -> None:
        if isinstance(frame, str):
            self.get_logger().warn(frame, throttle_duration_sec=5.0)
            return
        self.frames.add(time.monotonic(), frame)

    def _on_joints(self, m) -> None:
        joint = self.robot.camera_pan_joint   # "": a fixed camera, pan stays 0
        if joint and joint in m.name:
            self.world.set_pan(m.position[list(m.name).index(joint)])

    def _on_estop(self, m) -> None:
        self.estop_latched = bool(m.data)
        if self.estop_latched and self.cancel is not None:
            self.cancel.cancel("e-stop latched")
        self._publish_status()

    def _on_teleop(self, m) -> None:
        self.teleop_locked = bool(m.data)
        if self.teleop_locked and self.cancel is not None:
            self.cancel.cancel("operator took over (teleop lock)")
        self._publish_status()

    # --- frames for the prompt ---------------------------------------------------------------
    def prompt_frames(self) -> list:
        if self.s.camera == "none":
            return []
        last = self.frames.latest_stamp()
        if last is None or time.monotonic() - last > self.s.frame_stale_s:
            return []
        frames = self.frames.clip(self.s.clip_frames, self.s.clip_fps, self.s.max_pixels)
        self.timings.append(("frames_ready", time.monotonic()))
        return frames

    # --- the task action -----------------------------------------------------------------------
    def _on_goal(self, goal) -> GoalResponse:
        if not goal.instruction.strip():  # every client: nothing to do is not a mission (the console refuses it too)
            self.get_logger().warn("task refused: empty instruction")
            return GoalResponse.REJECT
        return GoalResponse.REJECT if self.cancel is not None else GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle) -> CancelResponse:
        if self.cancel is not None:
            self.cancel.cancel("cancelled by the client")
            self.transport.cancel_supervisor_calls()   # a pending approval must not act after the cancel
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle):
        token = self.cancel = CancelToken()
        if self.estop_latched:
            token.cancel("e-stop latched")
        elif self.teleop_locked:
            token.cancel("operator has control (teleop lock)")
        instruction = goal_handle.request.instruction
        self.task_text, self.steps, self.state, self.timings = instruction, 0, "running", []
        task_id = bytes(goal_handle.goal_id.uuid).hex()[:12]
        self._publish_status()
        if hasattr(self.backend, "reset"):
            self.backend.reset()

        deltas = DeltaCoalescer(lambda kind, text: goal_handle.publish_feedback(self._feedback(kind, text)))

        def on_event(ev: AgentEvent) -> None:
            if ev.kind in ("thinking", "text"):
                self.pub_thinking.publish(self._String(data=ev.text))   # every delta; feedback gets them merged
                deltas.add(ev.kind, ev.text)
                return
            deltas.flush()
            fb = self._feedback(ev.kind, ev.text)
            if ev.tool_call is not None:
                self.steps = ev.tool_call.step + 1
                fb.tool_call = self._publish_tool_call(task_id, ev.tool_call)
            if ev.kind == "status":
                self.get_logger().info(ev.text)
            goal_handle.publish_feedback(fb)

        planner = Planner(self.backend, self.registry, self.executor_, self.s.effective_system_prompt, self.cfg,
                          frame_source=self.prompt_frames, on_event=on_event,
                          on_timing=lambda name: self.timings.append((name, time.monotonic())),
                          on_turn=lambda turn, stats: self.get_logger().info(stats.log_line(turn)))
        try:
            result = planner.run(instruction, token, goal_handle.request.max_steps)
            deltas.flush()
            # feedback and result travel separately; a client drops feedback that arrives after the
            # result, so give the last feedback a head start
            time.sleep(0.1)
        finally:
            self.cancel = None
        return self._finish(goal_handle, task_id, result)

    def _feedback(self, kind: str, text: str):
        fb = self._RunTask.Feedback()
        fb.kind, fb.text = kind, text
        return fb

    def _publish_tool_call(self, task_id: str, rec):
        """A planner's tool-call record -> qwen_stack_interfaces/ToolCall on agent/tool_calls (also returned)."""
        msg = self._ToolCall(task_id=task_id, step=rec.step, name=rec.name, arguments_json=json.dumps(rec.arguments),
                             actuating=rec.actuating, status=rec.status,
                             result_json=rec.result_json if rec.result else "")
        msg.stamp = self.get_clock().now().to_msg()
        self.pub_calls.publish(msg)
        return msg

    def _finish(self, goal_handle, task_id: str, result):
        """The goal's end state (canceled / succeeded / aborted), the status, the action result."""
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        self.state = "succeeded" if result.success else f"failed: {result.message}"
        self.get_logger().info(f"task {task_id} {'succeeded' if result.success else 'failed'}: {result.message}")
        self._publish_status()
        return self._RunTask.Result(success=result.success, message=result.message, steps=result.steps)

    def _publish_status(self) -> None:
        self.pub_status.publish(self._String(data=json.dumps({
            "state": self.state, "task": self.task_text, "steps": self.steps,
            "backend": self.backend.name, "is_model": self.backend.is_model,
            "note": "" if self.backend.is_model else "NOT a language model: replaying a fixed script",
            "camera": self.s.camera, "frames_in_window": len(self.frames),
            "last_prompt_images": getattr(self.backend, "last_prompt_images", None),
            "estop_latched": self.estop_latched, "teleop_locked": self.teleop_locked})))

    def shutdown(self) -> None:
        if self.cancel is not None:
            self.cancel.cancel("qwen_node shutting down")


def _pose2d(m) -> tuple[float, float, float]:
    p, q = m.pose.pose.position, m.pose.pose.orientation
    return p.x, p.y, yaw_of(q)


def detected_objects_to_dicts(m) -> list[dict]:
    """qwen_stack_interfaces/DetectedObjects -> the plain dicts SensorWorldView keeps."""
    return [{"name": o.name, "colour": o.colour, "shape": o.shape, "solid": bool(o.solid),
             "x": float(o.pose.position.x), "y": float(o.pose.position.y), "confidence": float(o.confidence),
             "last_seen": o.last_seen.sec + o.last_seen.nanosec * 1e-9, "in_view": bool(o.in_view)}
            for o in m.objects]
