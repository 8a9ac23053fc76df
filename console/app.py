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

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from qwen_stack.console.access import Credentials
from qwen_stack.console.api import http, live
from qwen_stack.console.api.deps import ConsoleContext
from qwen_stack.console.backend import ConsoleBackend
from qwen_stack.console.config import ConsoleSettings
from qwen_stack.console.guard import RequestGuard
from qwen_stack.console.teleop import TeleopError

STATIC_DIR = Path(__file__).resolve().parent / "static"


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
    app.state.console = ConsoleContext(settings, credentials, backend, origins)
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
    app.include_router(http.router)
    app.include_router(live.router)
    return app
