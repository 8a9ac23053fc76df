"""The CallTool proxy: vet against the policy, ask the operator when the policy says so, then call the
real service. Runs in service-callback threads of the supervisor node (see node.py for the executor)."""
from __future__ import annotations

import json
import threading
import time

from qwen_stack.safety.action_policy import ActionVetter, ApprovalBook
from qwen_stack.safety.msg_conversion import fill_message, message_to_dict, service_class
from qwen_stack.safety.verdict import Verdict, VerdictLevel


class ToolProxy:
    def __init__(self, node, vetter: ActionVetter, approval_timeout: float, client_group, now, is_latched,
                 publish_approval_request, report) -> None:
        self.node, self.vetter, self.approval_timeout = node, vetter, approval_timeout
        self.client_group = client_group
        self.now, self.is_latched = now, is_latched          # callables
        self.publish_approval_request, self.report = publish_approval_request, report
        self.book = ApprovalBook()
        self._lock = threading.Lock()                          # vetter and book are shared by callback threads
        self._clients: dict = {}

    def answer(self, request_id: str, approved: bool, operator: str) -> tuple[bool, str]:
        with self._lock:
            return self.book.answer(request_id, approved, operator, self.now())

    def call(self, service: str, arguments_json: str, source: str, timeout_s: float) -> dict:
        """Returns the CallTool response fields as a dict."""
        with self._lock:
            av = self.vetter.vet(service, arguments_json, self.now(), self.is_latched())
        if not av.accepted:
            return self._refuse(service, source, arguments_json, av.verdict)
        if av.needs_approval:
            denied = self._wait_for_approval(service, arguments_json)
            if denied:
                return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (denied,)))
        cls = service_class(av.policy.type)
        if cls is None:   # refused at configure time; kept as a guard
            return self._refuse(service, source, arguments_json,
                                Verdict(VerdictLevel.REJECT, (f"service type {av.policy.type} not importable",)))
        with self._lock:
            if self.is_latched():
                return self._refuse(service, source, arguments_json,
                                    Verdict(VerdictLevel.ESTOP, ("e-stop latched: every action is refused",)))
            self.vetter.record_call(service, self.now())
            client = self._clients.get(service)
            if client is None:
                client = self.node.create_client(cls, service, callback_group=self.client_group)
                self._clients[service] = client
        self.report(service, source, arguments_json, Verdict(), accepted=True)
        timeout = timeout_s if timeout_s > 0 else 30.0
        if not client.wait_for_service(timeout_sec=min(timeout, 5.0)):
            return {"accepted": True, "success": False, "verdict_level": 0,
                    "reasons": [f"service {service} is not available"], "response_json": "{}"}
        request = fill_message(cls.Request(), av.arguments)
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            future.cancel()
            return {"accepted": True, "success": False, "verdict_level": 0,
                    "reasons": [f"service {service} did not answer within {timeout} s"], "response_json": "{}"}
        response = message_to_dict(future.result())
        success = bool(response.get("success", True))
        return {"accepted": True, "success": success, "verdict_level": 0, "reasons": [],
                "response_json": json.dumps(response)}

    def _wait_for_approval(self, service: str, arguments_json: str) -> str | None:
        """None when approved, else the reason for denial."""
        with self._lock:
            req = self.book.open(service, arguments_json, self.now(), self.approval_timeout)
        self.publish_approval_request(req, self.approval_timeout)
        try:
            while True:
                with self._lock:
                    outcome = self.book.outcome(req.request_id, self.now())
                if self.is_latched():
                    return "e-stop latched while waiting for approval"
                if outcome is True:
                    return None
                if outcome is False:
                    decided = self.book.pending[req.request_id].decision
                    return ("operator denied the request" if decided is False
                            else f"no operator approval within {self.approval_timeout} s (denied)")
                time.sleep(0.02)
        finally:
            with self._lock:
                self.book.close(req.request_id)

    def _refuse(self, service, source, arguments_json, verdict: Verdict) -> dict:
        self.report(service, source, arguments_json, verdict, accepted=False)
        return {"accepted": False, "success": False, "verdict_level": int(verdict.level),
                "reasons": list(verdict.reasons), "response_json": "{}"}
