"""The mission timeline of a recording: the instruction, each tool call with its verdict and outcome, each
e-stop, take-over and approval request. Pure: works on recorder.reading's decoded messages.

Topics are matched by their name under any namespace (/robot1/safety/verdict is safety/verdict).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from qwen_stack import topics as T


@dataclass(frozen=True)
class Event:
    t: float        # s since the first recorded message (publish time)
    text: str
    depth: int = 0  # 1: belongs to the tool call above it


def _is(topic: str, name: str) -> bool:
    return topic == "/" + name or topic.endswith("/" + name)


TIMELINE_TOPICS = (T.AGENT_STATUS, T.AGENT_TOOL_CALLS, T.SAFETY_VERDICT, T.SAFETY_ESTOP_STATE, T.SAFETY_ESTOP_TOPIC,
                   T.TELEOP_LOCK, T.SAFETY_APPROVAL_REQUEST)


def on_timeline(topic: str) -> bool:
    """Whether mission_timeline reads `topic` (read_bag's `keep`: images and scans need no decoding)."""
    return any(_is(topic, name) for name in TIMELINE_TOPICS)


def _short(text: str, n: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def mission_timeline(messages: list) -> list[Event]:
    """Events in publish order. `messages`: RecordedMessage (decoded) of one recording."""
    if not messages:
        return []
    # publish (source) time orders events across topics as their publishers sent them; reception order can
    # interleave two topics (a verdict received after the call it belongs to)
    def when(m) -> int:
        return m.publish_time or m.log_time

    msgs = sorted(messages, key=when)
    t0 = when(msgs[0])
    out: list[Event] = []
    state = {"agent": ("", ""), "latched": None, "lock": None, "vel": "", "open_call": False}

    def add(m, text: str, depth: int = 0) -> None:
        out.append(Event((when(m) - t0) * 1e-9, text, depth))

    for m in msgs:
        d = m.data
        if isinstance(d, (bytes, bytearray, memoryview)):
            continue                                  # undecodable: no schema
        if _is(m.topic, T.AGENT_STATUS):
            try:
                doc = json.loads(d.data)
            except (ValueError, TypeError):
                continue
            now = (str(doc.get("state", "")), str(doc.get("task", "")))
            before = state["agent"]
            if now[0] == "running" and (before[0] != "running" or before[1] != now[1]):
                add(m, f"MISSION: {now[1]!r}")
            elif before[0] == "running" and now[0] != "running":
                add(m, f"mission ended: {_short(now[0], 200)}")
            state["agent"] = now
        elif _is(m.topic, T.AGENT_TOOL_CALLS):
            if d.status == "requested":
                kind = "actuating" if d.actuating else "query"
                add(m, f"tool call #{d.step} {d.name}({_short(d.arguments_json, 80)}) [{kind}]")
                state["open_call"] = True
            else:
                add(m, f"-> {d.status}: {_short(d.result_json)}", 1)
                state["open_call"] = False
        elif _is(m.topic, T.SAFETY_VERDICT):
            reasons = "; ".join(d.reasons)
            if d.source.startswith("action:"):
                add(m, f"verdict {d.level_name} on {d.source[7:]}" + (f": {_short(reasons)}" if reasons else ""),
                    1 if state["open_call"] else 0)
            else:
                # velocity verdicts (20 Hz): only when a command from a source is stopped, and when that ends;
                # the idle watchdog stop (source "none": nobody is commanding) is not an event
                key = f"{d.level_name} ({d.source})" if d.level >= 3 and d.source != "none" else ""
                if key and key != state["vel"]:
                    add(m, f"base command {key}" + (f": {_short(reasons)}" if reasons else ""))
                elif not key and state["vel"]:
                    add(m, f"base command {d.level_name} again ({d.source})")
                state["vel"] = key
        elif _is(m.topic, T.SAFETY_ESTOP_STATE):
            if d.data and state["latched"] is not True:
                add(m, "E-STOP LATCHED")
            elif not d.data and state["latched"] is True:
                add(m, "e-stop reset")
            state["latched"] = bool(d.data)
        elif _is(m.topic, T.SAFETY_ESTOP_TOPIC):
            if d.data:
                add(m, f"e-stop requested on {m.topic}")
        elif _is(m.topic, T.TELEOP_LOCK):
            if bool(d.data) != state["lock"] and (d.data or state["lock"] is not None):
                add(m, "operator took control (teleop lock)" if d.data else "operator released control")
            state["lock"] = bool(d.data)
        elif _is(m.topic, T.SAFETY_APPROVAL_REQUEST):
            add(m, f"approval requested for {d.service}({_short(d.arguments_json, 60)}), "
                   f"{d.timeout_s:g} s to answer", 1 if state["open_call"] else 0)
    return out


def format_timeline(events: list[Event]) -> str:
    return "\n".join(f"{e.t:8.2f} s  {'    ' * e.depth}{e.text}" for e in events)
