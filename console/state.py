"""What the page shows, as plain data: updates in, events out. No ROS, no web framework.

Every `on_*` method takes a plain value (the ROS bridge converts messages), updates the state
and returns the event to push to the pages (a JSON-able dict with a "type"), or None when
nothing visible changed. `snapshot()` is what a page gets when it connects.
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass

VERDICT_LEVELS = ("ALLOW", "LIMIT", "SLOWDOWN", "STOP", "REJECT", "ESTOP")
DIAGNOSTIC_LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def parse_json_field(text: str) -> object:
    """A JSON field of a message for display: the parsed value, or the raw text if it is not JSON."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class PendingApproval:
    request_id: str
    service: str
    arguments: object
    timeout_s: float
    deadline: float   # wall-clock seconds (time.time()); past it, the supervisor denies by default

    def as_dict(self) -> dict:
        return {"request_id": self.request_id, "service": self.service, "arguments": self.arguments,
                "timeout_s": self.timeout_s, "deadline": self.deadline}


class ConsoleState:
    def __init__(self, recent_verdicts: int = 50, recent_tool_calls: int = 100, thinking_max_chars: int = 20000) -> None:
        self.estop_latched: bool | None = None      # None until the supervisor has said
        self.robot: dict | None = None
        self.agent_status: object = None
        self.task: dict | None = None
        self.thinking = ""
        self.thinking_max_chars = thinking_max_chars
        self.tool_calls: deque[dict] = deque(maxlen=recent_tool_calls)
        self.verdicts: deque[dict] = deque(maxlen=recent_verdicts)
        self.approvals: dict[str, PendingApproval] = {}
        self.diagnostics: dict[str, dict] = {}
        self.teleop_in_control = False
        self.ros_available: dict[str, bool] = {}

    # --- supervisor -------------------------------------------------------------------------
    def on_estop_latched(self, latched: bool) -> dict | None:
        if latched == self.estop_latched:
            return None
        self.estop_latched = bool(latched)
        return {"type": "estop", "latched": self.estop_latched}

    def on_verdict(self, verdict: dict) -> dict | None:
        """Verdicts come at the command rate: a repeat of the last one (same source, level, reasons) is not news."""
        level = int(verdict["level"])
        entry = {
            "time": float(verdict["time"]),
            "level": level,
            "level_name": verdict.get("level_name") or (VERDICT_LEVELS[level] if level < len(VERDICT_LEVELS) else str(level)),
            "source": verdict.get("source", ""),
            "reasons": list(verdict.get("reasons", [])),
            "estop_latched": bool(verdict.get("estop_latched", False)),
        }
        if self.verdicts:
            last = self.verdicts[-1]
            if all(last[k] == entry[k] for k in ("level", "source", "reasons", "estop_latched")):
                return None
        self.verdicts.append(entry)
        return {"type": "verdict", "verdict": entry}

    def on_approval_request(self, request: dict, now: float) -> dict | None:
        timeout = float(request.get("timeout_s", 0.0))
        if not math.isfinite(timeout) or timeout < 0:
            timeout = 0.0
        pending = PendingApproval(str(request["request_id"]), str(request.get("service", "")),
                                  parse_json_field(request.get("arguments_json", "")), timeout, now + timeout)
        self.approvals[pending.request_id] = pending
        return {"type": "approval_request", "request": pending.as_dict()}

    def on_approval_resolved(self, request_id: str, outcome: str) -> dict | None:
        """outcome: "approved", "denied" or "expired"."""
        if self.approvals.pop(request_id, None) is None:
            return None
        return {"type": "approval_resolved", "request_id": request_id, "outcome": outcome}

    def expire_approvals(self, now: float) -> list[dict]:
        events = []
        for rid in [rid for rid, p in self.approvals.items() if now >= p.deadline]:
            events.append(self.on_approval_resolved(rid, "expired"))
        return [e for e in events if e is not None]

    # --- robot ------------------------------------------------------------------------------
    def on_odometry(self, x: float, y: float, theta: float, linear: float, angular: float, time: float) -> dict:
        self.robot = {"x": x, "y": y, "theta": theta, "linear": linear, "angular": angular, "time": time}
        return {"type": "robot", "robot": self.robot}

    def on_diagnostics(self, statuses: list[dict]) -> dict | None:
        changed = False
        for s in statuses:
            entry = {"name": s["name"], "level": int(s["level"]),
                     "level_name": DIAGNOSTIC_LEVELS.get(int(s["level"]), str(s["level"])),
                     "message": s.get("message", ""), "hardware_id": s.get("hardware_id", "")}
            if self.diagnostics.get(entry["name"]) != entry:
                self.diagnostics[entry["name"]] = entry
                changed = True
        if not changed:
            return None
        return {"type": "diagnostics", "statuses": self.diagnostics_list()}

    def diagnostics_list(self) -> list[dict]:
        return [self.diagnostics[k] for k in sorted(self.diagnostics)]

    # --- agent ------------------------------------------------------------------------------
    def on_thinking(self, text: str) -> dict | None:
        if not text:
            return None
        self.thinking = (self.thinking + text)[-self.thinking_max_chars:]
        return {"type": "thinking", "text": text}

    def on_agent_status(self, text: str) -> dict | None:
        status = parse_json_field(text)
        if status == self.agent_status:
            return None
        self.agent_status = status
        return {"type": "agent_status", "status": status}

    def on_task(self, instruction: str, state: str, message: str = "") -> dict:
        """A task started from this console: "sending" (clears the thinking shown: the new task's streams
        in from now on), then "running" or "rejected", then "succeeded", "failed" or "canceled"."""
        if state == "sending":
            self.thinking = ""
        self.task = {"instruction": instruction, "state": state, "message": message}
        return {"type": "task", "task": self.task, "clear_thinking": state == "sending"}

    def on_tool_call(self, call: dict) -> dict:
        entry = {
            "task_id": call.get("task_id", ""),
            "step": int(call.get("step", 0)),
            "name": call.get("name", ""),
            "arguments": parse_json_field(call.get("arguments_json", "")),
            "actuating": bool(call.get("actuating", False)),
            "status": call.get("status", ""),
            "result": parse_json_field(call.get("result_json", "")),
        }
        for i, old in enumerate(self.tool_calls):   # a later status of the same call replaces it
            if old["task_id"] == entry["task_id"] and old["step"] == entry["step"]:
                self.tool_calls[i] = entry
                break
        else:
            self.tool_calls.append(entry)
        return {"type": "tool_call", "call": entry}

    # --- console ----------------------------------------------------------------------------
    def on_teleop(self, in_control: bool) -> dict | None:
        if in_control == self.teleop_in_control:
            return None
        self.teleop_in_control = in_control
        return {"type": "teleop", "in_control": in_control}

    def snapshot(self) -> dict:
        return {
            "type": "snapshot",
            "estop_latched": self.estop_latched,
            "robot": self.robot,
            "agent_status": self.agent_status,
            "task": self.task,
            "thinking": self.thinking,
            "tool_calls": list(self.tool_calls),
            "verdicts": list(self.verdicts),
            "approvals": [p.as_dict() for p in self.approvals.values()],
            "diagnostics": self.diagnostics_list(),
            "teleop_in_control": self.teleop_in_control,
        }
