"""Service calls for the planner over ROS: direct clients and the supervisor's CallTool proxy.

Each call returns a concurrent.futures.Future[ServiceOutcome] completed from the executor's
threads; the planner thread waits on it (with its timeout and cancel token).
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from typing import Any, Callable

from qwen_stack import topics
from qwen_stack.qwen_node.agent.planner import ServiceOutcome, supervisor_outcome
from qwen_stack.ros_messages import fill_message, message_to_dict, service_class


class RosToolTransport:
    def __init__(self, node, proxy_service: str, callback_group=None, source: str = "planner",
                 on_sent: Callable[[str], None] | None = None):
        from qwen_stack_interfaces.srv import CallTool

        self.node, self.source, self.group = node, source, callback_group
        self._call_tool_type = CallTool
        self.proxy = node.create_client(CallTool, proxy_service, callback_group=callback_group)
        from std_srvs.srv import Trigger

        self._trigger_type = Trigger
        self.cancel_client = node.create_client(Trigger, topics.SAFETY_CANCEL_CALLS, callback_group=callback_group)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.on_sent = on_sent

    def _client(self, service: str, interface: str):
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.node.create_client(service_class(interface), service,
                                                                 callback_group=self.group)
            return self._clients[service]

    # a service that was just discovered (or a client just created) gets this long to appear
    DISCOVERY_WAIT_S = 3.0

    def _bridge(self, client, request, convert) -> Future:
        out: Future = Future()
        if not client.service_is_ready() and not client.wait_for_service(timeout_sec=self.DISCOVERY_WAIT_S):
            out.set_result(ServiceOutcome("unavailable", reasons=[f"service {client.srv_name} is not available"]))
            return out
        rfut = client.call_async(request)

        def done(f):
            if out.cancelled():
                return
            try:
                out.set_result(convert(f.result()))
            except Exception as exc:  # noqa: BLE001 - reported as a failed call
                out.set_result(ServiceOutcome("failed", reasons=[f"{type(exc).__name__}: {exc}"]))

        rfut.add_done_callback(done)
        out.add_done_callback(lambda f: client.remove_pending_request(rfut) if f.cancelled() else None)
        return out

    def call_service(self, service: str, interface: str, request: dict[str, Any], timeout_s: float) -> Future:
        client = self._client(service, interface)
        req = fill_message(client.srv_type.Request(), request)

        def convert(resp) -> ServiceOutcome:
            d = message_to_dict(resp)
            ok = d.get("success", True)
            return ServiceOutcome("succeeded" if ok else "failed", d)

        fut = self._bridge(client, req, convert)
        if self.on_sent:
            self.on_sent(service)
        return fut

    def call_via_supervisor(self, service: str, request: dict[str, Any], timeout_s: float) -> Future:
        req = self._call_tool_type.Request()
        req.service, req.arguments_json, req.source, req.timeout_s = service, json.dumps(request), self.source, float(timeout_s)

        def convert(resp) -> ServiceOutcome:
            return supervisor_outcome(resp.accepted, resp.success, list(resp.reasons), resp.response_json)

        fut = self._bridge(self.proxy, req, convert)
        if self.on_sent:
            self.on_sent(service)
        return fut

    def cancel_supervisor_calls(self) -> bool:
        """Tell the supervisor's proxy that the task was cancelled: a call it is still vetting, or whose
        approval it is still waiting for, is refused (an approval given after the cancel does nothing).
        Fire and forget: returns False when the service is not there."""
        if not self.cancel_client.service_is_ready():
            return False
        self.cancel_client.call_async(self._trigger_type.Request())
        return True
