"""The console's JSON routes (see console/app.py for the API table): short functions over the ConsoleBackend.
Bodies are strict: a field of the wrong JSON type or an unknown field is 422 naming it; texts are bounded."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from qwen_stack.console.access import Role
from qwen_stack.console.api.deps import ConsoleContext, context, require_role
from qwen_stack.console.backend import Outcome

MAX_REQUEST_ID_CHARS = 128

router = APIRouter(prefix="/api")
viewer = controller = require_role   # the role needed follows from the method (access.role_needed)


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
    seq: int | None = Field(default=None, ge=0)   # counts up per take-over; an older one is ignored


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


@router.get("/session")
async def session(role: Role = Depends(viewer), ctx: ConsoleContext = Depends(context)) -> dict:
    s = ctx.settings
    return {"role": role.name.lower(), "operator_name": s.operator_name,
            "heartbeat_period_s": s.heartbeat_period_s,
            "teleop": {"max_linear": s.teleop_max_linear, "max_angular": s.teleop_max_angular,
                       "deadman_s": s.teleop_deadman_s, "session_timeout_s": s.teleop_session_timeout_s}}


@router.get("/state")
async def state(_: Role = Depends(viewer), ctx: ConsoleContext = Depends(context)) -> dict:
    return ctx.backend.hub.snapshot()


@router.post("/estop")
async def estop(_: Role = Depends(controller),
                ctx: ConsoleContext = Depends(context)) -> dict:
    ctx.backend.trigger_estop()
    return {"ok": True, "message": "e-stop sent to the supervisor"}


@router.post("/estop/reset")
async def estop_reset(body: ResetBody, _: Role = Depends(controller),
                      ctx: ConsoleContext = Depends(context)) -> JSONResponse:
    reason = text_field("reason", body.reason, ctx.settings.max_text_chars)   # checked before anything is sent
    return _outcome(await ctx.backend.reset_estop(reason, ctx.settings.operator_name))


@router.post("/teleop/take_over")
async def take_over(_: Role = Depends(controller),
                    ctx: ConsoleContext = Depends(context)) -> dict:
    return {"control_id": ctx.backend.take_over()}


@router.post("/teleop/heartbeat")
async def control_heartbeat(body: ControlBody, _: Role = Depends(controller),
                            ctx: ConsoleContext = Depends(context)) -> dict:
    ctx.backend.control_heartbeat(body.control_id)
    return {"ok": True}


@router.post("/teleop/command")
async def teleop_command(body: TeleopBody, _: Role = Depends(controller),
                         ctx: ConsoleContext = Depends(context)) -> dict:
    cmd = ctx.backend.teleop_command(body.control_id, body.linear, body.angular, body.seq)
    if cmd is None:
        return {"applied": False, "detail": f"command {body.seq} was overtaken by a newer one; ignored"}
    return {"applied": True, "linear": cmd.linear, "angular": cmd.angular}


@router.post("/teleop/hand_back")
async def hand_back(body: ControlBody, _: Role = Depends(controller),
                    ctx: ConsoleContext = Depends(context)) -> dict:
    ctx.backend.hand_back(body.control_id)
    return {"ok": True}


@router.post("/approvals/{request_id}")
async def approve(request_id: str, body: ApprovalBody, _: Role = Depends(controller),
                  ctx: ConsoleContext = Depends(context)) -> JSONResponse:
    if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
        raise HTTPException(422, f"'request_id' must be printable and at most {MAX_REQUEST_ID_CHARS} characters")
    outcome = await ctx.backend.approve(request_id, body.approved, ctx.settings.operator_name)
    if outcome is None:
        raise HTTPException(404, f"no pending approval request {request_id!r} (answered or expired)")
    return _outcome(outcome)


@router.post("/task")
async def start_task(body: TaskBody, _: Role = Depends(controller),
                     ctx: ConsoleContext = Depends(context)) -> JSONResponse:
    instruction = text_field("instruction", body.instruction, ctx.settings.max_text_chars)
    return _outcome(await ctx.backend.start_task(instruction))


@router.post("/task/cancel")
async def cancel_task(_: Role = Depends(controller),
                      ctx: ConsoleContext = Depends(context)) -> JSONResponse:
    return _outcome(await ctx.backend.cancel_task())
