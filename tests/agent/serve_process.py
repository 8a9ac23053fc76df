"""`qwen-stack serve` as a subprocess for the agent tests: a free local port, and waiting until it answers."""
from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until GET /health answers 200; fails if the server exits first (with its output when piped) or never answers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else f"serve exited with {proc.returncode}"
    raise AssertionError(f"qwen-stack serve did not answer /health on port {port} within {timeout} s")
