"""SupervisorDouble: a ROS test double of the safety supervisor's console-facing contract.

It is not the supervisor (safety/ is); it speaks the same names (qwen_stack/topics.py) so the
console's ROS bridge can be tested before and independently of the real one:
- latches on safety/estop (Bool True) or safety/trigger_estop, publishes safety/estop_latched
  (transient local) and a zero cmd_vel at once; ResetEStop needs a reason and sends no motion;
- forwards cmd_vel/teleop to cmd_vel while teleop/lock is held, cmd_vel/autonomy otherwise,
  zero while latched;
- publishes ApprovalRequest on demand and records Approve answers; counts operator heartbeats.
"""
from __future__ import annotations

import threading
import time

from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Empty
from std_srvs.srv import Trigger

from qwen_stack import topics

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class SupervisorDouble(Node):
    def __init__(self) -> None:
        super().__init__("supervisor_double")
        from qwen_stack_interfaces.msg import ApprovalRequest
        from qwen_stack_interfaces.srv import Approve, ResetEStop

        self._ApprovalRequest = ApprovalRequest
        self.lock = threading.Lock()
        self.latched = False
        self.lock_held = False
        self.heartbeats = 0
        self.teleop_received: list[tuple[float, float, float]] = []   # (time, linear, angular)
        self.lock_received: list[bool] = []
        self.approvals: list[tuple[str, bool, str]] = []
        self.resets: list[tuple[str, str]] = []
        self.pub_cmd = self.create_publisher(Twist, topics.BASE_CMD_VEL, 10)
        self.pub_latched = self.create_publisher(Bool, topics.SAFETY_ESTOP_STATE, LATCHED)
        self.pub_approval = self.create_publisher(ApprovalRequest, topics.SAFETY_APPROVAL_REQUEST, 10)
        self.create_subscription(Bool, topics.SAFETY_ESTOP_TOPIC, lambda m: m.data and self._latch(), 10)
        self.create_subscription(Twist, topics.TELEOP_CMD_VEL, self._on_teleop, 10)
        self.create_subscription(Twist, topics.AUTONOMY_CMD_VEL, self._on_autonomy, 10)
        self.create_subscription(Bool, topics.TELEOP_LOCK, self._on_lock, 10)
        self.create_subscription(Empty, topics.OPERATOR_HEARTBEAT, self._on_heartbeat, 10)
        self.create_service(Trigger, topics.SAFETY_TRIGGER_ESTOP, self._on_trigger)
        self.create_service(ResetEStop, topics.SAFETY_RESET_ESTOP, self._on_reset)
        self.create_service(Approve, topics.SAFETY_APPROVE, self._on_approve)
        self.pub_latched.publish(Bool(data=False))

    def _latch(self) -> None:
        with self.lock:
            first = not self.latched
            self.latched = True
        if first:
            self.pub_cmd.publish(Twist())
            self.pub_latched.publish(Bool(data=True))

    def _on_trigger(self, _req, resp):
        self._latch()
        resp.success, resp.message = True, "latched"
        return resp

    def _on_reset(self, req, resp):
        if not req.reason.strip():
            resp.ok, resp.message = False, "reset refused: a reason is needed"
            return resp
        with self.lock:
            self.resets.append((req.reason, req.operator_name))
            self.latched = False
        self.pub_latched.publish(Bool(data=False))
        resp.ok, resp.message = True, "e-stop reset"
        return resp

    def _forward(self, msg: Twist) -> None:
        self.pub_cmd.publish(Twist() if self.latched else msg)

    def _on_teleop(self, msg: Twist) -> None:
        with self.lock:
            self.teleop_received.append((time.monotonic(), msg.linear.x, msg.angular.z))
        if self.lock_held:
            self._forward(msg)

    def _on_autonomy(self, msg: Twist) -> None:
        if not self.lock_held:
            self._forward(msg)

    def _on_lock(self, msg: Bool) -> None:
        with self.lock:
            self.lock_held = bool(msg.data)
            self.lock_received.append(bool(msg.data))

    def _on_heartbeat(self, _msg) -> None:
        with self.lock:
            self.heartbeats += 1

    def _on_approve(self, req, resp):
        with self.lock:
            self.approvals.append((req.request_id, req.approved, req.operator_name))
        resp.ok, resp.message = True, "denied" if not req.approved else "approved"
        return resp

    def request_approval(self, request_id: str, service: str, arguments_json: str, timeout_s: float) -> None:
        msg = self._ApprovalRequest(request_id=request_id, service=service, arguments_json=arguments_json,
                                    timeout_s=timeout_s)
        msg.stamp = self.get_clock().now().to_msg()
        self.pub_approval.publish(msg)
