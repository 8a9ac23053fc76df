"""The console's web layer: short routes over a ConsoleBackend, state pushed to pages over WebSockets.

HTTP API (JSON; `Authorization: Bearer <token>`):
  GET  /api/session                 viewer      role and the page's settings
  GET  /api/state                   viewer      snapshot of everything shown
  POST /api/estop                   controller  latch the supervisor's e-stop
  POST /api/estop/reset             controller  {"reason"}: reset it (never resumes motion)
  POST /api/teleop/take_over        controller  -> {"control_id"}; teleop lock held from now
  POST /api/teleop/command          controller  {"control_id", "linear", "angular"} -> as clamped
  POST /api/teleop/hand_back        controller  {"control_id"}
  POST /api/approvals/{request_id}  controller  {"approved"}
  POST /api/task                    controller  {"instruction"}
  POST /api/task/cancel             controller
WebSockets (Origin checked; the first message is {"type": "hello", "token": ...}):
  /ws/events  JSON events (first a snapshot); pages with control send {"type": "heartbeat"}
  /ws/video   binary JPEG frames, newest first
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from qwen_stack.console.access import Credentials, Role, bearer_token, origin_allowed
from qwen_stack.console.backend import ConsoleBackend, Outcome
from qwen_stack.console.settings import ConsoleSettings
from qwen_stack.console.teleop import TeleopError

STATIC_DIR = Path(__file__).resolve().parent / "static"
HELLO_TIMEOUT_S = 5.0
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
WS_POLICY_VIOLATION = 1008


class ResetBody(BaseModel):
    reason: str


class ControlBody(BaseModel):
    control_id: str


class TeleopBody(BaseModel):
    control_id: str
    linear: float = Field(allow_inf_nan=False)
    angular: float = Field(allow_inf_nan=False)


class ApprovalBody(BaseModel):
    approved: bool


class TaskBody(BaseModel):
    instruction: str


def host_name(host_header: str) -> str:
    """The host of a Host header without its port ("[::1]:8080" -> "::1")."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _outcome(outcome: Outcome) -> JSONResponse:
    status = 503 if outcome.unavailable else 200
    return JSONResponse({"ok": outcome.ok, "message": outcome.message}, status_code=status)


def create_app(settings: ConsoleSettings, credentials: Credentials, backend: ConsoleBackend,
               port: int | None = None) -> FastAPI:
    """`port`: the port actually bound (differs from settings.port when that is 0)."""
    app = FastAPI(title="qwen_stack console", docs_url=None, redoc_url=None, openapi_url=None)
    origins = settings.allowed_origins(port)

    def role_of(request: Request) -> Role:
        if not origin_allowed(request.headers.get("origin"), origins):
            raise HTTPException(403, "foreign origin")
        return credentials.role_of(bearer_token(request.headers.get("authorization")))

    def viewer(request: Request) -> Role:
        role = role_of(request)
        if role < Role.VIEWER:
            raise HTTPException(401, "a viewer or controller token is needed", {"WWW-Authenticate": "Bearer"})
        return role

    def controller(request: Request) -> Role:
        role = role_of(request)
        if role == Role.ANONYMOUS or bearer_token(request.headers.get("authorization")) is None:
            raise HTTPException(401, "the controller token is needed", {"WWW-Authenticate": "Bearer"})
        if role < Role.CONTROLLER:
            raise HTTPException(403, "a viewer may not control")
        return role

    @app.middleware("http")
    async def host_check_and_security_headers(request: Request, call_next):
        # On localhost, a page from another site reaching 127.0.0.1 through DNS rebinding carries its own
        # host name: refused.
        if settings.loopback and host_name(request.headers.get("host", "")) not in LOOPBACK_NAMES:
            return JSONResponse({"detail": "invalid host header"}, status_code=400)
        response = await call_next(request)
        # No framing (a framed E-stop or Approve button could be clicked by a hidden page), own scripts only.
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'")
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

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
                           "deadman_s": s.teleop_deadman_s}}

    @app.get("/api/state")
    async def state(_: Role = Depends(viewer)) -> dict:
        return backend.hub.snapshot()

    @app.post("/api/estop")
    async def estop(_: Role = Depends(controller)) -> dict:
        backend.trigger_estop()
        return {"ok": True, "message": "e-stop sent to the supervisor"}

    @app.post("/api/estop/reset")
    async def estop_reset(body: ResetBody, _: Role = Depends(controller)) -> JSONResponse:
        if not body.reason.strip():
            raise HTTPException(422, "a reason is needed to reset the e-stop")
        return _outcome(await backend.reset_estop(body.reason.strip(), settings.operator_name))

    @app.post("/api/teleop/take_over")
    async def take_over(_: Role = Depends(controller)) -> dict:
        return {"control_id": backend.take_over()}

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
        outcome = await backend.approve(request_id, body.approved, settings.operator_name)
        if outcome is None:
            raise HTTPException(404, f"no pending approval request {request_id!r} (answered or expired)")
        return _outcome(outcome)

    @app.post("/api/task")
    async def start_task(body: TaskBody, _: Role = Depends(controller)) -> JSONResponse:
        if not body.instruction.strip():
            raise HTTPException(422, "the instruction is empty")
        return _outcome(await backend.start_task(body.instruction.strip()))

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
            first = json.loads(await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT_S))
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "hello" else None
        except (asyncio.TimeoutError, ValueError, KeyError, WebSocketDisconnect):
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
                    msg = json.loads(await ws.receive_text())
                except (ValueError, KeyError):   # not JSON, or a binary message: ignored
                    continue
                if isinstance(msg, dict) and msg.get("type") == "heartbeat" and role == Role.CONTROLLER:
                    backend.send_heartbeat()

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
    async def video(ws: WebSocket) -> None:
        if await hello(ws) is None:
            return
        seq = 0
        closed = asyncio.create_task(_until_closed(ws))
        try:
            while not closed.done():
                waiter = asyncio.ensure_future(backend.frames.wait_newer(seq))
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
