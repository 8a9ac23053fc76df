"""The safety supervisor's lifecycle node (rclpy shell around qwen_stack.safety.supervisor_core); started by
safety/node.py, which reports a missing ROS installation or interface package as a clear error."""
from __future__ import annotations

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist, Vector3
from nav_msgs.msg import Odometry
from qwen_stack_interfaces.msg import ApprovalRequest, SafetyVerdict
from qwen_stack_interfaces.srv import Approve, CallTool, ResetEStop
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Bool, Empty, String
from std_srvs.srv import Trigger

from qwen_stack import topics as T
from qwen_stack.paths import config_file
from qwen_stack.safety.action_policy import ActionVetter, load_policy
from qwen_stack.safety.audit import AuditLog
from qwen_stack.safety.config import NODE_NAME, ConfigError, config_from_params
from qwen_stack.safety.inputs import EStopEvent, TeleopLock
from qwen_stack.safety.ros_messages import odom_to_data, request_fields, scan_to_data, twist_to_command
from qwen_stack.safety.reporting import SupervisorReporter, zones_json
from qwen_stack.safety.supervisor_core import SafetyCore
from qwen_stack.safety.tool_proxy import ToolProxy


def _now(node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class SafetySupervisor(LifecycleNode):
    def __init__(self):
        super().__init__(NODE_NAME, automatically_declare_parameters_from_overrides=True)
        self.config_error: str | None = None
        # Executors and callback groups. The control path (every input, the control timer, e-stop and
        # reset services) lives on this node, in one mutually exclusive group, spun by a
        # SingleThreadedExecutor in the main thread: the core is touched by one thread only (no locks in
        # the hot path), and rclpy's MultiThreadedExecutor measured ~2x slower per hop (bench/).
        # The CallTool proxy blocks while it waits for an operator approval or for the real service, so
        # it lives on a second node (<name>_tool_proxy) spun by a MultiThreadedExecutor in its own thread:
        # the proxy service runs in a reentrant group and the clients it calls answer in another
        # reentrant group, so the downstream response (and Approve calls) are delivered while a proxy
        # callback waits - which avoids the nested-service deadlock - and a waiting tool call can never
        # delay a velocity command or an e-stop.
        self.control_group = MutuallyExclusiveCallbackGroup()
        self.proxy_group = ReentrantCallbackGroup()
        self.client_group = ReentrantCallbackGroup()
        self.proxy_node = None

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state):
        params = {name: p.value for name, p in self._parameters.items()}
        try:
            self.cfg = config_from_params(params)
            policy = load_policy(config_file(self.cfg.policy_file), request_fields)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.get_logger().fatal(self.config_error)
            return TransitionCallbackReturn.FAILURE
        self.core = SafetyCore(self.cfg, start_time=_now(self))
        self.audit = AuditLog(self.cfg.audit_log_path, fsync=self.cfg.audit_fsync,
                              max_bytes=int(self.cfg.audit_rotate_mb * 1e6),
                              retention_bytes=int(self.cfg.audit_retention_mb * 1e6))
        g = self.control_group
        self.cmd_pub = self.create_lifecycle_publisher(Twist, T.BASE_CMD_VEL, 10)
        self.verdict_pub = self.create_lifecycle_publisher(SafetyVerdict, T.SAFETY_VERDICT, 10)
        latched_qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.estop_pub = self.create_lifecycle_publisher(Bool, T.SAFETY_ESTOP_STATE, latched_qos)
        self.zones_pub = self.create_lifecycle_publisher(String, T.SAFETY_ZONES, latched_qos)
        self.diag_pub = self.create_lifecycle_publisher(DiagnosticArray, T.DIAGNOSTICS, 10)
        self.reporter = SupervisorReporter(self, self.audit, SafetyVerdict, Twist, DiagnosticArray,
                                           DiagnosticStatus, KeyValue, _now)
        guard = self._guarded
        for topic, source in ((T.AUTONOMY_CMD_VEL, "autonomy"), (T.TELEOP_CMD_VEL, "teleop")):
            self.create_subscription(Twist, topic, guard(topic, lambda m, s=source: self.on_twist(m, s)), 10,
                                     callback_group=g)
        self.create_subscription(Bool, T.TELEOP_LOCK, guard(T.TELEOP_LOCK, self.on_lock), 10, callback_group=g)
        self.create_subscription(LaserScan, T.SCAN, guard(T.SCAN, self.on_scan), qos_profile_sensor_data,
                                 callback_group=g)
        self.create_subscription(Odometry, T.ODOM, guard(T.ODOM, self.on_odom), qos_profile_sensor_data,
                                 callback_group=g)
        self.create_subscription(Bool, T.SAFETY_ESTOP_TOPIC, guard(T.SAFETY_ESTOP_TOPIC, self.on_estop_topic), 10,
                                 callback_group=g)
        # what the gripper holds (latched by the skills node): the load mask's only input
        self.create_subscription(String, T.GRIPPER_HELD, guard(T.GRIPPER_HELD, self.on_gripper), latched_qos,
                                 callback_group=g)
        self.create_subscription(Empty, T.OPERATOR_HEARTBEAT,
                                 guard(T.OPERATOR_HEARTBEAT, lambda _m: self.core.on_heartbeat(_now(self))), 10,
                                 callback_group=g)
        self.create_service(Trigger, T.SAFETY_TRIGGER_ESTOP, guard(T.SAFETY_TRIGGER_ESTOP, self.on_trigger_estop,
                                                                   self.trigger_failed), callback_group=g)
        self.create_service(ResetEStop, T.SAFETY_RESET_ESTOP, guard(T.SAFETY_RESET_ESTOP, self.on_reset,
                                                                    self.reset_failed), callback_group=g)
        # Own name and the supervisor's namespace, without the process-wide arguments: a launcher's
        # `-r __node:=...` would otherwise give both nodes of this process the same name.
        self.proxy_node = rclpy.create_node(f"{self.get_name()}_tool_proxy", namespace=self.get_namespace(),
                                            use_global_arguments=False)
        pn = self.proxy_node
        self.approval_pub = pn.create_publisher(ApprovalRequest, T.SAFETY_APPROVAL_REQUEST, 10)
        # the proxy thread only reads these two flags of the core (single attribute reads)
        self.proxy = ToolProxy(pn, ActionVetter(policy), self.cfg.approval_timeout, self.client_group,
                               lambda: self.core.estop.latched, self.publish_approval_request,
                               self.reporter.action,
                               operator_has_control=lambda: bool(self.core.lock and self.core.lock.held))
        pn.create_service(CallTool, T.SAFETY_CALL_TOOL, guard(T.SAFETY_CALL_TOOL, self.on_call_tool,
                                                              self.call_tool_failed),
                          callback_group=self.proxy_group)
        pn.create_service(Approve, T.SAFETY_APPROVE, guard(T.SAFETY_APPROVE, self.on_approve, self.approve_failed),
                          callback_group=self.proxy_group)
        pn.create_service(Trigger, T.SAFETY_CANCEL_CALLS, guard(T.SAFETY_CANCEL_CALLS, self.on_cancel_calls,
                                                                self.cancel_failed),
                          callback_group=self.proxy_group)
        self.get_logger().info(f"configured: policy {self.cfg.policy_file} ({len(policy.services)} services), "
                               f"audit log {self.cfg.audit_log_path or 'disabled'}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        ret = super().on_activate(state)
        self.timer = self.create_timer(self.cfg.control_period, self.control_tick, callback_group=self.control_group)
        self.diag_timer = self.create_timer(self.cfg.diagnostics_period, self.diagnostics_tick,
                                            callback_group=self.control_group)
        self.estop_pub.publish(Bool(data=False))
        self.zones_pub.publish(String(data=zones_json(self.cfg)))   # for viewers (console map): one source
        return ret

    def on_deactivate(self, state):
        self.destroy_timer(self.timer)
        self.destroy_timer(self.diag_timer)
        self.send_zero("supervisor deactivated")
        return super().on_deactivate(state)

    def send_zero(self, reason: str):
        """Zero on cmd_vel outside a control step (deactivation, a failed callback, the node stopping), after its
        STOP verdict and audit record, as every control step: each base command follows the verdict behind it."""
        try:
            self.reporter.stop(reason, latched=self.core.estop.latched)
        finally:
            self.cmd_pub.publish(Twist())      # leave the base stopped, whatever the reporting did

    # ---------------------------------------------------------------- never die on input
    def _guarded(self, what, callback, on_error=None):
        """`callback` that cannot raise into the executor (an exception there ends spin(): the proxy thread
        or the whole control loop). On an exception: log, audit, send zero, and answer a service through
        `on_error(args, reason)`."""
        def run(*args):
            try:
                return callback(*args)
            except Exception as exc:  # noqa: BLE001 - see docstring
                reason = f"{what}: {_error_text(exc)}"
                try:
                    self.get_logger().error(f"callback failed, base sent zero: {reason}")
                    self.audit.write("fault", what, _now(self), reason=reason)
                    if what not in (T.SAFETY_CALL_TOOL, T.SAFETY_APPROVE):   # the control path: stop
                        self.send_zero(f"callback failed: {reason}")
                except Exception:  # noqa: BLE001 - reporting must not raise either
                    pass
                return on_error(args, reason) if on_error is not None else None
        return run

    # the answer says what the latch now is, whatever step failed (it must never contradict what was done)
    def trigger_failed(self, args, reason):
        _request, response = args
        latched = self.core.estop.latched
        response.success = latched
        response.message = f"e-stop latched ({reason})" if latched else f"e-stop not latched: {reason}"
        return response

    def reset_failed(self, args, reason):
        _request, response = args
        response.ok = not self.core.estop.latched
        response.message = f"e-stop reset ({reason})" if response.ok else f"reset failed: {reason}"
        return response

    @staticmethod
    def call_tool_failed(args, reason):
        _request, response = args
        response.accepted, response.success = False, False
        response.verdict_level, response.reasons, response.response_json = 4, [reason], "{}"   # REJECT
        return response

    @staticmethod
    def cancel_failed(args, reason):
        _request, response = args
        response.success, response.message = False, f"not done: {reason}"
        return response

    @staticmethod
    def approve_failed(args, reason):
        _request, response = args
        response.ok, response.message = False, f"not recorded: {reason}"
        return response

    # ---------------------------------------------------------------- inputs (control group)
    def on_twist(self, msg, source):
        cmd = twist_to_command(msg, source, _now(self))
        self.audit.write("input", source, cmd.stamp, linear_x=cmd.linear_x, angular_z=cmd.angular_z,
                         other=[cmd.linear_y, cmd.linear_z, cmd.angular_x, cmd.angular_y])
        self.core.on_command(cmd)
        self.run_step()                        # act on a command at once (latency), not only on the timer

    def on_lock(self, msg):
        self.audit.write("input", "teleop_lock", _now(self), held=bool(msg.data))
        self.core.on_lock(TeleopLock(bool(msg.data), _now(self)))

    def on_scan(self, msg):
        scan = scan_to_data(msg, _now(self))
        self.core.on_scan(scan)
        if self.cfg.audit_log_sensors:
            self.audit.write("sensor", "scan", scan.stamp, beams=len(scan.ranges),
                             obstacle_points=len(self.core.scan_points), fault=self.core.scan_fault)

    def on_gripper(self, msg):
        self.core.on_gripper(msg.data)
        self.audit.write("input", "gripper", _now(self), held=msg.data)

    def on_odom(self, msg):
        odom = odom_to_data(msg, _now(self))
        self.core.on_odom(odom)
        if self.cfg.audit_log_sensors:
            self.audit.write("sensor", "odom", odom.stamp, x=odom.x, y=odom.y, theta=odom.theta,
                             linear_x=odom.linear_x, angular_z=odom.angular_z)

    def on_estop_topic(self, msg):
        if msg.data:                           # False never resets: reset needs the service and a reason
            self.latch("topic", "e-stop topic")

    def on_trigger_estop(self, request, response):
        self.latch("service", "trigger_estop service")
        response.success, response.message = True, "e-stop latched"
        return response

    def on_reset(self, request, response):
        ok, message = self.core.reset(request.reason, request.operator_name, _now(self))
        self.audit.write("estop_reset", request.operator_name or "unknown", _now(self), ok=ok,
                         reason=request.reason, message=message)
        (self.get_logger().warn if ok else self.get_logger().error)(f"e-stop reset: {message}")
        response.ok, response.message = ok, message
        if ok:
            self.estop_pub.publish(Bool(data=False))
        return response

    def latch(self, origin, reason):
        now = _now(self)
        changed = self.core.latch(EStopEvent(origin, reason, now))
        self.audit.write("estop_latch", origin, now, reason=reason, changed=changed)
        if changed:
            self.get_logger().error(f"E-STOP latched by {origin}: {reason}")
            self.estop_pub.publish(Bool(data=True))
        self.run_step()

    # ---------------------------------------------------------------- control
    def control_tick(self):
        self.run_step()

    def run_step(self):
        was_latched = self.core.estop.latched
        result = self.core.step(_now(self))
        # audit record, then the verdict, then the command: a recording (recorder/) shows every cmd_vel
        # message after the verdict that produced it
        self.reporter.step(result)
        self.cmd_pub.publish(Twist(linear=Vector3(x=result.output.linear_x),
                                   angular=Vector3(z=result.output.angular_z)))
        if result.estop_latched and not was_latched:   # latched by the heartbeat rule inside the core
            self.estop_pub.publish(Bool(data=True))

    def diagnostics_tick(self):
        self.reporter.diagnostics(self.core, self.count_publishers(T.BASE_CMD_VEL),
                                  self.get_publishers_info_by_topic(T.BASE_CMD_VEL))

    # ---------------------------------------------------------------- actions (proxy group)
    def on_call_tool(self, request, response):
        out = self.proxy.call(request.service, request.arguments_json, request.source, request.timeout_s)
        for key, value in out.items():
            setattr(response, key, value)
        return response

    def on_approve(self, request, response):
        response.ok, response.message = self.proxy.answer(request.request_id, request.approved,
                                                          request.operator_name)
        self.audit.write("approval", request.operator_name or "unknown", _now(self),
                         request_id=request.request_id, approved=request.approved, ok=response.ok)
        return response

    def on_cancel_calls(self, request, response):
        """A caller gave up (its task was cancelled): calls in progress are refused from now on."""
        self.proxy.cancel_pending("the caller cancelled its task")
        self.audit.write("cancel_calls", "caller", _now(self))
        response.success, response.message = True, "calls in progress refused from now on"
        return response

    def publish_approval_request(self, req, timeout):
        msg = ApprovalRequest(request_id=req.request_id, service=req.service, arguments_json=req.arguments_json,
                              timeout_s=float(timeout))
        msg.stamp = self.get_clock().now().to_msg()
        self.approval_pub.publish(msg)
        self.audit.write("approval_request", req.service, _now(self), request_id=req.request_id,
                         arguments_json=req.arguments_json)
