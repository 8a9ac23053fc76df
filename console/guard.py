"""RequestGuard: the console's HTTP front door, a plain ASGI middleware that decides on headers alone.

Order, each step before any byte of a body is read:
  Host (400, localhost only: DNS rebinding) -> for /api/: Origin (403) and credentials (401/403)
  -> declared body size (413) -> JSON content type for /api/ bodies (415) -> the body, read up to
  max_body_bytes (413 past it, for bodies without a Content-Length) within BODY_TIMEOUT_S (408) -> the app.
A refused request with a body unread is answered with `Connection: close`, so the server drops the
connection instead of receiving (and discarding) the rest: a 300 MB upload costs the header parse.
Security headers are added to every HTTP response here.
"""
from __future__ import annotations

import asyncio
import json

from qwen_stack.console.access import Credentials, Refusal, authorize

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
BODY_TIMEOUT_S = 5.0   # a body this console accepts (16 KB by default) takes milliseconds; a trickle is refused
SECURITY_HEADERS = [
    # No framing (a framed E-stop or Approve button could be clicked by a hidden page), own scripts only.
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


def host_name(host_header: str) -> str:
    """The host of a Host header without its port ("[::1]:8080" -> "::1")."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _headers(scope) -> dict[str, str]:
    """Header name -> value; a header sent twice keeps both values joined, so it cannot pass as either one."""
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def check_headers(method: str, path: str, headers: dict[str, str], *, loopback: bool, credentials: Credentials,
                  origins: set[str], max_body_bytes: int) -> Refusal | None:
    """The refusal for a request's line and headers, or None to go on (pure)."""
    if loopback and host_name(headers.get("host", "")) not in LOOPBACK_NAMES:
        return Refusal(400, "invalid host header")
    if path.startswith("/api/"):
        role = authorize(method, headers.get("origin"), headers.get("authorization"), credentials, origins)
        if isinstance(role, Refusal):
            return role
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():   # also refuses two differing lengths (joined with ", ")
            return Refusal(400, "invalid Content-Length")
        if int(length) > max_body_bytes:
            return Refusal(413, f"request body of {int(length)} bytes is larger than max_body_bytes "
                                f"({max_body_bytes})")
    if path.startswith("/api/") and has_body(headers):
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            return Refusal(415, "request bodies must be JSON (Content-Type: application/json)")
    return None


def has_body(headers: dict[str, str]) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


class RequestGuard:
    def __init__(self, app, *, loopback: bool, credentials: Credentials, origins: set[str],
                 max_body_bytes: int) -> None:
        self.app, self.loopback, self.credentials = app, loopback, credentials
        self.origins, self.max_body_bytes = origins, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":   # WebSockets check Host, Origin and the token in their hello
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = check_headers(scope["method"], scope["path"], headers, loopback=self.loopback,
                                credentials=self.credentials, origins=self.origins,
                                max_body_bytes=self.max_body_bytes)
        body_unread = has_body(headers)
        if refusal is None and body_unread:
            try:
                body = await asyncio.wait_for(self._read_body(receive), BODY_TIMEOUT_S)
            except asyncio.TimeoutError:
                body, refusal = None, Refusal(408, f"request body not received within {BODY_TIMEOUT_S:g} s")
            if body is None:
                refusal = refusal or Refusal(413, f"request body is larger than max_body_bytes ({self.max_body_bytes})")
            else:
                body_unread = False
                receive = _replay(body, receive)
        if refusal is not None:
            await _refuse(send, refusal, close=body_unread)
            return
        await self.app(scope, receive, _with_security_headers(send))

    async def _read_body(self, receive) -> bytes | None:
        """The body if it fits in max_body_bytes, else None (not one chunk more is read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":   # the client went away
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()   # then what the server says next (a disconnect)
    return replay


def _with_security_headers(send):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)
    return wrapped


async def _refuse(send, refusal: Refusal, close: bool) -> None:
    body = json.dumps({"detail": refusal.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *SECURITY_HEADERS]
    if refusal.challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    if close:   # h11 then closes the connection after the answer instead of draining the unread body
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
