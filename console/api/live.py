"""The console's WebSockets: /ws/events (a snapshot, then every event; controller pages heartbeat on it) and
/ws/video (binary JPEG frames, newest first). The first message of a page is {"type": "hello", "token": ...};
Host and Origin are checked before the handshake is accepted."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from qwen_stack.console.access import Role, origin_allowed
from qwen_stack.console.api.deps import ConsoleContext, ws_context
from qwen_stack.console.guard import LOOPBACK_NAMES, host_name
from qwen_stack.console.teleop import TeleopError

HELLO_TIMEOUT_S = 5.0
WS_POLICY_VIOLATION = 1008

router = APIRouter()


async def hello(ws: WebSocket, ctx: ConsoleContext) -> Role | None:
    """Host and Origin checks, then the page's token; None (connection closed) when refused."""
    host_ok = not ctx.settings.loopback or host_name(ws.headers.get("host", "")) in LOOPBACK_NAMES
    if not host_ok or not origin_allowed(ws.headers.get("origin"), ctx.origins):
        await ws.close(code=WS_POLICY_VIOLATION)    # before accept: the handshake gets HTTP 403
        return None
    await ws.accept()
    try:
        text = await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT_S)
        first = json.loads(text) if len(text) <= ctx.settings.max_body_bytes else None
        token = first.get("token") if isinstance(first, dict) and first.get("type") == "hello" else None
    except (asyncio.TimeoutError, ValueError, KeyError, RecursionError, WebSocketDisconnect):
        await ws.close(code=WS_POLICY_VIOLATION)
        return None
    role = ctx.credentials.role_of(token if isinstance(token, str) else None)
    if role < Role.VIEWER:
        await ws.send_json({"type": "error", "detail": "a viewer or controller token is needed"})
        await ws.close(code=WS_POLICY_VIOLATION)
        return None
    await ws.send_json({"type": "session", "role": role.name.lower()})
    return role


@router.websocket("/ws/events")
async def events(ws: WebSocket) -> None:
    ctx = ws_context(ws)
    role = await hello(ws, ctx)
    if role is None:
        return
    client, snapshot = ctx.backend.hub.subscribe()

    async def receive() -> None:
        while True:
            try:
                text = await ws.receive_text()
                # the server bounds messages (ws_max_size); this bounds them under any server
                msg = json.loads(text) if len(text) <= ctx.settings.max_body_bytes else None
            except (ValueError, KeyError, RecursionError):   # not JSON, too deep, or binary: ignored
                continue
            if isinstance(msg, dict) and msg.get("type") == "heartbeat" and role == Role.CONTROLLER:
                ctx.backend.send_heartbeat()
                if msg.get("control_id") is not None:
                    try:
                        ctx.backend.control_heartbeat(msg["control_id"])
                    except TeleopError:   # not (or no longer) the holder: the teleop event told the page
                        pass

    receiver = asyncio.create_task(receive())
    try:
        await ws.send_json(snapshot)
        while not receiver.done():
            getter = asyncio.ensure_future(ctx.backend.hub.next_event(client))
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await ws.send_json(getter.result())
            else:
                getter.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        receiver.cancel()
        ctx.backend.hub.unsubscribe(client)


@router.websocket("/ws/video")
async def video(ws: WebSocket, view: str = "camera") -> None:
    ctx = ws_context(ws)
    # view: "camera" (the robot's camera) or "annotated" (perception's boxes and labels on it)
    hub = {"camera": ctx.backend.frames, "annotated": ctx.backend.annotated}.get(view)
    if hub is None:
        await ws.close(code=WS_POLICY_VIOLATION, reason="view must be camera or annotated")
        return
    if await hello(ws, ctx) is None:
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


async def _until_closed(ws: WebSocket) -> None:
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
