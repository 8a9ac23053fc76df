"""ConsoleState (events the page gets) and TeleopControl (deadman, clamps): hand-derived expectations."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from qwen_stack.console.state import (MAX_DEPTH, MAX_ITEMS, MAX_REASONS, SUMMARY_CHARS, ConsoleState, agent_summary,
                                      bounded, one_line, result_summary)
from qwen_stack.console.teleop import ZERO, TeleopCommand, TeleopControl, TeleopError, clamp_command


def test_estop_event_only_on_change():
    s = ConsoleState()
    assert s.snapshot()["estop_latched"] is None
    assert s.on_estop_latched(True) == {"type": "estop", "latched": True}
    assert s.on_estop_latched(True) is None
    assert s.on_estop_latched(False) == {"type": "estop", "latched": False}


def test_verdict_repeats_collapsed_and_bounded():
    s = ConsoleState(recent_verdicts=2)
    v = {"time": 1.0, "level": 0, "level_name": "ALLOW", "source": "teleop", "reasons": []}
    assert s.on_verdict(v)[0]["verdict"]["level_name"] == "ALLOW"
    assert s.on_verdict({**v, "time": 2.0}) is None
    assert s.on_verdict({**v, "level": 3, "level_name": "", "reasons": ["scan stale"]}) == [{"type": "verdict", "verdict": {
        "time": 1.0, "level": 3, "level_name": "STOP", "source": "teleop", "reasons": ["scan stale"],
        "estop_latched": False, "idle": False}}]
    s.on_verdict({**v, "source": "autonomy"})
    assert [e["source"] for e in s.snapshot()["verdicts"]] == ["teleop", "autonomy"]


def test_approvals_expire_at_deadline():
    s = ConsoleState()
    ev = s.on_approval_request({"request_id": "a", "service": "skills/grasp", "arguments_json": "not json",
                                "timeout_s": 5.0}, now=100.0)
    assert ev["request"] == {"request_id": "a", "service": "skills/grasp", "arguments": "not json",
                             "timeout_s": 5.0, "deadline": 105.0}
    assert s.expire_approvals(104.9) == []
    assert s.expire_approvals(105.0) == [{"type": "approval_resolved", "request_id": "a", "outcome": "expired"}]
    assert s.on_approval_resolved("a", "denied") is None


def test_tool_call_later_status_replaces_same_step():
    s = ConsoleState()
    call = {"task_id": "t", "step": 1, "name": "grasp", "arguments_json": "{}", "actuating": True,
            "status": "requested", "result_json": ""}
    s.on_tool_call(call)
    s.on_tool_call({**call, "status": "succeeded", "result_json": '{"held_object": "cube"}'})
    calls = s.snapshot()["tool_calls"]
    assert len(calls) == 1 and calls[0]["status"] == "succeeded" and calls[0]["result"] == {"held_object": "cube"}


def test_thinking_kept_as_tail_and_cleared_by_new_task():
    s = ConsoleState(thinking_max_chars=5)
    s.on_thinking("abc")
    s.on_thinking("defg")
    assert s.thinking == "cdefg"
    assert s.on_thinking("") is None
    s.on_task("go", "sending")
    assert s.thinking == ""


def test_diagnostics_changes_only():
    s = ConsoleState()
    st = [{"name": "b", "level": 0, "message": "ok"}, {"name": "a", "level": 2, "message": "down"}]
    ev = s.on_diagnostics(st)
    assert [(d["name"], d["level_name"]) for d in ev["statuses"]] == [("a", "ERROR"), ("b", "OK")]
    assert s.on_diagnostics(st) is None


@pytest.mark.parametrize("lin,ang,expected", [
    (0.2, 0.1, TeleopCommand(0.2, 0.1)), (9, -9, TeleopCommand(0.5, -1.0)), (-0.7, 2, TeleopCommand(-0.5, 1.0)),
    (0, 0, ZERO)])
def test_clamp(lin, ang, expected):
    assert clamp_command(lin, ang, 0.5, 1.0) == expected


@pytest.mark.parametrize("bad", [float("nan"), math.inf, "0.3", None, True])
def test_clamp_refuses_non_numbers(bad):
    with pytest.raises(TeleopError) as exc:
        clamp_command(bad, 0.0, 0.5, 1.0)
    assert exc.value.status == 422


def test_deadman_and_holder():
    t = TeleopControl(0.5, 1.0, deadman_s=0.3)
    assert t.output(0.0) is None                       # not in control: nothing published
    cid = t.take_over(0.0)
    assert t.output(0.0) == ZERO
    with pytest.raises(TeleopError):
        t.take_over(0.0)
    t.command(cid, 0.4, 0.0, now=10.0)
    assert t.output(10.29) == TeleopCommand(0.4, 0.0)
    assert t.output(10.31) == ZERO                     # stale: zero
    with pytest.raises(TeleopError):
        t.command("other", 0.4, 0.0, now=10.4)
    with pytest.raises(TeleopError):
        t.command(cid, float("nan"), 0.0, now=10.4)
    assert t.output(10.4) == ZERO                      # bad input did not move it
    t.hand_back(cid)
    assert t.output(10.4) is None and not t.in_control


def test_an_overtaken_command_never_replaces_a_newer_one():
    t = TeleopControl(0.5, 1.0, deadman_s=0.3)
    cid = t.take_over(0.0)
    assert t.command(cid, 0.0, 0.0, now=1.0, seq=7) == ZERO          # the release's zero arrives first
    assert t.command(cid, 0.4, 0.0, now=1.01, seq=6) is None         # the drive it overtook: ignored
    assert t.command(cid, 0.4, 0.0, now=1.02, seq=7) is None         # a repeat of the same number too
    assert t.output(1.02) == ZERO
    assert t.command(cid, 0.3, 0.0, now=1.03, seq=8) == TeleopCommand(0.3, 0.0)
    for bad in (-1, 1.5, "9", True):
        with pytest.raises(TeleopError) as e:
            t.command(cid, 0.0, 0.0, now=1.04, seq=bad)
        assert e.value.status == 422
    assert t.output(1.04) == TeleopCommand(0.3, 0.0)                 # bad numbers changed nothing
    t.hand_back(cid)
    cid = t.take_over(2.0)                                           # numbers start afresh per take-over
    assert t.command(cid, 0.2, 0.0, now=2.0, seq=1) == TeleopCommand(0.2, 0.0)
    assert t.command(cid, 0.1, 0.0, now=2.1) == TeleopCommand(0.1, 0.0)   # unnumbered: taken in arrival order


def test_control_session_expires_without_heartbeat():
    t = TeleopControl(0.5, 1.0, deadman_s=0.3, session_timeout_s=1.5)
    assert not t.session_expired(100.0)                # nobody holds control: nothing to expire
    cid = t.take_over(10.0)
    assert not t.session_expired(11.5)                 # take-over counts as the first sign of life
    assert t.session_expired(11.51)
    t.heartbeat(cid, 11.4)
    assert not t.session_expired(12.9) and t.session_expired(12.91)
    with pytest.raises(TeleopError) as exc:
        t.heartbeat("someone-else", 12.0)              # only the holder keeps control alive
    assert exc.value.status == 409
    assert t.session_expired(12.91)
    t.heartbeat(cid, 11.0)                             # an older stamp never moves the deadline back
    assert t.session_expired(12.91)


def test_control_session_heartbeat_from_the_future_counts_as_silence():
    t = TeleopControl(0.5, 1.0, deadman_s=0.3, session_timeout_s=1.5)
    cid = t.take_over(10.0)
    t.heartbeat(cid, 50.0)
    assert t.session_expired(20.0)                     # the clock went back: no proof the page is alive


@given(steps=st.lists(st.tuples(st.sampled_from(["beat", "other", "tick"]), st.floats(0.0, 2.0)), max_size=40))
def test_control_never_outlives_its_last_heartbeat(steps):
    """Whatever the sequence, control is expired exactly when the holder's last sign of life is older
    than the session timeout."""
    t = TeleopControl(0.5, 1.0, deadman_s=0.3, session_timeout_s=1.0)
    now = 0.0
    cid = t.take_over(now)
    alive_since = now
    for kind, dt in steps:
        now += dt
        if kind == "beat":
            t.heartbeat(cid, now)
            alive_since = now
        elif kind == "other":
            with pytest.raises(TeleopError):
                t.heartbeat("not-" + cid, now)
        assert t.session_expired(now) == (now - alive_since > 1.0)


# --- issue 16 item 11: everything shown is bounded; item 13: what an operator reads at a glance ----
def _json_round_trip(event) -> object:
    return json.loads(json.dumps(event, allow_nan=False))   # what a browser's JSON.parse accepts


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
                          lambda inner: st.lists(inner, max_size=80) | st.dictionaries(st.text(max_size=80), inner,
                                                                                      max_size=80), max_leaves=400))
def test_bounded_is_valid_json_and_bounded(value):
    out = bounded(value, 100)
    text = json.dumps(out, allow_nan=False)           # never NaN/Infinity, which the page cannot parse

    def check(v, depth=0):
        assert depth <= MAX_DEPTH
        if isinstance(v, str):
            assert len(v) <= 100 + len("… [999999 more characters]")
        elif isinstance(v, int) and not isinstance(v, bool):
            assert abs(v) < 2 ** 53
        elif isinstance(v, dict):
            assert len(v) <= MAX_ITEMS + 1 and all(check(x, depth + 1) or True for x in v.values())
        elif isinstance(v, list):
            assert len(v) <= MAX_ITEMS + 1 and all(check(x, depth + 1) or True for x in v)
    check(out)
    assert len(text) < 10_000_000


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000, "9" * 5000, "x" * 10_000_000,
                                 '{"a": ' * 50 + "1" + "}" * 50, "NaN", '{"x": Infinity}'])
def test_hostile_json_fields_never_raise_and_stay_bounded(raw):
    s = ConsoleState(max_text_chars=200)
    events = [s.on_tool_call({"task_id": "t", "step": 0, "name": "grasp", "arguments_json": raw, "result_json": raw,
                              "actuating": True, "status": "requested"}),
              s.on_approval_request({"request_id": "r", "service": "skills/release", "arguments_json": raw,
                                     "timeout_s": float("inf")}, now=10.0),
              s.on_agent_status(raw)]
    for event in events:
        assert len(json.dumps(_json_round_trip(event))) < 20_000
    assert s.snapshot()["approvals"][0]["timeout_s"] == 0.0   # a non-finite timeout shows no countdown


def test_reasons_sources_and_numbers_in_events_bounded():
    s = ConsoleState(max_text_chars=100)
    ev = s.on_verdict({"time": float("nan"), "level": 3, "level_name": "STOP", "source": "x" * 10_000,
                       "reasons": ["r" * 10_000] * 1000})[0]["verdict"]
    assert ev["time"] is None and len(ev["reasons"]) == MAX_REASONS
    assert ev["source"].endswith("… [9900 more characters]") and len(ev["reasons"][0]) < 130
    robot = s.on_odometry(float("nan"), 1e308 * 10, 0.0, float("-inf"), 0.1, 5.0)["robot"]
    assert robot == {"x": None, "y": None, "theta": 0.0, "linear": None, "angular": 0.1, "time": 5.0}
    assert s.on_task("i" * 5000, "sending")["task"]["instruction"].endswith("… [4900 more characters]")
    diag = s.on_diagnostics([{"name": "n" * 1000, "level": 1, "message": "m" * 1000}])["statuses"][0]
    assert len(diag["name"]) < 130 and len(diag["message"]) < 130


def test_task_started_elsewhere_shown_and_newest_task_wins():
    s = ConsoleState()
    assert s.snapshot()["task"] is None
    status = {"state": "running", "task": "fetch the red cube", "steps": 2, "backend": "replay", "is_model": False}
    events = s.on_agent_status(json.dumps(status))
    assert events[1] == {"type": "task", "clear_thinking": False, "task": {
        "instruction": "fetch the red cube", "state": "running", "message": "", "origin": "agent", "steps": 2}}
    s.on_agent_status(json.dumps({**status, "state": "succeeded", "steps": 9}))
    assert s.snapshot()["task"]["state"] == "succeeded" and s.snapshot()["task"]["steps"] == 9
    s.on_task("look left", "sending")                  # a task from this console is newer
    s.on_task("look left", "running")
    s.on_agent_status(json.dumps({**status, "task": "look left", "steps": 1}))
    assert s.snapshot()["task"] == {"instruction": "look left", "state": "running", "message": "",
                                    "origin": "console", "steps": 1}
    s.on_task("look left", "succeeded")
    s.on_agent_status(json.dumps({**status, "task": "look left", "state": "succeeded"}))
    s.on_agent_status(json.dumps({**status, "task": "from the CLI", "state": "failed: no red cube", "steps": 3}))
    assert s.snapshot()["task"] == {"instruction": "from the CLI", "state": "failed", "message": "no red cube",
                                    "origin": "agent", "steps": 3}


def test_agent_summary_is_one_readable_line():
    status = {"state": "idle", "task": "", "steps": 0, "backend": "replay", "is_model": False,
              "note": "NOT a language model: replaying a fixed script", "camera": "sim", "frames_in_window": 8,
              "last_prompt_images": None, "estop_latched": True, "teleop_locked": False}
    assert agent_summary(status) == ("idle · backend replay (NOT a language model: replaying a fixed script) · "
                                     "camera sim, 8 frames · e-stop latched")


def test_tool_results_summarised_and_nested_json_unescaped():
    s = ConsoleState()
    result = {"tool": "describe_state", "status": "succeeded",
              "response": {"success": True, "state_json": json.dumps({"pose": {"x": 1.0}, "held_object": ""})}}
    call = s.on_tool_call({"task_id": "t", "step": 0, "name": "describe_state", "arguments_json": "{}",
                           "actuating": False, "status": "succeeded", "result_json": json.dumps(result)})["call"]
    assert call["result"]["response"]["state_json"] == {"pose": {"x": 1.0}, "held_object": ""}   # no escaped JSON
    assert call["result_summary"] == "state_json={pose, held_object}"
    assert call["arguments_summary"] == ""
    assert result_summary({"tool": "grasp", "status": "rejected", "reasons": ["needs approval", "denied"]}) == \
        "needs approval; denied"
    assert result_summary({"tool": "go", "status": "timeout", "error": "skills/go did not answer"}) == \
        "error: skills/go did not answer"
    assert result_summary({"response": {"success": True, "message": "released red_cube"}}) == "released red_cube"
    assert len(one_line({"k": "v" * 1000})) == SUMMARY_CHARS


def test_supervisor_verdict_attached_to_the_actuating_call_it_judged():
    s = ConsoleState()
    base = {"task_id": "t", "name": "release", "arguments_json": "{}", "actuating": True, "result_json": ""}
    s.on_tool_call({**base, "step": 0, "name": "describe_state", "actuating": False, "status": "requested"})
    s.on_verdict({"time": 1.0, "level": 3, "source": "none", "reasons": ["command watchdog: no fresh input"]})
    s.on_tool_call({**base, "step": 1, "status": "requested"})
    events = s.on_verdict({"time": 2.0, "level": 4, "level_name": "REJECT", "source": "action:skills/release",
                           "reasons": ["operator denied"]})
    assert events[0]["call"]["step"] == 1
    assert events[0]["call"]["verdict"] == {"level_name": "REJECT", "reasons": ["operator denied"]}
    s.on_tool_call({**base, "step": 1, "status": "rejected", "result_json": '{"reasons": ["operator denied"]}'})
    calls = s.snapshot()["tool_calls"]
    assert calls[0]["verdict"] is None                          # read-only: the supervisor does not vet it
    assert calls[1]["status"] == "rejected" and calls[1]["verdict"]["level_name"] == "REJECT"   # kept on update
    s.on_verdict({"time": 3.0, "level": 0, "source": "action:skills/grasp", "reasons": []})
    assert s.snapshot()["tool_calls"][1]["verdict"]["level_name"] == "REJECT"   # no call waiting: not attached


def test_supervisor_at_rest_shown_idle_not_as_an_alarm():
    s = ConsoleState()
    idle = {"name": "/safety_supervisor: safety supervisor", "level": 1,
            "message": "STOP: command watchdog: no fresh input",
            "values": {"active_source": "none", "estop_latched": "False"}}
    shown = s.on_diagnostics([idle])["statuses"][0]
    assert (shown["level_name"], shown["message"]) == (
        "OK", "idle: nothing commands motion, the supervisor holds the base at zero")
    moving_blocked = {**idle, "message": "STOP: scan stale", "values": {"active_source": "autonomy",
                                                                       "estop_latched": "False"}}
    assert s.on_diagnostics([moving_blocked])["statuses"][0]["level_name"] == "WARN"   # a real stop stays a warning
    verdict = s.on_verdict({"time": 1.0, "level": 3, "source": "none", "reasons": ["command watchdog"]})[0]
    assert verdict["verdict"]["idle"] is True
    latched = s.on_verdict({"time": 1.0, "level": 5, "source": "none", "reasons": ["e-stop"], "estop_latched": True})
    assert latched[0]["verdict"]["idle"] is False
