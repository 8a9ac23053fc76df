"""Real-time factor of the embedded MuJoCo simulator with its sensors on.

Two measurements, each printed as a table with its baseline measured in the same run:

1. Unpaced core (no ROS): the work sim_node does per sim second, as fast as one thread can go:
   physics, camera render + JPEG + Image message, laser + LaserScan message, odometry.
   RTF = sim seconds / wall seconds (the most the node could run at).
   Baselines: physics only, and rendering with MuJoCo's default quality (shadows, 4x MSAA).
2. sim_node as shipped (ROS, paced to real time): RTF from /clock over a wall-clock window, and
   the node's CPU use (one core = 100%), i.e. the headroom left. Skipped with --no-ros.

    MUJOCO_GL=egl python bench/sim_rate.py [--seconds 10] [--no-ros]
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from qwen_stack.sim import ros_messages as rm  # noqa: E402
from qwen_stack.sim.scenario import load_layout  # noqa: E402
from qwen_stack.sim.simulator import Simulator  # noqa: E402
from qwen_stack.sim.stepping import SensorSchedule  # noqa: E402

CASES = [  # name, camera (w, h, Hz) or None, laser Hz or None, fast_render
    ("physics only (baseline)", None, None, True),
    ("camera 320x240@15 + laser 10 Hz (default)", (320, 240, 15.0), 10.0, True),
    ("camera 640x480@30 + laser 10 Hz", (640, 480, 30.0), 10.0, True),
    ("camera 320x240@15 + laser, MuJoCo default quality (baseline)", (320, 240, 15.0), 10.0, False),
]


def unpaced(camera, laser_hz, fast_render: bool, seconds: float) -> tuple[float, float]:
    """(RTF, ms of wall time per camera frame incl. JPEG and message) of the sim_node work, unpaced."""
    sim = Simulator(load_layout("fetch_red_cube"), fast_render=fast_render)
    rates = {"odom": 30.0}
    if camera:
        rates["camera"] = camera[2]
    if laser_hz:
        rates["laser"] = laser_hz
    schedule = SensorSchedule(rates)
    if camera:
        sim.render_camera(camera[0], camera[1])  # GL context set-up is not part of the rate
    cam_time, frames = 0.0, 0
    t0 = time.perf_counter()
    while sim.time < seconds:
        sim.set_cmd_vel(0.3, 0.4)  # keep moving so that every frame differs
        steps = max(1, round((schedule.next_due() - sim.time) / sim.timestep))
        sim.step(steps)
        due = schedule.pop_due(sim.time)
        if "camera" in due:
            c0 = time.perf_counter()
            rgb = sim.render_camera(camera[0], camera[1])
            rm.image(rgb, sim.time, "camera_optical_frame")
            rm.compressed_image(rgb, sim.time, "camera_optical_frame", 80)
            cam_time += time.perf_counter() - c0
            frames += 1
        if "laser" in due:
            rm.laser_scan(sim.laser_scan(), sim.laser, sim.time, "laser", laser_hz)
        if "odom" in due:
            rm.odometry(sim.odometry(), sim.time, "odom", "base_link")
    wall = time.perf_counter() - t0
    sim.close()
    return sim.time / wall, (1000 * cam_time / frames if frames else float("nan"))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def paced_node(params: list[str], seconds: float) -> tuple[float, float, int]:
    """(RTF from /clock, CPU % of one core, images received) of sim_node over `seconds` of wall time."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from qwen_stack.paths import config_file
    from qwen_stack.rosenv import ros_environment

    # This process and the node on one domain of their own (tests use 1..100).
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(101, 200)))
    env = ros_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    cmd = [sys.executable, "-m", "qwen_stack.sim.node", "--ros-args", "--params-file", str(config_file("sim.yaml"))]
    for p in params:
        cmd += ["-p", p]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    context.init()
    node = Node("sim_rate_bench", context=context)
    clock, images, lock = [None], [0], threading.Lock()

    def on_clock(msg):
        with lock:
            clock[0] = msg.clock.sec + msg.clock.nanosec * 1e-9

    def on_image(_msg):
        with lock:
            images[0] += 1

    node.create_subscription(Clock, "/clock", on_clock, 10)
    node.create_subscription(Image, "camera/image_raw", on_image, qos_profile_sensor_data)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        end = time.monotonic() + 30
        while clock[0] is None and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(2.0)  # warm-up (GL context, discovery)
        with lock:
            s0, i0 = clock[0], images[0]
        w0, c0 = time.monotonic(), _cpu_seconds(proc.pid)
        time.sleep(seconds)
        with lock:
            s1, i1 = clock[0], images[0]
        w1, c1 = time.monotonic(), _cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    if s0 is None or s1 is None:
        return float("nan"), float("nan"), 0
    return (s1 - s0) / (w1 - w0), 100 * (c1 - c0) / (w1 - w0), i1 - i0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="sim seconds (unpaced) / wall seconds (node)")
    ap.add_argument("--no-ros", action="store_true", help="skip the paced sim_node measurement")
    args = ap.parse_args(argv)
    print(f"cores: {os.cpu_count()}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, {args.seconds:g} s per case\n")
    print("1. unpaced simulator core (what sim_node does per sim second, one thread)")
    print(f"| {'case':<62} | {'max RTF':>8} | {'ms/frame':>8} |")
    print(f"|{'-' * 64}|{'-' * 10}|{'-' * 10}|")
    for name, camera, laser, fast in CASES:
        rtf, ms = unpaced(camera, laser, fast, args.seconds)
        print(f"| {name:<62} | {rtf:8.1f} | {ms:8.2f} |", flush=True)
    if args.no_ros:
        return 0
    print("\n2. sim_node over ROS, paced to real time (target RTF 1.0)")
    print(f"| {'case':<62} | {'RTF':>6} | {'CPU %':>6} | {'images/s':>8} |")
    print(f"|{'-' * 64}|{'-' * 8}|{'-' * 8}|{'-' * 10}|")
    for name, params in (
        ("no camera, laser 10 Hz (baseline)", ["publish_raw_image:=false", "publish_compressed_image:=false",
                                                "camera_rate:=0.5", "camera_width:=16", "camera_height:=16"]),
        ("camera 320x240@15 + laser 10 Hz (default)", []),
        ("camera 640x480@30 + laser 10 Hz", ["camera_width:=640", "camera_height:=480", "camera_rate:=30.0"]),
    ):
        rtf, cpu, n = paced_node(params, args.seconds)
        print(f"| {name:<62} | {rtf:6.3f} | {cpu:6.1f} | {n / args.seconds:8.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
