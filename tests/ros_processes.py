"""ROS nodes as subprocesses for the tests: start one (`python -m <module> --ros-args ...`), write its
parameter overrides, stop it (a signal, time to exit, then SIGKILL), or run a group of them with their logs;
and call their services from the test process.

A rule for every ROS test: never destroy an entity (publisher, subscription, client, service, timer, action
client) of a node that an executor spins in another thread. The executor may be building its wait set from that
node at that moment, and rclpy then raises InvalidHandle ("destruction was requested") in the spinning thread,
which ends it: every later service response and message of that node's executor is lost. Use a node of its own
that no executor spins (a publisher needs no spinning), or leave the entity to the node's teardown after the
executor's shutdown. tests/foundation/test_entity_lifetime.py checks the project's sources for this."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from collections.abc import Iterable, Sequence


def params_file(folder: Path, name: str, values: dict) -> Path:
    """`folder/<name>.yaml`: `values` as ROS parameters for every node (`/**`)."""
    p = folder / f"{name}.yaml"
    body = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in values.items())
    p.write_text(f"/**:\n  ros__parameters:\n{body}\n")
    return p


def ros_args(params_files: Iterable = (), params: Iterable[str] = ()) -> list[str]:
    """`--params-file F` for each file, then `-p NAME:=VALUE` for each assignment (later ones win)."""
    out: list[str] = []
    for f in params_files:
        out += ["--params-file", str(f)]
    for p in params:
        out += ["-p", p]
    return out


def start_node(module: str, args: Sequence[str], env: dict, log: Path | None = None) -> subprocess.Popen:
    """`python -m <module> --ros-args <args>`: its output (stderr too) into the file `log`, or into a text
    pipe (`proc.stdout`) when `log` is None."""
    cmd = [sys.executable, "-m", module, "--ros-args", *args]
    if log is None:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(log, "w") as out:      # the child has its own copy of the file
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_all(procs: Sequence[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 10.0) -> list[int]:
    """Sends `sig` to each running process (last started first), gives each `timeout` seconds to exit, then
    kills it. Returns the exit statuses (negative: the signal that ended the process)."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    return [p.returncode for p in procs]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """stop_all() for one process: its exit status (-9 when it had to be killed)."""
    return stop_all([proc], sig, timeout)[0]


def stop_and_read(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> str:
    """stop() for a process with piped text output that nobody reads meanwhile: returns what it printed
    that was not read yet (read while waiting, so a full pipe cannot hold the process up)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


class NodeGroup:
    """Nodes started by name, each logging to `folder/<name>.log`; checked and stopped together."""

    def __init__(self, folder: Path, env: dict):
        self.folder, self.env = folder, env
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, module: str, params_files: Iterable = (), params: Iterable[str] = ()
              ) -> subprocess.Popen:
        proc = start_node(module, ros_args(params_files, params), self.env, self.folder / f"{name}.log")
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()

    def logs(self, tail: int = 3000) -> str:
        """The end of every node's log, for a failure message."""
        return "\n".join(f"--- {name}.log:\n{self.log(name)[-tail:]}" for name, _ in self.procs)

    def stop(self) -> None:
        stop_all([p for _, p in self.procs])


class SpinThread(threading.Thread):
    """`executor.spin()` in a daemon thread that keeps what ended it. A test's executor thread that dies (see the
    rule above) otherwise shows only as service calls and messages that never arrive; the call helpers name it."""

    ended: list[str] = []          # every SpinThread that ended with an exception, this test session

    def __init__(self, executor, name: str = "test executor"):
        super().__init__(name=name, daemon=True)
        self.executor = executor

    def run(self) -> None:
        try:
            self.executor.spin()
        except BaseException as exc:
            SpinThread.ended.append(f"{self.name}: {exc!r}")
            raise


def ended_executors() -> str:
    """For a failure message: the test executor threads that died, if any."""
    return f" (test executor threads that ended with an error: {SpinThread.ended})" if SpinThread.ended else ""


def call_service(client, request, timeout: float = 10.0):
    """The response to `request` from an rclpy service client whose node an executor spins in another thread;
    fails if the service is not offered, or does not answer, within `timeout` seconds (each)."""
    assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not offered"
    fut = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fut.done(), f"{client.srv_name} did not answer within {timeout} s{ended_executors()}"
    return fut.result()
