"""Who may view and who may control: credentials, roles, the bind rule and the origin rule.

Pure (no web framework, no ROS). Two roles:
- viewer: sees everything, controls nothing;
- controller: may also press E-stop, reset it, take over, approve, start and cancel tasks.

Credentials are bearer tokens. The controller token comes from QWEN_STACK_CONSOLE_TOKEN or
from a token file, created with mode 0600 at first start (there is no default secret). The
viewer token (QWEN_STACK_CONSOLE_VIEWER_TOKEN or a file that exists) is required to view when
the server is bound beyond localhost; on localhost viewing is open to this machine.
"""
from __future__ import annotations

import enum
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from qwen_stack.console.config import ConsoleSettings

CONTROLLER_TOKEN_ENV = "QWEN_STACK_CONSOLE_TOKEN"
VIEWER_TOKEN_ENV = "QWEN_STACK_CONSOLE_VIEWER_TOKEN"
MIN_TOKEN_CHARS = 16


class AccessConfigError(RuntimeError):
    """The credentials or the bind address cannot be used safely; the message says which and why."""


class Role(enum.IntEnum):
    ANONYMOUS = 0
    VIEWER = 1
    CONTROLLER = 2


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "qwen_stack" / "console_token"


@dataclass(frozen=True)
class Credentials:
    controller_token: str
    viewer_token: str | None
    controller_source: str      # where the controller token came from (env var name or file path), for the log
    viewer_source: str | None
    open_viewing: bool          # True on localhost: anyone on this machine may view without a token

    def role_of(self, token: str | None) -> Role:
        """Role of a presented token (constant-time comparisons); ANONYMOUS for none or a wrong one."""
        if not token:
            return Role.VIEWER if self.open_viewing else Role.ANONYMOUS
        if hmac.compare_digest(token.encode(), self.controller_token.encode()):
            return Role.CONTROLLER
        if self.viewer_token is not None and hmac.compare_digest(token.encode(), self.viewer_token.encode()):
            return Role.VIEWER
        return Role.ANONYMOUS


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise AccessConfigError(f"{where}: the token is shorter than {MIN_TOKEN_CHARS} characters")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise AccessConfigError(f"{where}: the token contains whitespace or unprintable characters")
    return token


def _read_token_file(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AccessConfigError(
            f"token file {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}")
    return _check_token(path.read_text(), f"token file {path}")


def _create_token_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    # O_EXCL: never overwrite a file somebody else just wrote; mode 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def load_credentials(settings: ConsoleSettings, environ: dict | None = None) -> tuple[Credentials, bool]:
    """Credentials for `settings`, and whether the controller token file was created now.

    Raises AccessConfigError when the server would be reachable beyond this machine without
    both a controller and a viewer credential configured beforehand, or a token is unusable.
    """
    env = os.environ if environ is None else environ
    created = False
    token_file = Path(settings.token_file).expanduser() if settings.token_file else default_token_file()

    if env.get(CONTROLLER_TOKEN_ENV):
        controller = _check_token(env[CONTROLLER_TOKEN_ENV], CONTROLLER_TOKEN_ENV)
        controller_source = CONTROLLER_TOKEN_ENV
    elif token_file.exists():
        controller = _read_token_file(token_file)
        controller_source = str(token_file)
    elif settings.loopback:
        controller = _create_token_file(token_file)
        controller_source, created = str(token_file), True
    else:
        raise AccessConfigError(
            f"refusing to bind to {settings.host!r} (beyond localhost) without a control credential: "
            f"set {CONTROLLER_TOKEN_ENV} or create the file named by parameter 'token_file' "
            f"({token_file}) with mode 0600")

    viewer: str | None = None
    viewer_source: str | None = None
    if env.get(VIEWER_TOKEN_ENV):
        viewer, viewer_source = _check_token(env[VIEWER_TOKEN_ENV], VIEWER_TOKEN_ENV), VIEWER_TOKEN_ENV
    elif settings.viewer_token_file:
        path = Path(settings.viewer_token_file).expanduser()
        if path.exists():
            viewer, viewer_source = _read_token_file(path), str(path)
        elif not settings.loopback:
            raise AccessConfigError(f"console parameter 'viewer_token_file' = {str(path)!r}: file does not exist")
    if viewer is None and not settings.loopback:
        raise AccessConfigError(
            f"refusing to bind to {settings.host!r} (beyond localhost) without a viewer credential: "
            f"set {VIEWER_TOKEN_ENV} or parameter 'viewer_token_file'")
    if viewer is not None and hmac.compare_digest(viewer.encode(), controller.encode()):
        raise AccessConfigError("the viewer token equals the controller token; they must differ")
    return Credentials(controller, viewer, controller_source, viewer_source, open_viewing=settings.loopback), created


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, as the HTTP answer to give (before its body is read)."""
    status: int
    detail: str
    challenge: bool = False   # 401: answer with `WWW-Authenticate: Bearer`


def role_needed(method: str) -> Role:
    """Reading (GET, HEAD) needs a viewer; everything else controls the robot."""
    return Role.VIEWER if method in ("GET", "HEAD") else Role.CONTROLLER


def authorize(method: str, origin: str | None, authorization: str | None, credentials: Credentials,
              allowed_origins: set[str]) -> Role | Refusal:
    """The role of an API request from its headers alone (so that nothing of a refused request is read):
    a foreign Origin is 403 whatever the token; then 401 without a credential the request needs (no token,
    a wrong token, or open viewing without a token for a control request); 403 for a viewer that controls."""
    if not origin_allowed(origin, allowed_origins):
        return Refusal(403, "foreign origin")
    token = bearer_token(authorization)
    role = credentials.role_of(token)
    needed = role_needed(method)
    if needed == Role.CONTROLLER:
        if role == Role.ANONYMOUS or token is None:
            return Refusal(401, "the controller token is needed", challenge=True)
        if role < Role.CONTROLLER:
            return Refusal(403, "a viewer may not control")
    elif role < Role.VIEWER:
        return Refusal(401, "a viewer or controller token is needed", challenge=True)
    return role


def origin_allowed(origin: str | None, allowed: set[str]) -> bool:
    """Browsers always send Origin on WebSockets and cross-site POSTs: a foreign one is refused.

    No Origin at all comes from non-browser clients (scripts, tests), which still need a token to control.
    """
    return origin is None or origin in allowed
