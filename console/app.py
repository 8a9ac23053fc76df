"""The console's web layer: short routes over a ConsoleBackend, state pushed to pages over WebSockets.

HTTP API (JSON; `Authorization: Bearer <token>`):
  GET  /api/session                 viewer      role and the page's settings
  GET  /api/state                   viewer      snapshot of everything shown
  POST /api/estop                   controller  latch the supervisor's e-stop
  POST /api/estop/reset             controller  {"reason"}: reset it (never resumes motion)
  POST /api/teleop/take_over        controller  -> {"control_id"}; teleop lock held from now
  POST /api/teleop/heartbeat        controller  {"control_id"}: the holder is alive (pages use /ws/events)
  POST /api/teleop/command          controller  {"control_id", "linear", "angular"} -> as clamped
  POST /api/teleop/hand_back        controller  {"control_id"}
  POST /api/approvals/{request_id}  controller  {"approved"}
  POST /api/task                    controller  {"instruction"}
  POST /api/task/cancel             controller
Every request passes console/guard.py first: Host, Origin, credentials and body size are checked on
the headers, before a body is read. Bodies are strict: a field of the wrong JSON type (a string or a
boolean for a speed) or an unknown field is 422 naming the field; texts are bounded (max_text_chars).
Answers of robot-side requests: 200 with the robot side's "ok"; 503 when nothing could be sent; 504
with "ok": null when the request was sent and no answer came (it may have been carried out).
WebSockets (Origin checked; the first message is {"type": "hello", "token": ...}):
  /ws/events  JSON events (first a snapshot); pages with the controller token send {"type": "heartbeat",
              "control_id": <id while holding control, else null>} every heartbeat_period_s
  /ws/video   binary JPEG frames, newest first (?view=annotated: perception's boxes and labels)
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from qwen_stack.console.access import Credentials, Refusal, Role, authorize, origin_allowed
from qwen_stack.console.backend import ConsoleBackend, Outcome
from qwen_stack.console.guard import LOOPBACK_NAMES, RequestGuard, host_name
from qwen_stack.console.config import ConsoleSettings
from qwen_stack.console.teleop import TeleopError

STATIC_DIR = Path(__file__).resolve().parent / "static"
HELLO_TIMEOUT_S = 5.0
WS_POLICY_VIOLATION = 1008
MAX_REQUEST_ID_CHARS = 128


class StrictBody(BaseModel):
    # No coercion (true or "1" is not a speed, "false" is not a denial) and no unknown fields (a typo is
    # an error, not a silently missing value).
    model_config = ConfigDict(strict=True, extra="forbid")


class ResetBody(StrictBody):
    reason: str


class ControlBody(StrictBody):
    control_id: str


class TeleopBody(StrictBody):
    control_id: str
    linear: float = Field(allow_inf_nan=False)
    angular: float = Field(allow_inf_nan=False)


class ApprovalBody(StrictBody):
    approved: bool


class TaskBody(StrictBody):
    instruction: str


def _outcome(outcome: Outcome) -> JSONResponse:
    if outcome.unknown:
        return JSONResponse({"ok": None, "message": outcome.message}, status_code=504)
    return JSONResponse({"ok": outcome.ok, "message": outcome.message}, status_code=503 if outcome.unavailable else 200)


def text_field(name: str, value: str, max_chars: int) -> str:
    """`value` stripped; 422 naming the field when empty, longer than max_chars or not one printable line."""
    text = value.strip()
    if not text:
        raise HTTPException(422, f"'{name}' is empty")
    if len(text) > max_chars:
        raise HTTPException(422, f"'{name}' is longer than {max_chars} characters ({len(text)})")
    if not text.isprintable():
        raise HTTPException(422, f"'{name}' must be one line of printable text (no control characters)")
    return text


def _validation_detail(exc: RequestValidationError) -> str:
    """One line naming each offending field: "'linear': Input should be a valid number"."""
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        parts.append(f"'{'.'.join(loc) or 'body'}': {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(settings: ConsoleSettings, credentials: Credentials, backend: ConsoleBackend,
               port: int | None = None) -> FastAPI:
    """`port`: the port actually bound (differs from settings.port when that is 0)."""
    app = FastAPI(title="qwen_stack console", docs_url=None, redoc_url=None, openapi_url=None)
    origins = settings.allowed_origins(port)

    def require(request: Request) -> Role:
        # RequestGuard refused these already, before the body; checked again here so that a route can
        # never be reached without its role, whatever wraps the app.
        role = authorize(request.method, request.headers.get("origin"), request.headers.get("authorization"),
                         credentials, origins)
        if isinstance(role, Refusal):
            raise HTTPException(role.status, role.detail, {"WWW-Authenticate": "Bearer"} if role.challenge else None)
        return role

    viewer = controller = require   # the role needed follows from the method (access.role_needed)

    app.add_middleware(RequestGuard, loopback=settings.loopback, credentials=credentials, origins=origins,
                       max_body_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(TeleopError)
    async def teleop_refused(_request: Request, exc: TeleopError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/session")
    async def session(role: Role = Depends(viewer)) -> dict:
        s = settings
        return {"role": role.name.lower(), "operator_name": s.operator_name,
                "heartbeat_period_s": s.heartbeat_period_s,
                "teleop": {"max_linear": s.teleop_max_linear, "max_angular": s.teleop_max_angular,
                           "deadman_s": s.teleop_deadman_s, "session_timeout_s": s.teleop_session_timeout_s}}

    @app.get("/api/state")
    async def state(_: Role = Depends(viewer)) -> dict:
        return backend.hub.snapshot()

    @app.post("/api/estop")
    async def estop(_: Role = Depends(controller)) -> dict:
        backend.trigger_estop()
        return {"ok": True, "message": "e-stop sent to the supervisor"}

    @app.post("/api/estop/reset")
    async def estop_reset(body: ResetBody, _: Role = Depends(controller)) -> JSONResponse:
        reason = text_field("reason", body.reason, settings.max_text_chars)   # checked before anything is sent
        return _outcome(await backend.reset_estop(reason, settings.operator_name))

    @app.post("/api/teleop/take_over")
    async def take_over(_: Role = Depends(controller)) -> dict:
        return {"control_id": backend.take_over()}

    @app.post("/api/teleop/heartbeat")
    async def control_heartbeat(body: ControlBody, _: Role = Depends(controller)) -> dict:
        backend.control_heartbeat(body.control_id)
        return {"ok": True}

    @app.post("/api/teleop/command")
    async def teleop_command(body: TeleopBody, _: Role = Depends(controller)) -> dict:
        cmd = backend.teleop_command(body.control_id, body.linear, body.angular)
        return {"linear": cmd.linear, "angular": cmd.angular}

    @app.post("/api/teleop/hand_back")
    async def hand_back(body: ControlBody, _: Role = Depends(controller)) -> dict:
        backend.hand_back(body.control_id)
        return {"ok": True}

    @app.post("/api/approvals/{request_id}")
    async def approve(request_id: str, body: ApprovalBody, _: Role = Depends(controller)) -> JSONResponse:
        if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
            raise HTTPException(422, f"'request_id' must be printable and at most {MAX_REQUEST_ID_CHARS} characters")
        outcome = await backend.approve(request_id, body.approved, settings.operator_name)
        if outcome is None:
            raise HTTPException(404, f"no pending approval request {request_id!r} (answered or expired)")
        return _outcome(outcome)

    @app.post("/api/task")
    async def start_task(body: TaskBody, _: Role = Depends(controller)) -> JSONResponse:
        instruction = text_field("instruction", body.instruction, settings.max_text_chars)
        return _outcome(await backend.start_task(instruction))

    @app.post("/api/task/cancel")
    async def cancel_task(_: Role = Depends(controller)) -> JSONResponse:
        return _outcome(await backend.cancel_task())

    async def hello(ws: WebSocket) -> Role | None:
        """Host and Origin checks, then the page's token; None (connection closed) when refused."""
        host_ok = not settings.loopback or host_name(ws.headers.get("host", "")) in LOOPBACK_NAMES
        if not host_ok or not origin_allowed(ws.headers.get("origin"), origins):
            await ws.close(code=WS_POLICY_VIOLATION)    # before accept: the handshake gets HTTP 403
            return None
        await ws.accept()
        try:
            text = await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT_S)
            first = json.loads(text) if len(text) <= settings.max_body_bytes else None
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "hello" else None
        except (asyncio.TimeoutError, ValueError, KeyError, RecursionError, WebSocketDisconnect):
            await ws.close(code=WS_POLICY_VIOLATION)
            return None
        role = credentials.role_of(token if isinstance(token, str) else None)
        if role < Role.VIEWER:
            await ws.send_json({"type": "error", "detail": "a viewer or controller token is needed"})
            await ws.close(code=WS_POLICY_VIOLATION)
            return None
        await ws.send_json({"type": "session", "role": role.name.lower()})
        return role

    @app.websocket("/ws/events")
    async def events(ws: WebSocket) -> None:
        role = await hello(ws)
        if role is None:
            return
        client, snapshot = backend.hub.subscribe()

        async def receive() -> None:
            while True:
                try:
                    text = await ws.receive_text()
                    # the server bounds messages (ws_max_size); this bounds them under any server
                    msg = json.loads(text) if len(text) <= settings.max_body_bytes else None
                except (ValueError, KeyError, RecursionError):   # not JSON, too deep, or binary: ignored
                    continue
                if isinstance(msg, dict) and msg.get("type") == "heartbeat" and role == Role.CONTROLLER:
                    backend.send_heartbeat()
                    if msg.get("control_id") is not None:
                        try:
                            backend.control_heartbeat(msg["control_id"])
                        except TeleopError:   # not (or no longer) the holder: the teleop event told the page
                            pass

        receiver = asyncio.create_task(receive())
        try:
            await ws.send_json(snapshot)
            while not receiver.done():
                getter = asyncio.ensure_future(backend.hub.next_event(client))
                done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await ws.send_json(getter.result())
                else:
                    getter.cancel()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            receiver.cancel()
            backend.hub.unsubscribe(client)

    @app.websocket("/ws/video")
    async def video(ws: WebSocket, view: str = "camera") -> None:
        # view: "camera" (the robot's camera) or "annotated" (perception's boxes and labels on it)
        hub = {"camera": backend.frames, "annotated": backend.annotated}.get(view)
        if hub is None:
            await ws.close(code=WS_POLICY_VIOLATION, reason="view must be camera or annotated")
            return
        if await hello(ws) is None:
            return
        seq = 0
        closed = asyncio.create_task(_until_closed(ws))
        try:
            while not closed.done():
                waiter = asyncio.ensure_future(hub.wait_newer(seq))
                done, _ = await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    break
                seq, frame = waiter.result()
                await ws.send_bytes(frame)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            closed.cancel()

    return app


async def _until_closed(ws: WebSocket) -> None:
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
