"""Entities destroyed at run time: each call site is listed here with why it is safe (tests/ros_processes.py has the
rule). Destroying an entity of a node that another thread spins kills that thread in rclpy; in CI that left a
module's fixture executor dead, and every later service call of the module went unanswered. (Seen here with a
MultiThreadedExecutor spinning in one thread while another created and destroyed publishers: the spinning thread
ended with InvalidHandle after 19 tries.)"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path


DESTROY = re.compile(r"\.destroy_(publisher|subscription|client|service|timer|guard_condition|rate)\(|"
                     r"\b\w*(client|server|publisher|subscription|sub|pub|timer)\.destroy\(\)")

# (path, number of call sites): why no other thread spins the node at that moment
ALLOWED = {
    ("safety/supervisor_node.py", 2): "lifecycle on_deactivate runs on the node's SingleThreadedExecutor, in the "
                                      "thread that spins it",
    ("tests/safety/test_node.py", 1): "the rogue publisher's node is spun by no executor",
    ("tests/foundation/test_interfaces.py", 1): "the client node is spun in the test's own thread",
    ("bench/camera_stream.py", 1): "the node is spun with spin_once in the same thread",
}
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SKIP_PARTS = {".venv", "ros_ws", "node_modules", ".git", "__pycache__", "runs"}


def _sites() -> Counter:
    found: Counter = Counter()
    for path in PROJECT_ROOT.rglob("*.py"):
        rel = path.relative_to(PROJECT_ROOT)
        if SKIP_PARTS & set(rel.parts) or path.name == "test_entity_lifetime.py":
            continue
        n = len(DESTROY.findall(path.read_text(errors="replace")))
        if n:
            found[rel.as_posix()] = n
    return found


def test_every_run_time_destruction_is_listed_with_its_reason():
    listed = {path: n for path, n in ALLOWED}
    assert dict(_sites()) == listed, ("an entity is destroyed at run time where it was not before: make sure no "
                                      "other thread spins its node (tests/ros_processes.py), then list it here")



def test_a_dead_test_executor_is_named_by_the_call_helpers(monkeypatch):
    from tests.ros_processes import SpinThread, ended_executors

    class DyingExecutor:   # TEST DOUBLE of an rclpy executor whose spin() ends with rclpy's error
        def spin(self):
            raise RuntimeError("cannot use Destroyable because destruction was requested")

    monkeypatch.setattr(SpinThread, "ended", [])
    assert ended_executors() == ""
    thread = SpinThread(DyingExecutor(), name="fixture executor")
    monkeypatch.setattr(thread, "_invoke_excepthook", lambda *_: None, raising=False)   # keep the log quiet
    thread.start()
    thread.join(5)
    assert "fixture executor" in ended_executors() and "destruction was requested" in ended_executors()
