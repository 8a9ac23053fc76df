"""ConsoleState (events the page gets) and TeleopControl (deadman, clamps): hand-derived expectations."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from qwen_stack.console.state import ConsoleState
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
    assert s.on_verdict(v)["verdict"]["level_name"] == "ALLOW"
    assert s.on_verdict({**v, "time": 2.0}) is None
    assert s.on_verdict({**v, "level": 3, "level_name": "", "reasons": ["scan stale"]})["verdict"] == {
        "time": 1.0, "level": 3, "level_name": "STOP", "source": "teleop", "reasons": ["scan stale"],
        "estop_latched": False}
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
