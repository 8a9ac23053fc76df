"""`qwen-stack serve` for the agent tests: as a subprocess on a free local port, waited for until it answers;
and an OpenAI-compatible app (with a test double behind it) served in a thread of the test process."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.ros_processes import stop


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


@contextlib.contextmanager
def serving(model: Path, *args: str, env: dict | None = None, log: Path | None = None) -> Iterator[str]:
    """`qwen-stack serve --model <model>` on the CPU and a free port, with `args`, for the duration of the block:
    yields its base URL (`http://127.0.0.1:<port>/v1`) once /health answers. Output into the file `log`, or a
    pipe (shown if it exits before answering)."""
    port = free_port()
    cmd = [sys.executable, "-m", "qwen_stack.qwen_node.engine.serve", "--model", str(model), "--port", str(port),
           "--device", "cpu", *args]
    if log is None:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    else:
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@contextlib.contextmanager
def app_in_thread(app) -> Iterator[str]:
    """The ASGI `app` served by uvicorn in a thread of this process on a free port: yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        t.join(5)
