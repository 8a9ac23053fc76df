"""The pip-world launcher as a user runs it: `qwen-stack launch ...`."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from qwen_stack.stack_config import load_stack

pytestmark = pytest.mark.ros


def _launch(ros_env, *args):
    return subprocess.Popen([sys.executable, "-m", "qwen_stack.cli", "launch", *args], env=ros_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_required_node_death_stops_stack_naming_it(ros_env):
    proc = _launch(ros_env, "--profile", "camera", "camera.source:=/no/such/dir/")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "required node 'camera' died" in out and "/no/such/dir/" in out


def test_bad_override_is_refused_before_start(ros_env):
    proc = _launch(ros_env, "--profile", "camera", "nosuchnode.fps:=3")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "unknown node 'nosuchnode'" in out


@pytest.mark.parametrize("override, message", [
    ("console.port:=abc", "console.port:=abc: expected an integer"),
    ("console.prot:=9000", "console.prot: console_node has no parameter 'prot' (did you mean 'port'?)"),
    ("qwen_node.bakend:=local", "qwen_node.bakend: qwen_node has no parameter 'bakend' (did you mean 'backend'?)"),
])
def test_bad_parameter_is_one_line_exit_2_and_nothing_starts(ros_env, override, message):
    proc = _launch(ros_env, "--profile", "sim", override)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert out.strip() == f"qwen-stack launch: {message}"   # one line: no traceback, no node started


def test_console_port_in_use_stops_the_stack_naming_port_and_parameter(ros_env):
    """Someone else answers on the console's port: the stack must not run on (the user would open
    the other program's page); the console is required in config/stack.yaml."""
    assert load_stack("stack.yaml").nodes["console"].required
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = _launch(ros_env, "--profile", "sim", f"console.port:={port}")
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in out
    assert "console parameter 'port' (console.port:=PORT" in out
    assert "required node 'console' died" in out and "stack stopped (exit code 1)" in out


def test_two_namespaced_stacks_coexist_and_ctrl_c_stops_them(ros_env):
    stacks = [_launch(ros_env, "--profile", "camera", "--namespace", ns, "--status-period", "1",
                      "camera.width:=64", "camera.height:=48", "camera.fps:=5.0") for ns in ("robot1", "robot2")]
    rclpy.init()
    node = rclpy.create_node("launcher_test_observer")
    try:
        wanted = {"/robot1/camera/image_raw", "/robot2/camera/image_raw"}
        deadline = time.time() + 30
        names = set()
        while time.time() < deadline and not wanted <= names:
            names = {n for n, _ in node.get_topic_names_and_types()}
            time.sleep(0.2)
        assert wanted <= names, names
        assert node.count_publishers("/robot1/camera/image_raw") == 1
    finally:
        node.destroy_node()
        rclpy.shutdown()
    for proc in stacks:
        for _ in range(5):  # an impatient user presses Ctrl-C several times; each lands in a new place
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            time.sleep(0.01)
    for proc in stacks:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stack stopped (exit code 0)" in out and "running pid" in out


@pytest.mark.slow
def test_each_running_node_declares_exactly_the_parameters_the_launcher_checks_against(ros_env):
    """The launcher's schema (qwen_stack/parameter_schema.py) against the nodes themselves: every node
    of the sim profile (nodes added later included) is started and asked for its parameter names."""
    from rcl_interfaces.srv import ListParameters

    from qwen_stack.parameter_schema import ROS_OWN_PARAMETERS, ROS_OWN_PREFIXES

    stack = load_stack("stack.yaml")
    specs = stack.select("sim")
    # replay: the schema is the point, not the minute the default model's compiled decode takes to warm up
    proc = _launch(ros_env, "--profile", "sim", "--duration", "300", "console.port:=0", "qwen_node.backend:=replay")
    rclpy.init()
    node = rclpy.create_node("launcher_test_param_lister")
    try:
        for spec in specs:
            client = node.create_client(ListParameters, f"{spec.fully_qualified_name}/list_parameters")
            assert client.wait_for_service(timeout_sec=120), f"{spec.name} never offered list_parameters"
            fut = client.call_async(ListParameters.Request(depth=0))
            rclpy.spin_until_future_complete(node, fut, timeout_sec=30)
            assert fut.done(), spec.name
            names = {n for n in fut.result().result.names
                     if n not in ROS_OWN_PARAMETERS and not n.startswith(ROS_OWN_PREFIXES)}
            assert names == set(spec.schema.defaults), (spec.name, names ^ set(spec.schema.defaults))
    finally:
        node.destroy_node()
        rclpy.shutdown()
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert "died" not in out, out[-3000:]
