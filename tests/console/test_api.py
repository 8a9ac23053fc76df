"""API tests of the console over a BackendDouble (no ROS): status codes and exact fields."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from qwen_stack.console.access import Credentials
from qwen_stack.console.app import create_app
from qwen_stack.console.config import ConsoleSettings
from qwen_stack.console.teleop import TeleopCommand
from tests.console.backend_double import BackendDouble

CONTROLLER = "controller-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
BASE = "http://127.0.0.1:8080"
ORIGIN = "http://127.0.0.1:8080"
WS = "ws://127.0.0.1:8080"


def _client(open_viewing: bool = True, settings: ConsoleSettings | None = None):
    settings = settings or ConsoleSettings()
    backend = BackendDouble(settings)
    creds = Credentials(CONTROLLER, VIEWER, "test", "test", open_viewing=open_viewing)
    return TestClient(create_app(settings, creds, backend), base_url=BASE), backend


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# Every control endpoint with a valid body: (path, json).
CONTROL_ENDPOINTS = [
    ("/api/estop", None),
    ("/api/estop/reset", {"reason": "checked the area"}),
    ("/api/teleop/take_over", None),
    ("/api/teleop/command", {"control_id": "x", "linear": 0.1, "angular": 0.0}),
    ("/api/teleop/hand_back", {"control_id": "x"}),
    ("/api/approvals/req-1", {"approved": False}),
    ("/api/task", {"instruction": "go to the red box"}),
    ("/api/task/cancel", None),
]


@pytest.mark.parametrize("path,body", CONTROL_ENDPOINTS)
@pytest.mark.parametrize("open_viewing", [True, False])
def test_control_endpoint_refuses_without_credential_and_with_viewer(path, body, open_viewing):
    client, backend = _client(open_viewing)
    r = client.post(path, json=body)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(path, json=body, headers=auth("wrong-token-0123456789abcdef"))
    assert r.status_code == 401, r.text
    r = client.post(path, json=body, headers=auth(VIEWER))
    assert r.status_code == 403, r.text
    assert r.json() == {"detail": "a viewer may not control"}
    assert backend.sent == []   # nothing reached the robot side


@pytest.mark.parametrize("path,body", CONTROL_ENDPOINTS)
def test_control_endpoint_refuses_foreign_origin_even_with_token(path, body):
    client, backend = _client()
    r = client.post(path, json=body, headers={**auth(CONTROLLER), "Origin": "http://evil.example"})
    assert r.status_code == 403
    assert backend.sent == []


def test_viewing_open_on_localhost_closed_beyond():
    client, _ = _client(open_viewing=True)
    assert client.get("/api/session").json()["role"] == "viewer"
    client, _ = _client(open_viewing=False)
    assert client.get("/api/session").status_code == 401
    assert client.get("/api/state").status_code == 401
    assert client.get("/api/session", headers=auth(VIEWER)).json()["role"] == "viewer"
    assert client.get("/api/session", headers=auth(CONTROLLER)).json()["role"] == "controller"


def test_session_fields():
    client, _ = _client()
    assert client.get("/api/session", headers=auth(CONTROLLER)).json() == {
        "role": "controller", "operator_name": "operator", "heartbeat_period_s": 0.5,
        "teleop": {"max_linear": 0.5, "max_angular": 1.0, "deadman_s": 0.3, "session_timeout_s": 1.5}}


def test_foreign_host_header_refused_on_localhost():
    client, _ = _client()
    r = client.get("/api/session", headers={"Host": "attacker.example:8080"})
    assert r.status_code == 400


def test_page_served():
    client, _ = _client()
    r = client.get("/")
    assert r.status_code == 200 and "<title>" in r.text
    assert client.get("/static/console.js").status_code == 200


def test_estop_sends_and_releases_control():
    client, backend = _client()
    cid = client.post("/api/teleop/take_over", headers=auth(CONTROLLER)).json()["control_id"]
    r = client.post("/api/estop", headers=auth(CONTROLLER))
    assert r.status_code == 200
    assert r.json() == {"ok": True, "message": "e-stop sent to the supervisor"}
    assert backend.sent_of("estop") == [True]
    assert backend.sent_of("teleop_lock")[-1] is False
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)
    # control was dropped: the old id no longer commands
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.2, "angular": 0.0},
                    headers=auth(CONTROLLER))
    assert r.status_code == 409


def test_reset_needs_reason_and_reports_supervisor_answer():
    client, backend = _client()
    r = client.post("/api/estop/reset", json={"reason": "  "}, headers=auth(CONTROLLER))
    assert r.status_code == 422
    r = client.post("/api/estop/reset", json={}, headers=auth(CONTROLLER))
    assert r.status_code == 422
    r = client.post("/api/estop/reset", json={"reason": " area clear "}, headers=auth(CONTROLLER))
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "e-stop reset"}
    assert backend.sent_of("reset_estop") == [("area clear", "operator")]
    assert backend.sent_of("teleop") == []   # a reset never sends motion
    from qwen_stack.console.backend import Outcome
    backend.reset_outcome = Outcome(False, "no supervisor", unavailable=True)
    r = client.post("/api/estop/reset", json={"reason": "x"}, headers=auth(CONTROLLER))
    assert r.status_code == 503 and r.json() == {"ok": False, "message": "no supervisor"}


def test_take_over_command_clamp_and_hand_back():
    client, backend = _client()
    h = auth(CONTROLLER)
    r = client.post("/api/teleop/take_over", headers=h)
    assert r.status_code == 200 and set(r.json()) == {"control_id"}
    cid = r.json()["control_id"]
    assert backend.sent_of("teleop_lock") == [True]
    assert client.post("/api/teleop/take_over", headers=h).status_code == 409
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 3.0, "angular": -5.0}, headers=h)
    assert r.status_code == 200 and r.json() == {"applied": True, "linear": 0.5, "angular": -1.0}
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.5, -1.0)
    r = client.post("/api/teleop/command", json={"control_id": "not-mine", "linear": 0.1, "angular": 0}, headers=h)
    assert r.status_code == 409
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": "fast", "angular": 0}, headers=h)
    assert r.status_code == 422
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.5, -1.0)   # bad input sent nothing
    assert client.post("/api/teleop/hand_back", json={"control_id": "not-mine"}, headers=h).status_code == 409
    r = client.post("/api/teleop/hand_back", json={"control_id": cid}, headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)
    assert backend.sent_of("teleop_lock")[-1] is False


def test_a_drive_command_overtaken_by_the_release_is_ignored():
    client, backend = _client()
    h = auth(CONTROLLER)
    cid = client.post("/api/teleop/take_over", headers=h).json()["control_id"]
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.0, "angular": 0, "seq": 2}, headers=h)
    assert r.status_code == 200 and r.json()["applied"] is True
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.5, "angular": 0, "seq": 1}, headers=h)
    assert r.status_code == 200 and r.json() == {
        "applied": False, "detail": "command 1 was overtaken by a newer one; ignored"}
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)
    backend.teleop_tick()
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)
    for bad in (-1, 1.5, "3", True):
        r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.5, "angular": 0, "seq": bad},
                        headers=h)
        assert r.status_code == 422, bad
    assert TeleopCommand(0.5, 0.0) not in backend.sent_of("teleop")


def test_a_tick_publishing_during_a_hand_back_never_lands_after_its_zero():
    """The ROS timer's tick and the web thread's hand back race: the tick's drive command, decided
    before the hand back, must reach the supervisor before the hand back's zero and lock release."""
    import threading

    class SlowTickDouble(BackendDouble):
        def __init__(self, settings):
            super().__init__(settings)
            self.tick_sending = threading.Event()

        def _send_teleop(self, cmd):
            if threading.current_thread().name == "tick" and not self.tick_sending.is_set():
                self.tick_sending.set()
                time.sleep(0.2)                      # a slow publish, the hand back arrives meanwhile
            super()._send_teleop(cmd)

    backend = SlowTickDouble(ConsoleSettings())
    cid = backend.take_over()
    backend.teleop_command(cid, 0.5, 0.0)
    tick = threading.Thread(target=backend.teleop_tick, name="tick")
    tick.start()
    assert backend.tick_sending.wait(2)
    backend.hand_back(cid)
    tick.join()
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)
    assert backend.sent_of("teleop_lock")[-1] is False


def test_deadman_tick_sends_zero_when_commands_stop():
    settings = ConsoleSettings(teleop_deadman_s=0.1)
    client, backend = _client(settings=settings)
    h = auth(CONTROLLER)
    cid = client.post("/api/teleop/take_over", headers=h).json()["control_id"]
    client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.3, "angular": 0}, headers=h)
    backend.teleop_tick()
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.3, 0.0)
    time.sleep(0.15)
    backend.teleop_tick()
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)


def test_approval_pending_answered_once():
    client, backend = _client()
    h = auth(CONTROLLER)
    assert client.post("/api/approvals/req-1", json={"approved": True}, headers=h).status_code == 404
    backend.hub.update(backend.state.on_approval_request,
                       {"request_id": "req-1", "service": "skills/grasp", "arguments_json": '{"object_name": "cup"}',
                        "timeout_s": 10.0}, time.time())
    pending = client.get("/api/state").json()["approvals"]
    assert [(p["request_id"], p["service"], p["arguments"], p["timeout_s"]) for p in pending] == [
        ("req-1", "skills/grasp", {"object_name": "cup"}, 10.0)]
    r = client.post("/api/approvals/req-1", json={"approved": False}, headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "answer recorded"}
    assert backend.sent_of("approval") == [("req-1", False, "operator")]
    assert client.get("/api/state").json()["approvals"] == []
    assert client.post("/api/approvals/req-1", json={"approved": True}, headers=h).status_code == 404


def test_task_start_and_cancel():
    client, backend = _client()
    h = auth(CONTROLLER)
    assert client.post("/api/task", json={"instruction": " "}, headers=h).status_code == 422
    r = client.post("/api/task", json={"instruction": "find the cup"}, headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "goal accepted"}
    assert client.get("/api/state").json()["task"] == {"instruction": "find the cup", "state": "running", "message": "",
                                                       "origin": "console", "steps": None}
    r = client.post("/api/task/cancel", headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "cancel requested"}
    assert backend.sent_of("start_task") == ["find the cup"] and len(backend.sent_of("cancel_task")) == 1


def _sleep_past(seconds: float) -> None:
    time.sleep(seconds + 0.05)


def test_control_released_and_robot_stopped_when_the_holder_goes_silent():
    """Issue 16 item 9: a take-over without heartbeats ends after teleop_session_timeout_s: zero first,
    then the lock released, the pages told, and anybody may take over again."""
    settings = ConsoleSettings(teleop_session_timeout_s=0.4, heartbeat_period_s=0.1)
    client, backend = _client(settings=settings)
    h = auth(CONTROLLER)
    cid = client.post("/api/teleop/take_over", headers=h).json()["control_id"]
    client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.3, "angular": 0}, headers=h)
    backend.teleop_tick()
    assert client.get("/api/state").json()["teleop_in_control"] is True
    assert backend.sent_of("teleop_lock")[-1] is True
    _sleep_past(0.4)
    n = len(backend.sent)
    backend.teleop_tick()
    assert [(w, v) for w, v, _ in backend.sent[n:]] == [("teleop", TeleopCommand(0.0, 0.0)), ("teleop_lock", False)]
    assert client.get("/api/state").json()["teleop_in_control"] is False
    backend.teleop_tick()
    assert len(backend.sent) == n + 2                   # released: nothing more is published
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 0.3, "angular": 0}, headers=h)
    assert r.status_code == 409
    assert client.post("/api/teleop/take_over", headers=h).status_code == 200


def test_heartbeats_of_the_holder_keep_control_over_websocket_and_http():
    settings = ConsoleSettings(teleop_session_timeout_s=0.4, heartbeat_period_s=0.1)
    client, backend = _client(settings=settings)
    h = auth(CONTROLLER)
    cid = client.post("/api/teleop/take_over", headers=h).json()["control_id"]
    with client.websocket_connect(WS + "/ws/events", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": CONTROLLER})
        ws.receive_json(), ws.receive_json()
        for _ in range(8):                               # 0.8 s, twice the timeout, with heartbeats
            time.sleep(0.1)
            ws.send_json({"type": "heartbeat", "control_id": cid})
            ws.send_json({"type": "heartbeat", "control_id": "an-old-id"})   # ignored, does not disconnect
            backend.hub.update(backend.state.on_estop_latched, bool(_ % 2))  # a round trip: heartbeat was read
            ws.receive_json()
            backend.teleop_tick()
    assert backend.sent_of("teleop_lock") and False not in backend.sent_of("teleop_lock")
    for _ in range(4):
        time.sleep(0.15)
        assert client.post("/api/teleop/heartbeat", json={"control_id": cid}, headers=h).json() == {"ok": True}
        backend.teleop_tick()
    assert False not in backend.sent_of("teleop_lock")
    assert client.post("/api/teleop/heartbeat", json={"control_id": "not-mine"}, headers=h).status_code == 409
    _sleep_past(0.4)
    backend.teleop_tick()
    assert backend.sent_of("teleop_lock")[-1] is False


def test_viewer_heartbeat_does_not_keep_control():
    settings = ConsoleSettings(teleop_session_timeout_s=0.4, heartbeat_period_s=0.1)
    client, backend = _client(open_viewing=False, settings=settings)
    cid = client.post("/api/teleop/take_over", headers=auth(CONTROLLER)).json()["control_id"]
    with client.websocket_connect(WS + "/ws/events", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": VIEWER})
        ws.receive_json(), ws.receive_json()
        for i in range(6):
            time.sleep(0.1)
            ws.send_json({"type": "heartbeat", "control_id": cid})   # a viewer that learned the id
            backend.hub.update(backend.state.on_estop_latched, bool(i % 2))
            ws.receive_json()
    backend.teleop_tick()
    assert backend.sent_of("teleop_lock")[-1] is False


# --- WebSockets ------------------------------------------------------------------------------
def test_websocket_foreign_origin_refused():
    client, _ = _client()
    for path in ("/ws/events", "/ws/video"):
        with pytest.raises(WebSocketDisconnect) as exc:   # closed before accept: a real server answers HTTP 403
            with client.websocket_connect(WS + path, headers={"Origin": "http://evil.example"}):
                pass
        assert exc.value.code == 1008


def test_websocket_foreign_host_refused():
    client, _ = _client()
    with pytest.raises(WebSocketDisconnect) as exc:
        with client.websocket_connect("ws://rebound.example:8080/ws/events"):
            pass
    assert exc.value.code == 1008


def test_websocket_events_snapshot_then_pushed_events_and_heartbeat():
    client, backend = _client()
    with client.websocket_connect(WS + "/ws/events", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": CONTROLLER})
        assert ws.receive_json() == {"type": "session", "role": "controller"}
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["estop_latched"] is None
        backend.hub.update(backend.state.on_estop_latched, True)
        assert ws.receive_json() == {"type": "estop", "latched": True}
        ws.send_json({"type": "heartbeat"})
        backend.hub.update(backend.state.on_estop_latched, False)   # an event after the heartbeat was read
        assert ws.receive_json() == {"type": "estop", "latched": False}
    assert len(backend.sent_of("heartbeat")) == 1


def test_websocket_viewer_heartbeat_ignored_and_token_needed_beyond_localhost():
    client, backend = _client(open_viewing=False)
    with pytest.raises(WebSocketDisconnect) as exc:
        with client.websocket_connect(WS + "/ws/events", headers={"Origin": ORIGIN}) as ws:
            ws.send_json({"type": "hello", "token": None})
            assert ws.receive_json()["type"] == "error"
            ws.receive_json()
    assert exc.value.code == 1008
    with client.websocket_connect(WS + "/ws/events", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": VIEWER})
        assert ws.receive_json() == {"type": "session", "role": "viewer"}
        ws.receive_json()
        ws.send_json({"type": "heartbeat"})
        backend.hub.update(backend.state.on_estop_latched, True)
        assert ws.receive_json() == {"type": "estop", "latched": True}
    assert backend.sent_of("heartbeat") == []


def test_websocket_video_sends_binary_jpeg_frames():
    client, backend = _client()
    with client.websocket_connect(WS + "/ws/video", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": None})
        assert ws.receive_json() == {"type": "session", "role": "viewer"}
        backend.frames.publish(b"\xff\xd8frame-1\xff\xd9")
        assert ws.receive_bytes() == b"\xff\xd8frame-1\xff\xd9"
        backend.frames.publish(b"\xff\xd8frame-2\xff\xd9")
        assert ws.receive_bytes() == b"\xff\xd8frame-2\xff\xd9"


def test_websocket_video_of_perceptions_view_sends_only_annotated_frames():
    client, backend = _client()
    with client.websocket_connect(WS + "/ws/video?view=annotated", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": None})
        assert ws.receive_json() == {"type": "session", "role": "viewer"}
        backend.frames.publish(b"\xff\xd8camera\xff\xd9")          # the camera's stream: not this view
        backend.annotated.publish(b"\xff\xd8boxes-1\xff\xd9")
        assert ws.receive_bytes() == b"\xff\xd8boxes-1\xff\xd9"
    with client.websocket_connect(WS + "/ws/video?view=camera", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": None})
        ws.receive_json()
        assert ws.receive_bytes() == b"\xff\xd8camera\xff\xd9"      # the newest camera frame, not the boxes
    with pytest.raises(WebSocketDisconnect) as exc:
        with client.websocket_connect(WS + "/ws/video?view=depth", headers={"Origin": ORIGIN}) as ws:
            ws.send_json({"type": "hello", "token": None})
    assert exc.value.code == 1008


@pytest.mark.parametrize("host,status", [("127.0.0.1:8080", 200), ("localhost:8080", 200), ("[::1]:8080", 200),
                                         ("localhost", 200), ("attacker.example", 400), ("127.0.0.1.evil:80", 400)])
def test_host_header_checked_on_localhost(host, status):
    client, _ = _client()
    assert client.get("/api/session", headers={"Host": host}).status_code == status


def test_security_headers():
    client, _ = _client()
    r = client.get("/")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
