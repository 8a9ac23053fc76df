"""E-stop latency through the console: click in the browser -> zero command on the base topic (cmd_vel).

    .venv/bin/python bench/console_estop_latency.py [--presses 20]
        [--supervisor double|real]

For each press the robot is first made to move (a nonzero command on cmd_vel/autonomy at 20 Hz,
which the supervisor forwards to cmd_vel), then the E-stop button of the page (Debian's Chromium,
headless, driven by Playwright) is clicked; the latency is from the click event's timestamp in the
page (performance.timeOrigin + event.timeStamp) to the arrival of the first zero Twist on cmd_vel
in this process (same machine, same wall clock). The e-stop is reset through the console's API
between presses. Baseline, measured in the same run: publishing True on safety/estop directly
from a ROS node (no browser, no HTTP, no console) -> zero on cmd_vel.

--supervisor double: tests/console/ros_doubles.SupervisorDouble (zero sent at once on latch);
--supervisor real:   the stack's safety_supervisor (python -m qwen_stack.safety.node, config/safety.yaml).
Prints a table; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import rclpy  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from qwen_stack import topics  # noqa: E402
from qwen_stack.paths import config_file  # noqa: E402
from qwen_stack.rosenv import ros_environment  # noqa: E402
from tests.console.browser import chromium  # noqa: E402
from tests.console.console_process import console_node  # noqa: E402

TOKEN = "bench-controller-token-0123456789abcdef"
CLICK_LISTENER = """() => {
  window.__estopClicks = [];
  document.getElementById('estop').addEventListener('click',
    (ev) => window.__estopClicks.push(performance.timeOrigin + ev.timeStamp), {capture: true});
}"""


class BaseWatcher:
    """Drives cmd_vel/autonomy and timestamps what arrives on cmd_vel."""

    def __init__(self, node) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.received: list[tuple[float, float]] = []   # (wall time, linear.x)
        self.drive = False
        self.direction = 1.0   # flipped after every press so the robot stays near its start
        self.pub_auto = node.create_publisher(Twist, topics.AUTONOMY_CMD_VEL, 10)
        self.pub_estop = node.create_publisher(Bool, topics.SAFETY_ESTOP_TOPIC, 10)
        node.create_subscription(Twist, topics.BASE_CMD_VEL, self._on_cmd, 50)
        node.create_timer(0.05, self._tick)

    def _on_cmd(self, msg: Twist) -> None:
        with self.lock:
            self.received.append((time.time(), msg.linear.x))

    def _tick(self) -> None:
        msg = Twist()   # zero while not driving: the supervisor re-arms a source only after a stop command
        msg.linear.x = self.direction * 0.15 if self.drive else 0.0
        self.pub_auto.publish(msg)

    def wait_moving(self, timeout: float = 5.0) -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            with self.lock:
                if any(t > t0 and lin != 0 for t, lin in self.received):
                    return
            time.sleep(0.01)
        raise RuntimeError("the base never got a nonzero command (is the supervisor running and reset?)")

    def first_zero_after(self, t_click: float, timeout: float = 5.0) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for t, lin in self.received:
                    if t >= t_click and lin == 0.0:
                        return t
            time.sleep(0.001)
        raise RuntimeError("no zero command on cmd_vel after the e-stop")


def _start_supervisor(kind: str, env: dict, tmp: Path):
    """The supervisor double in this process, or the real one (with the simulator for its scan and odometry)."""
    if kind == "double":
        from tests.console.ros_doubles import SupervisorDouble

        return SupervisorDouble(), []
    overrides = tmp / "safety_bench.yaml"
    overrides.write_text("/**:\n  ros__parameters:\n    audit_log_path: ''\n")
    procs = []
    for module, files in (("qwen_stack.sim.node", [config_file("sim.yaml")]),
                          ("qwen_stack.safety.node", [config_file("safety.yaml"), overrides])):
        args = [sys.executable, "-m", module, "--ros-args"]
        for f in files:
            args += ["--params-file", str(f)]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return None, procs


def _reset(client: httpx.Client, watcher: BaseWatcher) -> None:
    watcher.drive = False
    deadline = time.time() + 30
    while time.time() < deadline:
        r = client.post("/api/estop/reset", json={"reason": "latency bench"},
                        headers={"Authorization": f"Bearer {TOKEN}"})
        if r.status_code == 200 and (r.json()["ok"] or "not latched" in r.json()["message"]):
            time.sleep(0.15)   # a few zero commands re-arm the autonomy source
            watcher.direction = -watcher.direction
            watcher.drive = True
            return
        time.sleep(0.2)
    raise RuntimeError(f"reset failed: {r.status_code} {r.text}")


def _summary(name: str, values_ms: list[float]) -> str:
    v = sorted(values_ms)
    p99 = v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]
    return f"| {name:<46} | {len(v):>3} | {statistics.median(v):8.2f} | {p99:8.2f} | {v[0]:8.2f} | {v[-1]:8.2f} |"


def _reexec_in_ros_environment() -> None:
    """The interface package's libraries are found through LD_LIBRARY_PATH, read at process start only."""
    if not os.environ.get("_QWEN_STACK_BENCH_REEXEC"):
        env = ros_environment()
        env["_QWEN_STACK_BENCH_REEXEC"] = "1"
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def main(argv: list[str] | None = None) -> int:
    _reexec_in_ros_environment()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=20)
    ap.add_argument("--supervisor", choices=("double", "real"), default="double")
    args = ap.parse_args(argv)

    # A domain of its own unless one is given, so that tests running meanwhile do not cross-talk.
    domain = int(os.environ.get("ROS_DOMAIN_ID") or random.Random(os.getpid()).randint(150, 230))
    env = ros_environment(domain_id=domain)
    os.environ.update(env)
    rclpy.init()
    node = rclpy.create_node("console_estop_bench")
    watcher = BaseWatcher(node)
    tmpdir = tempfile.TemporaryDirectory()
    supervisor, procs = _start_supervisor(args.supervisor, env, Path(tmpdir.name))
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    if supervisor is not None:
        executor.add_node(supervisor)
    threading.Thread(target=executor.spin, daemon=True).start()
    baseline: list[float] = []
    console: list[float] = []
    try:
        with console_node(env, Path(tmpdir.name), TOKEN) as (url, _log, _proc), \
                httpx.Client(base_url=url, timeout=10) as client, chromium() as browser:
            page = browser.new_page()
            page.goto(f"{url}/#token={TOKEN}")
            page.get_by_text("Connected as controller").wait_for()
            page.evaluate(CLICK_LISTENER)
            button = page.get_by_role("button", name="E-STOP", exact=True)
            _reset(client, watcher)
            for i in range(args.presses):                       # baseline: direct ROS publish
                watcher.wait_moving()
                t0 = time.time()
                watcher.pub_estop.publish(Bool(data=True))
                baseline.append((watcher.first_zero_after(t0) - t0) * 1e3)
                _reset(client, watcher)
            for i in range(args.presses):                       # through the browser and the console
                watcher.wait_moving()
                button.click()
                page.wait_for_function(f"window.__estopClicks.length > {i}")
                t_click = page.evaluate(f"window.__estopClicks[{i}]") / 1e3
                console.append((watcher.first_zero_after(t_click) - t_click) * 1e3)
                _reset(client, watcher)
            watcher.drive = False
    finally:
        executor.shutdown(timeout_sec=1)
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        rclpy.try_shutdown()
        tmpdir.cleanup()

    print(f"\nE-stop latency to the first zero Twist on {topics.BASE_CMD_VEL} (supervisor: {args.supervisor}), ms")
    print(f"| {'path':<46} | {'n':>3} | {'p50':>8} | {'p99':>8} | {'min':>8} | {'max':>8} |")
    print(f"|{'-' * 48}|{'-' * 5}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    print(_summary("baseline: ROS publish on safety/estop", baseline))
    print(_summary("console: click E-STOP in Chromium", console))
    return 0


if __name__ == "__main__":
    sys.exit(main())
