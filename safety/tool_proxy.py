"""The CallTool proxy: vet against the policy, ask the operator when the policy says so, then call the
real service. Runs in service-callback threads of the supervisor node (see node.py for the executor).

The caller's deadline travels with the request: CallTool.timeout_s is the whole time the caller waits
(approval included). The proxy never waits for an approval past it, never forwards a call after it, and
waits for the target service only for what is left of it; so an approval that comes after the caller gave
up does nothing. `call` never raises: a failure before forwarding is a REJECT with its reason (audited), a
failure after it is a failed call with its reason.

A caller that gives up (its task cancelled) says so with `cancel_pending` (service safety/cancel_calls):
every call in progress at that moment is refused from then on (a pending approval is denied, nothing is
forwarded), so an approval that comes after the cancel does nothing. Calls that arrive later are vetted
as usual.

While the operator holds the teleop lock (control taken over on the console, which cancels the planner's
task), every call is refused and a pending approval is denied: the cancel reaches the proxy that way, as
the e-stop does.

Deadlines, approval expiry and the rate limit use the monotonic clock: a jump of the ROS clock (sim time
reset) must not make an approval last forever or end it at once.
"""
from __future__ import annotations

import json
import math
import threading
import time

from qwen_stack.safety.action_policy import ActionVetter, ApprovalBook
from qwen_stack.ros_messages import InterfaceUnavailable, fill_message, message_to_dict, service_class
from qwen_stack.safety.verdict import Verdict, VerdictLevel, bounded

# A denial's words, as the agent reads them in the tool result (the brain's training data draws them too).
OPERATOR_DENIED = "operator denied the request"


def approval_timed_out(seconds: float, callers: bool = False) -> str:
    """The reason of an approval that did not come in time: the proxy's own timeout, or the caller's
    shorter deadline."""
    if callers:
        return f"no operator approval within the caller's deadline ({seconds:.1f} s) (denied)"
    return f"no operator approval within {seconds} s (denied)"


DEFAULT_CALL_TIMEOUT_S = 30.0      # CallTool.timeout_s <= 0 means this
MAX_SERVICE_NAME_CHARS = 256       # longer names are refused (they also go into verdicts and the audit log)
_OPERATOR = "teleop lock held: the operator has control, autonomous actions are refused"


class ToolProxy:
    def __init__(self, node, vetter: ActionVetter, approval_timeout: float, client_group, is_latched,
                 publish_approval_request, report, clock=time.monotonic, operator_has_control=lambda: False) -> None:
        self.node, self.vetter, self.approval_timeout = node, vetter, approval_timeout
        self.client_group = client_group
        self.is_latched, self.clock = is_latched, clock     # callables
        self.operator_has_control = operator_has_control     # callable: teleop lock held
        self.publish_approval_request, self.report = publish_approval_request, report
        self.book = ApprovalBook()
        self._lock = threading.Lock()                          # vetter and book are shared by callback threads
        self._clients: dict = {}
        self._cancel_epoch = 0                                 # bumped by cancel_pending()
        self._cancel_reason = ""

    def cancel_pending(self, reason: str = "cancelled by the caller") -> None:
        """Refuse every call in progress now (pending approvals denied, nothing forwarded after this)."""
        with self._lock:
            self._cancel_epoch += 1
            self._cancel_reason = bounded(str(reason), 200)

    def _cancelled_since(self, epoch: int) -> str | None:
        with self._lock:
            return None if self._cancel_epoch == epoch else self._cancel_reason

    def answer(self, request_id: str, approved: bool, operator: str) -> tuple[bool, str]:
        with self._lock:
            return self.book.answer(request_id, approved, operator, self.clock())

    def call(self, service: str, arguments_json: str, source: str, timeout_s: float) -> dict:
        """Returns the CallTool response fields as a dict. Never raises."""
        forwarded = threading.Event()
        try:
            return self._call(service, arguments_json, source, timeout_s, forwarded)
        except Exception as exc:  # noqa: BLE001 - any failure is an answer with its reason, never a dead thread
            reason = f"internal error: {type(exc).__name__}: {bounded(str(exc), 200)}"
            if forwarded.is_set():
                return {"accepted": True, "success": False, "verdict_level": 0, "reasons": [reason],
                        "response_json": "{}"}
            return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (reason,)))

    def _call(self, service, arguments_json, source, timeout_s, forwarded: threading.Event) -> dict:
        start = self.clock()
        with self._lock:
            epoch = self._cancel_epoch
        if not isinstance(service, str) or len(service) > MAX_SERVICE_NAME_CHARS:
            return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (
                f"service name longer than {MAX_SERVICE_NAME_CHARS} characters",)))
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s):
            return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (
                f"timeout_s must be a finite number of seconds, got {bounded(repr(timeout_s), 40)}",)))
        budget = float(timeout_s) if timeout_s > 0 else DEFAULT_CALL_TIMEOUT_S
        deadline = start + budget
        if self.operator_has_control() and not self.is_latched():
            return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (_OPERATOR,)))
        with self._lock:
            av = self.vetter.vet(service, arguments_json, start, self.is_latched())
        if not av.accepted:
            return self._refuse(service, source, arguments_json, av.verdict)
        if av.needs_approval:
            denied = self._wait_for_approval(service, arguments_json, deadline, budget, epoch)
            if denied:
                return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (denied,)))
        try:
            cls = service_class(av.policy.type)
        except InterfaceUnavailable as exc:   # refused at configure time; kept as a guard
            return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (str(exc),)))
        try:
            request = fill_message(cls.Request(), av.arguments)
        except (AssertionError, TypeError, ValueError, OverflowError) as exc:   # rosidl setters assert ranges
            return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (
                f"arguments do not fit {av.policy.type}: {bounded(str(exc), 160)}",)))
        with self._lock:
            if self.is_latched():
                return self._refuse(service, source, arguments_json,
                                    Verdict(VerdictLevel.ESTOP, ("e-stop latched: every action is refused",)))
            if self.operator_has_control():
                return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (_OPERATOR,)))
            if self._cancel_epoch != epoch:
                return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (
                    f"call cancelled: {self._cancel_reason}",)))
            if self.clock() >= deadline:
                return self._refuse(service, source, arguments_json, Verdict(VerdictLevel.REJECT, (
                    f"the caller's deadline ({budget:.1f} s) passed before the call could be forwarded",)))
            client = self._clients.get(service)
            if client is None:
                client = self.node.create_client(cls, service, callback_group=self.client_group)
                self._clients[service] = client
        self.report(service, source, arguments_json, Verdict(), accepted=True)
        if not client.wait_for_service(timeout_sec=max(0.0, min(deadline - self.clock(), 5.0))):
            return {"accepted": True, "success": False, "verdict_level": 0,
                    "reasons": [f"service {service} is not available"], "response_json": "{}"}
        remaining = deadline - self.clock()
        if remaining <= 0.0:
            return {"accepted": True, "success": False, "verdict_level": 0,
                    "reasons": [f"the caller's deadline ({budget:.1f} s) passed; {service} not called"],
                    "response_json": "{}"}
        done = threading.Event()
        forwarded.set()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(remaining):
            future.cancel()
            return {"accepted": True, "success": False, "verdict_level": 0,
                    "reasons": [f"service {service} did not answer within the caller's {budget:.1f} s"],
                    "response_json": "{}"}
        response = message_to_dict(future.result())
        success = bool(response.get("success", True))
        return {"accepted": True, "success": success, "verdict_level": 0, "reasons": [],
                "response_json": json.dumps(response)}

    def _wait_for_approval(self, service: str, arguments_json: str, deadline: float, budget: float,
                           epoch: int) -> str | None:
        """None when approved, else the reason for denial. Waits at most approval_timeout and never past the
        caller's deadline; the request offered to the operator carries that shorter time."""
        wait = max(0.0, min(self.approval_timeout, deadline - self.clock()))
        with self._lock:
            req = self.book.open(service, arguments_json, self.clock(), wait)
        self.publish_approval_request(req, wait)
        try:
            while True:
                with self._lock:
                    outcome = self.book.outcome(req.request_id, self.clock())
                if self.is_latched():
                    return "e-stop latched while waiting for approval"
                if self.operator_has_control():
                    return f"{_OPERATOR} (while waiting for approval)"
                cancelled = self._cancelled_since(epoch)
                if cancelled is not None:
                    return f"call cancelled while waiting for approval: {cancelled}"
                if outcome is True:
                    return None
                if outcome is False:
                    decided = self.book.pending[req.request_id].decision
                    if decided is False:
                        return OPERATOR_DENIED
                    if wait < self.approval_timeout:
                        return approval_timed_out(budget, callers=True)
                    return approval_timed_out(self.approval_timeout)
                time.sleep(0.02)
        finally:
            with self._lock:
                self.book.close(req.request_id)

    def _refuse(self, service, source, arguments_json, verdict: Verdict) -> dict:
        self.report(bounded(str(service), MAX_SERVICE_NAME_CHARS), bounded(str(source), 120), arguments_json,
                    verdict, accepted=False)
        return {"accepted": False, "success": False, "verdict_level": int(verdict.level),
                "reasons": list(verdict.reasons), "response_json": "{}"}
