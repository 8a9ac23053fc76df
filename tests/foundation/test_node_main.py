"""qwen_stack.node_main: a node process's last duty (a zero command, a file closed) runs with the ROS
context still valid, whenever the SIGINT/SIGTERM comes; bad configuration exits 2 with its message.

The child is a real rclpy node (no double). Its timer callback is busy for 0.3 s at a time, so the signal
lands during a callback: with rclpy's own signal handlers the context was shut down at once and the
node's last publish raised "publisher's context is invalid" (the skills node's traceback in CI)."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent("""
    import sys, time
    from qwen_stack.node_main import run_node

    class Bad(Exception):
        pass

    def make():
        import rclpy
        from std_msgs.msg import String
        if "--bad" in sys.argv:
            raise Bad("parameter 'speed' must be positive")
        node = rclpy.create_node("node_main_probe")
        node.pub = node.create_publisher(String, "node_main_probe", 10)
        if "--threads" in sys.argv:    # a stream of short callbacks, some in flight on the pool's threads at the stop
            node.create_subscription(String, "node_main_probe", lambda m: time.sleep(0.05), 10)
            node.create_timer(0.01, lambda: node.pub.publish(String(data="x")))
        else:                          # busy: the signal lands inside a callback
            node.create_timer(0.05, lambda: time.sleep(0.3))
        print("spinning", flush=True)
        return node

    def on_stop(node):
        from std_msgs.msg import String
        node.pub.publish(String(data="stop"))                 # raises if the context is already invalid
        print("last message published", flush=True)

    if "--threads" in sys.argv:        # no last duty: the executor's shutdown follows the spin at once
        sys.exit(run_node("probe", make, argv=[], threads=4))
    sys.exit(run_node("probe", make, argv=[], config_errors=(Bad,), on_stop=on_stop))
""")


def _start(ros_env, *args):
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], env=ros_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_last_duty_runs_with_a_valid_context(ros_env, sig):
    for _ in range(3):     # three stops, each at a different point of the busy callback
        p = _start(ros_env)
        try:
            assert p.stdout.readline().strip() == "spinning"
            time.sleep(0.45)
            p.send_signal(sig)
            out, err = p.communicate(timeout=20)
        finally:
            p.kill()
        assert p.returncode == 0, err
        assert "last message published" in out, err
        assert "Traceback" not in err, err


def test_callbacks_in_flight_on_a_multithreaded_executor_end_cleanly(ros_env):
    """rclpy's shutdown destroys the guard condition that callbacks signal when they end; callbacks still in
    flight on the pool's threads then each printed "The following exception was never retrieved"."""
    for _ in range(3):
        p = _start(ros_env, "--threads")
        try:
            assert p.stdout.readline().strip() == "spinning"
            time.sleep(1.0)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20)
        finally:
            p.kill()
        assert p.returncode == 0, err
        assert "never retrieved" not in err and "Traceback" not in err, err


def test_bad_configuration_exits_2_with_the_message(ros_env):
    p = _start(ros_env, "--bad")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert "probe: parameter 'speed' must be positive" in err
    assert "Traceback" not in err
