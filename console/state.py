"""What the page shows, as plain data: updates in, events out. No ROS, no web framework.

Every `on_*` method takes a plain value (the ROS bridge converts messages), updates the state
and returns the event to push to the pages (a JSON-able dict with a "type"), or None when
nothing visible changed. `snapshot()` is what a page gets when it connects.

Everything that comes in is bounded on the way (`bounded`): strings to max_text_chars (marked with
how much was cut), containers in depth and length, non-finite numbers to null (JSON has no NaN: one
would stop the page parsing events). A malformed or hostile message changes what is shown, never
whether the console keeps running.

What an operator reads at a glance is computed here too: the current task whoever started it
(`task_view`), a one-line agent summary, one-line summaries of tool arguments and results, the
supervisor's verdict on each actuating tool call, and the supervisor at rest shown as idle.
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass

from qwen_stack.console.mapview import MapView

VERDICT_LEVELS = ("ALLOW", "LIMIT", "SLOWDOWN", "STOP", "REJECT", "ESTOP")
STOP_LEVEL = 3
DIAGNOSTIC_LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}
MAX_DEPTH = 8            # nesting shown; deeper parts become "…"
MAX_ITEMS = 50           # items per list or object shown
MAX_REASONS = 10         # reasons per verdict shown
MAX_PENDING_APPROVALS = 50   # more would be a flood: the oldest is dropped from view (the supervisor denies it)
SUMMARY_CHARS = 160      # one-line summaries in the tool call table
MAX_TIMEOUT_S = 86400.0  # an approval countdown beyond a day is shown as a day


def bounded(value: object, max_chars: int, depth: int = 0) -> object:
    """A JSON-able copy of `value` with every string, container and number bounded (see the module doc)."""
    if isinstance(value, str):
        if len(value) <= max_chars:
            return value
        return value[:max_chars] + f"… [{len(value) - max_chars} more characters]"
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 2 ** 53 else bounded(f"{float(value):.6g}", max_chars)   # exact in JS only below
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())
        out = {bounded(str(k), 64): bounded(v, max_chars, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"{len(items) - MAX_ITEMS} more entries"
        return out
    if isinstance(value, (list, tuple)):
        out = [bounded(v, max_chars, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            out.append(f"… {len(value) - MAX_ITEMS} more items")
        return out
    return bounded(str(value), max_chars)


def finite_or_none(x: object) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def parse_json_field(text: str, max_chars: int = 20000) -> object:
    """A JSON field of a message for display: the parsed value (bounded), or the raw text if it is not JSON.
    Text far beyond what can be shown is not parsed at all; nesting too deep for the parser is raw text."""
    if not text:
        return None
    if len(text) > 4 * max_chars:
        return bounded(text, max_chars)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):   # ValueError also covers integers of more than 4300 digits
        return bounded(text, max_chars)
    return bounded(_unnest(value), max_chars)


def _unnest(value: object, depth: int = 0) -> object:
    """Strings that hold a JSON object or list (e.g. a skill's "state_json") parsed, so the page shows
    structure instead of escaped quotes."""
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, str) and value[:1] in ("{", "[") and len(value) < 100_000:
        try:
            return _unnest(json.loads(value), depth + 1)
        except (ValueError, RecursionError):
            return value
    if isinstance(value, dict):
        return {k: _unnest(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_unnest(v, depth + 1) for v in value]
    return value


def one_line(value: object, max_chars: int = SUMMARY_CHARS) -> str:
    """A compact one-line rendering: `key=value, ...` for objects, `{its keys}`/`[n items]` for what is nested."""
    def scalar(v: object) -> str:
        if isinstance(v, dict):   # its keys say what is inside
            keys = list(v)
            return "{" + ", ".join(map(str, keys[:4])) + (", …" if len(keys) > 4 else "") + "}"
        if isinstance(v, list):
            return f"[{len(v)} items]" if v else "[]"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    if value is None or value == {} or value == "":
        text = ""
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={scalar(v)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(scalar(v) for v in value)
    else:
        text = scalar(value)
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


def result_summary(result: object) -> str:
    """What a tool call's result says, in one line: its error, the supervisor's reasons, the response's
    message, else its fields (the tool name and status are in their own columns)."""
    if not isinstance(result, dict):
        return one_line(result)
    if result.get("error"):
        return one_line(f"error: {result['error']}")
    if result.get("reasons"):
        reasons = result["reasons"]
        return one_line("; ".join(map(str, reasons)) if isinstance(reasons, list) else reasons)
    response = result.get("response")
    if isinstance(response, dict):
        if response.get("message"):
            return one_line(response["message"])
        return one_line({k: v for k, v in response.items() if k not in ("success", "ok")})
    rest = {k: v for k, v in result.items() if k not in ("tool", "status")}
    return one_line(response if response is not None and len(rest) == 1 else rest)


def agent_summary(status: object) -> str:
    """The agent's status JSON in one line an operator reads: state, backend (and that a replay is not a
    model), camera, and the conditions that hold it."""
    if not isinstance(status, dict):
        return one_line(status)
    parts = [str(status.get("state") or "unknown")]
    backend = status.get("backend")
    if backend:
        note = status.get("note") or ("" if status.get("is_model", True) else "not a language model")
        parts.append(f"backend {backend}" + (f" ({note})" if note else ""))
    if status.get("camera"):
        frames = status.get("frames_in_window")
        parts.append(f"camera {status['camera']}" + (f", {frames} frames" if isinstance(frames, int) else ""))
    if status.get("estop_latched"):
        parts.append("e-stop latched")
    if status.get("teleop_locked"):
        parts.append("operator in control")
    return one_line(" · ".join(parts), 300)


def supervisor_idle(level: int, message: str, values: dict[str, str]) -> bool:
    """The supervisor's diagnostics at rest: a STOP only because nothing commands motion (no active
    source, e-stop not latched). That is the base held still by design, not a fault."""
    return (level == 1 and message.startswith("STOP:") and values.get("active_source") == "none"
            and values.get("estop_latched") == "False")


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
    def __init__(self, recent_verdicts: int = 50, recent_tool_calls: int = 100, thinking_max_chars: int = 20000,
                 max_text_chars: int = 2000, map_period_s: float = 0.25) -> None:
        self.estop_latched: bool | None = None      # None until the supervisor has said
        self.robot: dict | None = None
        self.agent_status: object = None
        self.task: dict | None = None               # the last task started from this console
        self.thinking = ""
        self.thinking_max_chars = thinking_max_chars
        self.max_text_chars = max_text_chars
        self.tool_calls: deque[dict] = deque(maxlen=recent_tool_calls)
        self.verdicts: deque[dict] = deque(maxlen=recent_verdicts)
        self.approvals: dict[str, PendingApproval] = {}
        self.diagnostics: dict[str, dict] = {}
        self.teleop_in_control = False
        self.map = MapView(map_period_s)   # updated through its on_* methods; events come from map_tick
        self._changes = 0              # counts task-related updates, to tell which task news is newer
        self._task_change = -1
        self._agent_change = -1
        self._awaiting_verdict: tuple[str, int] | None = None   # the actuating call the next action verdict is for
        self._shown_task: dict | None = None

    def _text(self, value: object) -> str:
        return bounded("" if value is None else str(value), self.max_text_chars)

    # --- supervisor -------------------------------------------------------------------------
    def on_estop_latched(self, latched: bool) -> dict | None:
        if latched == self.estop_latched:
            return None
        self.estop_latched = bool(latched)
        return {"type": "estop", "latched": self.estop_latched}

    def on_verdict(self, verdict: dict) -> list[dict] | None:
        """Verdicts come at the command rate: a repeat of the last one (same source, level, reasons) is not news.
        An action verdict ("action:<service>") is also shown on the tool call waiting for it."""
        level = int(verdict["level"])
        reasons = [self._text(r) for r in list(verdict.get("reasons", []))[:MAX_REASONS]]
        source = self._text(verdict.get("source", ""))
        latched = bool(verdict.get("estop_latched", False))
        entry = {
            "time": finite_or_none(verdict.get("time")),
            "level": level,
            "level_name": self._text(verdict.get("level_name") or (VERDICT_LEVELS[level] if 0 <= level < len(VERDICT_LEVELS)
                                                                  else str(level))),
            "source": source,
            "reasons": reasons,
            "estop_latched": latched,
            # nothing commanded motion: the supervisor holds the base at zero (normal at rest, not an alarm)
            "idle": source == "none" and level == STOP_LEVEL and not latched,
        }
        events = []
        if source.startswith("action:") and self._awaiting_verdict is not None:
            events.append(self._attach_verdict(self._awaiting_verdict, entry))
            self._awaiting_verdict = None
        if self.verdicts:
            last = self.verdicts[-1]
            if all(last[k] == entry[k] for k in ("level", "source", "reasons", "estop_latched")):
                return [e for e in events if e is not None] or None
        self.verdicts.append(entry)
        events.append({"type": "verdict", "verdict": entry})
        return [e for e in events if e is not None]

    def on_approval_request(self, request: dict, now: float) -> dict | None:
        timeout = finite_or_none(request.get("timeout_s", 0.0)) or 0.0
        timeout = min(max(timeout, 0.0), MAX_TIMEOUT_S)
        pending = PendingApproval(self._text(request["request_id"]), self._text(request.get("service", "")),
                                  parse_json_field(request.get("arguments_json", ""), self.max_text_chars),
                                  timeout, now + timeout)
        self.approvals[pending.request_id] = pending
        while len(self.approvals) > MAX_PENDING_APPROVALS:
            self.approvals.pop(next(iter(self.approvals)))
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
        self.robot = {k: finite_or_none(v) for k, v in
                      (("x", x), ("y", y), ("theta", theta), ("linear", linear), ("angular", angular), ("time", time))}
        return {"type": "robot", "robot": self.robot}

    def on_diagnostics(self, statuses: list[dict]) -> dict | None:
        changed = False
        for s in statuses[:MAX_ITEMS]:
            level = int(s["level"])
            message = self._text(s.get("message", ""))
            values = {str(k): str(v) for k, v in dict(s.get("values") or {}).items()}
            entry = {"name": self._text(s["name"]), "level": level,
                     "level_name": DIAGNOSTIC_LEVELS.get(level, str(level)),
                     "message": message, "hardware_id": self._text(s.get("hardware_id", ""))}
            if supervisor_idle(level, message, values):
                entry.update(level=0, level_name="OK",
                             message="idle: nothing commands motion, the supervisor holds the base at zero")
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
        text = text[-self.thinking_max_chars:]
        self.thinking = (self.thinking + text)[-self.thinking_max_chars:]
        return {"type": "thinking", "text": text}

    def on_agent_status(self, text: str) -> list[dict] | None:
        status = parse_json_field(text, self.max_text_chars)
        if status == self.agent_status:
            return None
        old = self.agent_status if isinstance(self.agent_status, dict) else {}
        new = status if isinstance(status, dict) else {}
        if (old.get("task"), old.get("state")) != (new.get("task"), new.get("state")):
            self._changes += 1
            self._agent_change = self._changes
        self.agent_status = status
        return [e for e in ({"type": "agent_status", "status": status, "summary": agent_summary(status)},
                            self._task_event(False)) if e is not None]

    def on_task(self, instruction: str, state: str, message: str = "") -> dict:
        """A task started from this console: "sending" (clears the thinking shown: the new task's streams
        in from now on), then "running", "rejected" or "unanswered" (sent, no answer yet), then
        "succeeded", "failed" or "canceled"."""
        if state == "sending":
            self.thinking = ""
        self.task = {"instruction": self._text(instruction), "state": state, "message": self._text(message)}
        self._changes += 1
        self._task_change = self._changes
        event = self._task_event(state == "sending", force=True)
        return event

    def task_view(self) -> dict | None:
        """The task the operator should see: whichever of this console's task and the agent's (a task
        started elsewhere, e.g. `qwen-stack task`) is newer; with the agent's step count when they agree."""
        agent = self.agent_status if isinstance(self.agent_status, dict) else {}
        a_task, a_state = str(agent.get("task") or ""), str(agent.get("state") or "")
        steps = agent.get("steps") if isinstance(agent.get("steps"), int) else None
        mine = self.task
        if mine is not None and (not a_task or a_task == mine["instruction"] or self._task_change > self._agent_change):
            view = {**mine, "origin": "console", "steps": steps if a_task == mine["instruction"] else None}
            if a_task == mine["instruction"] and mine["state"] == "unanswered" and a_state == "running":
                view.update(state="running", message="")   # the agent took it after all
            return view
        if not a_task or a_state == "idle":
            return None
        state, _, message = a_state.partition(": ")   # "failed: <why>"
        return {"instruction": self._text(a_task), "state": state, "message": self._text(message),
                "origin": "agent", "steps": steps}

    def _task_event(self, clear_thinking: bool, force: bool = False) -> dict | None:
        view = self.task_view()
        if view == self._shown_task and not force:
            return None
        self._shown_task = view
        return {"type": "task", "task": view, "clear_thinking": clear_thinking}

    def on_tool_call(self, call: dict) -> dict:
        arguments = parse_json_field(call.get("arguments_json", ""), self.max_text_chars)
        result = parse_json_field(call.get("result_json", ""), self.max_text_chars)
        entry = {
            "task_id": self._text(call.get("task_id", "")),
            "step": int(call.get("step", 0)),
            "name": self._text(call.get("name", "")),
            "arguments": arguments,
            "arguments_summary": one_line(arguments),
            "actuating": bool(call.get("actuating", False)),
            "status": self._text(call.get("status", "")),
            "result": result,
            "result_summary": result_summary(result),
            "verdict": None,   # the supervisor's verdict, for actuating calls, once it has judged
        }
        self.map.on_tool_call(entry["name"], arguments)   # the latest go_to_* call is the goal drawn
        key = (entry["task_id"], entry["step"])
        for i, old in enumerate(self.tool_calls):   # a later status of the same call replaces it
            if (old["task_id"], old["step"]) == key:
                entry["verdict"] = old["verdict"]
                self.tool_calls[i] = entry
                break
        else:
            self.tool_calls.append(entry)
        if entry["actuating"] and entry["verdict"] is None and entry["status"] == "requested":
            self._awaiting_verdict = key
        elif self._awaiting_verdict == key:
            self._awaiting_verdict = None   # finished without an action verdict (e.g. refused before the proxy)
        return {"type": "tool_call", "call": entry}

    def _attach_verdict(self, key: tuple[str, int], verdict: dict) -> dict | None:
        for i, call in enumerate(self.tool_calls):
            if (call["task_id"], call["step"]) == key:
                call = {**call, "verdict": {"level_name": verdict["level_name"], "reasons": verdict["reasons"]}}
                self.tool_calls[i] = call
                return {"type": "tool_call", "call": call}
        return None

    # --- console ----------------------------------------------------------------------------
    def on_teleop(self, in_control: bool) -> dict | None:
        if in_control == self.teleop_in_control:
            return None
        self.teleop_in_control = in_control
        return {"type": "teleop", "in_control": in_control}

    def map_tick(self, now: float) -> dict | None:
        """The map event, throttled (MapView.tick); called on a timer, never per message."""
        return self.map.tick(now)

    def snapshot(self) -> dict:
        return {
            "type": "snapshot",
            "estop_latched": self.estop_latched,
            "robot": self.robot,
            "agent_status": self.agent_status,
            "agent_summary": None if self.agent_status is None else agent_summary(self.agent_status),
            "task": self.task_view(),
            "thinking": self.thinking,
            "tool_calls": list(self.tool_calls),
            "verdicts": list(self.verdicts),
            "approvals": [p.as_dict() for p in self.approvals.values()],
            "diagnostics": self.diagnostics_list(),
            "teleop_in_control": self.teleop_in_control,
            "map": self.map.as_dict(),
        }
