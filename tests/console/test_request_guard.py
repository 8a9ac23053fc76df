"""The console refuses on headers before reading a body, caps bodies, and types request fields strictly.

Issue 16 items 10 (bodies read before refusal), 11 (unbounded texts; answers that contradict what was
done) and 12 (speeds coerced from true and "1"). The ASGI-level tests call the app with a `receive`
that records whether the body was asked for: a refusal must come without it.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings as hsettings, strategies as st

from qwen_stack.console.access import Credentials
from qwen_stack.console.app import create_app
from qwen_stack.console.backend import Outcome
from qwen_stack.console.config import ConsoleSettings
from tests.console.backend_double import BackendDouble
from tests.console.live_server import serve

CONTROLLER = "controller-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
ORIGIN = "http://127.0.0.1:8080"
CONTROL_PATHS = ["/api/estop", "/api/estop/reset", "/api/teleop/take_over", "/api/teleop/heartbeat",
                 "/api/teleop/command", "/api/teleop/hand_back", "/api/approvals/req-1", "/api/task",
                 "/api/task/cancel"]


def _app(settings: ConsoleSettings | None = None, port: int = 8080):
    settings = settings or ConsoleSettings()
    backend = BackendDouble(settings)
    creds = Credentials(CONTROLLER, VIEWER, "test", "test", open_viewing=True)
    return create_app(settings, creds, backend, port=port), backend


def _client(settings: ConsoleSettings | None = None):
    app, backend = _app(settings)
    return TestClient(app, base_url="http://127.0.0.1:8080"), backend


def asgi_post(app, path: str, headers: dict[str, str], chunks: list[bytes],
              trickle: bool = False) -> tuple[int, dict, dict, int]:
    """POST through the ASGI app with a body in `chunks` (`trickle`: more is announced and never comes):
    (status, response headers, JSON body, chunks read)."""
    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": trickle or read < len(chunks)}
        await asyncio.sleep(3600)   # the client has nothing more to say

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body or b"null"), read)


BIG = str(300 * 1024 * 1024)   # what the headers claim: 300 MB


@pytest.mark.parametrize("path", CONTROL_PATHS)
@pytest.mark.parametrize("headers,status", [
    ({}, 401),                                                          # no token
    ({"Authorization": "Bearer wrong-token-0123456789abcdef"}, 401),    # wrong token
    ({"Authorization": f"Bearer {VIEWER}"}, 403),                       # a viewer may not control
    ({"Authorization": f"Bearer {CONTROLLER}", "Origin": "http://evil.example"}, 403),   # any web page
    ({"Authorization": f"Bearer {CONTROLLER}", "Origin": "null"}, 403),                   # sandboxed page
    ({"Authorization": f"Bearer {CONTROLLER}"}, 413),                   # credentials fine, body too large
])
def test_refused_on_headers_without_reading_the_body(path, headers, status):
    app, backend = _app()
    hdrs = {"Host": "127.0.0.1:8080", "Content-Type": "application/json", "Content-Length": BIG, **headers}
    got, resp_headers, body, read = asgi_post(app, path, hdrs, [b"{" + b" " * 1000])
    assert (got, read) == (status, 0)                       # answered, and not one body chunk taken
    assert resp_headers["connection"] == "close"           # the server drops the rest instead of draining it
    assert isinstance(body["detail"], str) and backend.sent == []


def test_cross_origin_text_plain_post_refused_unread():
    """The simple-request trick (no CORS preflight): refused for its Origin whatever it carries."""
    app, backend = _app()
    hdrs = {"Host": "127.0.0.1:8080", "Origin": "http://evil.example", "Content-Type": "text/plain",
            "Content-Length": BIG}
    assert asgi_post(app, "/api/estop/reset", hdrs, [b"x" * 1000])[::3] == (403, 0)
    assert backend.sent == []


def test_body_without_length_is_read_up_to_the_cap_only():
    app, backend = _app(ConsoleSettings(max_body_bytes=4096))
    hdrs = {"Host": "127.0.0.1:8080", "Authorization": f"Bearer {CONTROLLER}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}
    chunks = [b'{"instruction": "' + b"a" * 1000] + [b"a" * 1000] * 100 + [b'"}']
    status, headers, body, read = asgi_post(app, "/api/task", hdrs, chunks)
    assert status == 413 and read == 5                      # 5 chunks pass 4096 bytes: not one more read
    assert headers["connection"] == "close" and backend.sent == []
    assert body == {"detail": "request body is larger than max_body_bytes (4096)"}


def test_body_within_the_cap_reaches_the_route():
    app, backend = _app(ConsoleSettings(max_body_bytes=4096))
    hdrs = {"Host": "127.0.0.1:8080", "Authorization": f"Bearer {CONTROLLER}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}
    status, _, body, _ = asgi_post(app, "/api/task", hdrs, [b'{"instruction": ', b'"find the cup"}'])
    assert (status, body) == (200, {"ok": True, "message": "goal accepted"})
    assert backend.sent_of("start_task") == ["find the cup"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_api_bodies_must_be_json(content_type):
    client, backend = _client()
    r = client.post("/api/task", content=b'{"instruction": "go"}',
                    headers={"Authorization": f"Bearer {CONTROLLER}", "Content-Type": content_type})
    assert r.status_code == 415 and backend.sent == []


def test_refusal_counts_in_headers_on_a_real_server():
    """On uvicorn: a 300 MB upload without a token is answered 401 after its headers and the connection
    closed, while the client has sent 64 KB of it (before the fix the server read it all first)."""
    app, backend = _app()
    with serve(lambda port: _app(port=port)[0]) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST /api/task HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {BIG}\r\n\r\n".encode() + b"{" + b" " * 65535)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 401 ")
            assert b"connection: close" in answer.lower()
            sock.settimeout(5)   # then the server closes: recv ends with b"" (or a reset)
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass


# --- item 12: strict types --------------------------------------------------------------------
def _take_over(client) -> str:
    return client.post("/api/teleop/take_over", headers={"Authorization": f"Bearer {CONTROLLER}"}).json()["control_id"]


@pytest.mark.parametrize("field", ["linear", "angular"])
@pytest.mark.parametrize("raw", ["true", "false", '"1"', '"0.5"', "null", "[]", "{}", "1e400", "-1e400"])
def test_teleop_speeds_are_strict_numbers(field, raw):
    client, backend = _client()
    cid = _take_over(client)
    values = {"linear": "0.1", "angular": "0.0", field: raw}
    body = f'{{"control_id": "{cid}", "linear": {values["linear"]}, "angular": {values["angular"]}}}'
    n_sent = len(backend.sent_of("teleop"))
    r = client.post("/api/teleop/command", content=body.encode(),
                    headers={"Authorization": f"Bearer {CONTROLLER}", "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"'{field}': ")
    assert len(backend.sent_of("teleop")) == n_sent          # nothing went to the robot


def test_teleop_integers_still_accepted():
    client, backend = _client()
    cid = _take_over(client)
    r = client.post("/api/teleop/command", json={"control_id": cid, "linear": 0, "angular": 1},
                    headers={"Authorization": f"Bearer {CONTROLLER}"})
    assert r.status_code == 200 and r.json() == {"applied": True, "linear": 0.0, "angular": 1.0}


@pytest.mark.parametrize("path,body,field", [
    ("/api/approvals/req-1", {"approved": "false"}, "approved"),   # a string "false" would approve if coerced
    ("/api/approvals/req-1", {"approved": 0}, "approved"),
    ("/api/approvals/req-1", {"approved": None}, "approved"),
    ("/api/estop/reset", {"reason": 42}, "reason"),
    ("/api/task", {"instruction": ["go"]}, "instruction"),
    ("/api/teleop/hand_back", {"control_id": 7}, "control_id"),
    ("/api/teleop/heartbeat", {"control_id": True}, "control_id"),
    ("/api/task", {"instruction": "go", "max_steps": 3}, "max_steps"),            # unknown field
    ("/api/teleop/command", {"control_id": "x", "linaer": 0.1, "angular": 0}, "linear"),   # typo: missing
])
def test_request_fields_typed_strictly_and_named_in_422(path, body, field):
    client, backend = _client()
    backend.hub.update(backend.state.on_approval_request, {"request_id": "req-1", "service": "skills/release",
                                                           "arguments_json": "{}", "timeout_s": 30.0}, time.time())
    r = client.post(path, json=body, headers={"Authorization": f"Bearer {CONTROLLER}"})
    assert r.status_code == 422, r.text
    assert f"'{field}'" in r.json()["detail"]
    assert backend.sent == []


# --- item 11: bounded texts, answers that match what was done ----------------------------------
@pytest.mark.parametrize("path,field", [("/api/estop/reset", "reason"), ("/api/task", "instruction")])
def test_texts_bounded_and_one_printable_line(path, field):
    client, backend = _client(ConsoleSettings(max_text_chars=100, max_body_bytes=4096))
    h = {"Authorization": f"Bearer {CONTROLLER}"}
    for bad, why in (("x" * 101, "longer than 100 characters"), ("ok\nINJECTED audit line", "printable"),
                     ("nul\x00", "printable"), ("  ", "empty")):
        r = client.post(path, json={field: bad}, headers=h)
        assert r.status_code == 422 and f"'{field}'" in r.json()["detail"] and why in r.json()["detail"], r.text
    assert backend.sent == []
    r = client.post(path, json={field: " " + "y" * 100 + " "}, headers=h)   # the bound itself, stripped
    assert r.status_code == 200


def test_request_id_bounded():
    client, backend = _client()
    r = client.post("/api/approvals/" + "r" * 129, json={"approved": True}, headers={"Authorization": f"Bearer {CONTROLLER}"})
    assert r.status_code == 422 and "'request_id'" in r.json()["detail"] and backend.sent == []


OUTCOMES = st.sampled_from([Outcome(True, "e-stop reset"), Outcome(False, "not latched"),
                            Outcome(False, "service not available; nothing was sent", unavailable=True),
                            Outcome(False, "sent, no answer", unknown=True)])


@hsettings(max_examples=150, deadline=None)
@given(reason=st.text(max_size=300), outcome=OUTCOMES)
def test_reset_answer_never_contradicts_what_was_done(reason, outcome):
    """Validation before acting: a 4xx means nothing was sent; a 2xx/5xx answer says what the supervisor
    said, or that it was sent without an answer (504, ok null), never "unavailable" after sending."""
    client, backend = _client(ConsoleSettings(max_text_chars=200))
    backend.reset_outcome = outcome
    r = client.post("/api/estop/reset", json={"reason": reason}, headers={"Authorization": f"Bearer {CONTROLLER}"})
    sent = backend.sent_of("reset_estop")
    if r.status_code == 422:
        assert sent == []
        return
    assert sent == [(reason.strip(), "operator")]
    expected = (504, None) if outcome.unknown else (503, False) if outcome.unavailable else (200, outcome.ok)
    assert (r.status_code, r.json()["ok"]) == expected
    assert r.json()["message"] == outcome.message


def test_oversized_or_deep_websocket_messages_ignored():
    client, backend = _client(ConsoleSettings(max_body_bytes=4096))
    with client.websocket_connect("ws://127.0.0.1:8080/ws/events", headers={"Origin": ORIGIN}) as ws:
        ws.send_json({"type": "hello", "token": CONTROLLER})
        assert ws.receive_json()["role"] == "controller"
        ws.receive_json()
        ws.send_text(json.dumps({"type": "heartbeat", "pad": "x" * 5000}))   # over the cap: ignored
        ws.send_text("[" * 1500 + "]" * 1500)                                  # too deep for json: ignored
        ws.send_json({"type": "heartbeat"})
        backend.hub.update(backend.state.on_estop_latched, True)
        assert ws.receive_json() == {"type": "estop", "latched": True}      # the socket still serves
    assert len(backend.sent_of("heartbeat")) == 1


def test_a_body_trickling_in_is_refused_408(monkeypatch):
    import qwen_stack.console.guard as guard

    monkeypatch.setattr(guard, "BODY_TIMEOUT_S", 0.2)
    app, backend = _app()
    hdrs = {"Host": "127.0.0.1:8080", "Authorization": f"Bearer {CONTROLLER}", "Content-Type": "application/json",
            "Content-Length": "100"}
    status, headers, body, read = asgi_post(app, "/api/task", hdrs, [b'{"instruction": '], trickle=True)
    assert (status, read) == (408, 1) and headers["connection"] == "close"
    assert body == {"detail": "request body not received within 0.2 s"} and backend.sent == []
