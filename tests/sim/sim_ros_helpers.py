"""Helpers of the simulator's ROS tests: a private ROS domain, service calls; start_node and stop (from
tests/ros_processes.py) to run the nodes as subprocesses."""
from __future__ import annotations

import os
import threading
import time
import weakref

from tests.ros_processes import ended_executors, start_node, stop

__all__ = ["SIM_TEST_DOMAIN", "call", "private_env", "start_node", "stop"]

# A ROS domain of these tests' own, outside the 1..100 that tests/conftest.py draws from: on a shared
# development machine, other test sessions (with their own sims, skills and fake scans) never reach it.
SIM_TEST_DOMAIN = 101 + os.getpid() % 131


def private_env(ros_env: dict) -> dict:
    """The session's ROS environment on SIM_TEST_DOMAIN (use `context.init(domain_id=SIM_TEST_DOMAIN)`)."""
    return {**ros_env, "ROS_DOMAIN_ID": str(SIM_TEST_DOMAIN)}


_clients: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # node -> {service name: client}


def call(node, type_, name: str, request, timeout: float = 60.0):
    """Call a service from a node that an executor spins in another thread.

    One client per (node, service), kept: a response can be lost when a request is sent right
    after wait_for_service() (the request path is matched before the response path), so a new
    client waits a moment after discovery.
    """
    clients = _clients.setdefault(node, {})
    for attempt in range(2):
        client = clients.get(name)
        if client is None:
            client = clients[name] = node.create_client(type_, name)
            assert client.wait_for_service(timeout_sec=20.0), f"service {name} not offered"
            time.sleep(0.5 + attempt)
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if done.wait(timeout / 2):
            return future.result()
        # A response lost on a client whose response path was not matched yet (loaded host): drop the
        # client and ask once more with a fresh one. A motion request that did arrive the first time
        # is then refused as "another motion skill is running", never executed twice.
        # The old client is dropped, not destroyed: destroying it while the executor thread waits on it
        # killed that thread ("InvalidHandle: destruction was requested") and no later call was answered.
        del clients[name]
    raise AssertionError(f"{name} did not answer within {timeout} s{ended_executors()}")
