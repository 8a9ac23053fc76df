"""Helpers of the simulator's ROS tests: start nodes as subprocesses, call services, stop cleanly."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path


def start_node(module: str, args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`python -m <module> --ros-args <args>` with its output in `log`."""
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *args], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def call(node, type_, name: str, request, timeout: float = 60.0):
    """Call a service from a node that an executor spins in another thread."""
    client = node.create_client(type_, name)
    assert client.wait_for_service(timeout_sec=20.0), f"service {name} not offered"
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _f: done.set())
    assert done.wait(timeout), f"{name} did not answer within {timeout} s"
    return future.result()
