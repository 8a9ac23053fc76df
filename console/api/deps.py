"""What every route depends on: the console's context (set once on app.state by create_app) and the
caller's role."""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request, WebSocket

from qwen_stack.console.access import Credentials, Refusal, Role, authorize
from qwen_stack.console.backend import ConsoleBackend
from qwen_stack.console.config import ConsoleSettings


@dataclass(frozen=True)
class ConsoleContext:
    settings: ConsoleSettings
    credentials: Credentials
    backend: ConsoleBackend
    origins: set[str]              # allowed Origin headers (settings.allowed_origins(port))


def context(request: Request) -> ConsoleContext:
    return request.app.state.console


def ws_context(ws: WebSocket) -> ConsoleContext:
    return ws.app.state.console


def require_role(request: Request) -> Role:
    """The caller's role; the role needed follows from the method (access.role_needed). RequestGuard refused
    these already, before the body; checked again here so that a route can never be reached without its
    role, whatever wraps the app."""
    ctx = context(request)
    role = authorize(request.method, request.headers.get("origin"), request.headers.get("authorization"),
                     ctx.credentials, ctx.origins)
    if isinstance(role, Refusal):
        raise HTTPException(role.status, role.detail, {"WWW-Authenticate": "Bearer"} if role.challenge else None)
    return role
