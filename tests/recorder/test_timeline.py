"""The mission timeline from decoded messages (hand-made, no ROS): instruction, calls with verdicts and outcomes,
approval, e-stop, take-over; velocity verdicts only when a command is stopped; any namespace."""
from __future__ import annotations

import json
from types import SimpleNamespace as NS

from qwen_stack.recorder.reading import RecordedMessage
from qwen_stack.recorder.timeline import format_timeline, mission_timeline

S = 1_000_000_000


def msg(t: float, topic: str, **fields) -> RecordedMessage:
    # log time deliberately late and out of order: the timeline follows publish times
    return RecordedMessage(topic, "", int((100 + t) * S) + 5 * S - int(t * 1000), int((100 + t) * S), NS(**fields))


def status(t, state, task=""):
    return msg(t, "/robot1/agent/status", data=json.dumps({"state": state, "task": task}))


def call(t, step, name, st, actuating=True, args="{}", result=""):
    return msg(t, "/robot1/agent/tool_calls", step=step, name=name, status=st, actuating=actuating,
               arguments_json=args, result_json=result)


def verdict(t, source, level, name, reasons=()):
    return msg(t, "/robot1/safety/verdict", source=source, level=level, level_name=name, reasons=list(reasons))


def test_timeline_of_a_mission_with_approval_estop_and_takeover():
    msgs = [
        status(0.0, "idle"),
        verdict(0.05, "none", 3, "STOP", ["command watchdog: no fresh input"]),      # idle: not an event
        msg(0.1, "/robot1/safety/estop_latched", data=False),
        status(1.0, "running", "fetch the cube"),
        call(1.1, 0, "go_to_object", "requested", args='{"object_name": "red_cube"}'),
        verdict(1.2, "action:skills/go_to_pose", 0, "ALLOW"),
        verdict(1.3, "autonomy", 0, "ALLOW"),
        verdict(1.4, "autonomy", 3, "STOP", ["obstacle in stop zone"]),
        verdict(1.45, "autonomy", 3, "STOP", ["obstacle in stop zone"]),               # same: no new event
        verdict(1.5, "autonomy", 0, "ALLOW"),
        call(2.0, 0, "go_to_object", "succeeded", result='{"ok": true}'),
        call(2.1, 1, "release", "requested"),
        msg(2.2, "/robot1/safety/approval_request", service="skills/release", arguments_json="{}", timeout_s=30.0),
        verdict(2.5, "action:skills/release", 0, "ALLOW"),
        call(2.6, 1, "release", "succeeded", result="{}"),
        msg(3.0, "/robot1/teleop/lock", data=True),
        msg(3.1, "/robot1/teleop/lock", data=True),
        msg(3.5, "/robot1/safety/estop", data=True),
        msg(3.51, "/robot1/safety/estop_latched", data=True),
        verdict(3.52, "autonomy", 5, "ESTOP", ["e-stop latched"]),
        status(3.6, "failed: cancelled: e-stop latched", "fetch the cube"),
        msg(4.0, "/robot1/teleop/lock", data=False),
        msg(5.0, "/robot1/safety/estop_latched", data=False),
        msg(5.1, "/robot1/odom", data=b"ignored"),
    ]
    events = mission_timeline(list(reversed(msgs)))          # input order does not matter
    assert [(round(e.t, 2), e.depth, e.text) for e in events] == [
        (1.0, 0, "MISSION: 'fetch the cube'"),
        (1.1, 0, 'tool call #0 go_to_object({"object_name": "red_cube"}) [actuating]'),
        (1.2, 1, "verdict ALLOW on skills/go_to_pose"),
        (1.4, 0, "base command STOP (autonomy): obstacle in stop zone"),
        (1.5, 0, "base command ALLOW again (autonomy)"),
        (2.0, 1, '-> succeeded: {"ok": true}'),
        (2.1, 0, "tool call #1 release({}) [actuating]"),
        (2.2, 1, "approval requested for skills/release({}), 30 s to answer"),
        (2.5, 1, "verdict ALLOW on skills/release"),
        (2.6, 1, "-> succeeded: {}"),
        (3.0, 0, "operator took control (teleop lock)"),
        (3.5, 0, "e-stop requested on /robot1/safety/estop"),
        (3.51, 0, "E-STOP LATCHED"),
        (3.52, 0, "base command ESTOP (autonomy): e-stop latched"),
        (3.6, 0, "mission ended: failed: cancelled: e-stop latched"),
        (4.0, 0, "operator released control"),
        (5.0, 0, "e-stop reset"),
    ]
    text = format_timeline(events)
    assert text.splitlines()[2] == "    1.20 s      verdict ALLOW on skills/go_to_pose"


def test_no_messages_no_events():
    assert mission_timeline([]) == []
