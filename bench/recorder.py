"""Flight recorder cost: MB per minute, recorder CPU share, dropped messages, with the camera at 15 Hz.

Usage (in the stack's ROS environment):
    .venv/bin/python -m qwen_stack.rosenv .venv/bin/python bench/recorder.py [--seconds 60]

Runs sim_node (config/sim.yaml: camera 15 Hz JPEG, laser, odometry, TF) and safety_supervisor (cmd_vel and
verdicts at 20 Hz); a driver in the counter process turns the base slowly (cmd_vel/autonomy, 10 Hz). Then, one
after the other, recorder_node with
  - the shipped settings (camera throttled to 5 Hz), and
  - camera_rate 0 (every frame),
each beside the baseline measured in the same run: a plain counting subscriber (separate process, same topics
and QoS, raw messages, counts only). Dropped = messages the plain subscriber got and the recording lacks
(matched by the publisher's source timestamp, inside the measuring window; the camera throttle's skips are
not drops). CPU share: the process's user+system time over the window, in % of one core.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qwen_stack.paths import config_file  # noqa: E402

TOPICS = ["/camera/image_raw/compressed", "/tf", "/tf_static", "/odom", "/scan", "/cmd_vel", "/cmd_vel/autonomy",
          "/safety/verdict", "/robot_description", "/safety/estop_latched"]
CAMERA = "/camera/image_raw/compressed"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def counter(out: str) -> int:
    """Baseline process: counts every message of TOPICS (source timestamps); drives the base slowly."""
    import rclpy
    from geometry_msgs.msg import Twist
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from qwen_stack.recorder.qos import offer_of, request_for

    rclpy.init()
    node = rclpy.create_node("bench_counter")
    seen: dict[str, list[int]] = {t: [] for t in TOPICS}
    subs = {}
    drive = node.create_publisher(Twist, "cmd_vel/autonomy", 10)
    cmd = Twist()
    cmd.angular.z = 0.3
    node.create_timer(0.1, lambda: drive.publish(cmd))

    def discover():
        for topic, types in node.get_topic_names_and_types():
            if topic in seen and topic not in subs:
                pubs = node.get_publishers_info_by_topic(topic)
                if not pubs:
                    continue
                rel, dur = request_for([offer_of(p.qos_profile) for p in pubs])
                qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE if rel == "reliable"
                                 else ReliabilityPolicy.BEST_EFFORT,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL if dur == "transient_local"
                                 else DurabilityPolicy.VOLATILE)
                pkg, ns, name = types[0].split("/")
                cls = getattr(__import__(f"{pkg}.{ns}", fromlist=[name]), name)
                subs[topic] = node.create_subscription(
                    cls, topic, lambda data, info, t=topic: seen[t].append(info["source_timestamp"]), qos, raw=True)
        if len(subs) == len(seen) - 1 or len(subs) == len(seen):   # estop topic may appear late
            print("counter ready", flush=True)

    node.create_timer(1.0, discover)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        Path(out).write_text(json.dumps(seen))
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def start(cmd, log: Path, env):
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def wait_for(log: Path, texts: list[str], timeout=60.0, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        body = log.read_text()
        if all(t in body for t in texts):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {texts} in {log}:\n{log.read_text()[-2000:]}")


def run_config(tmp: Path, label: str, overrides: dict, seconds: float, env) -> dict:
    from qwen_stack.recorder.reading import read_bag, recording_files

    name = label.split()[0]
    over = tmp / f"{name}.yaml"
    body = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in
                     {"output_dir": str(tmp / "bags"), "recording_name": name, "topics": [t for t in TOPICS if t != CAMERA],
                      **overrides}.items())
    over.write_text(f"/**:\n  ros__parameters:\n{body}\n")
    counts_file = tmp / f"{name}_counter.json"
    cnt = start([sys.executable, __file__, "--counter", str(counts_file)], tmp / f"{name}_counter.log", env)
    rec = start([sys.executable, "-m", "qwen_stack.recorder.node", "--ros-args", "--params-file",
                 str(config_file("recorder.yaml")), "--params-file", str(over)], tmp / f"{name}_rec.log", env)
    wait_for(tmp / f"{name}_rec.log", [f"recording {t} [" for t in TOPICS if t != "/safety/estop_latched"], proc=rec)
    wait_for(tmp / f"{name}_counter.log", ["counter ready"], proc=cnt)
    time.sleep(2.0)
    t0, c0, b0 = time.time_ns(), cpu_seconds(rec.pid), cpu_seconds(cnt.pid)
    time.sleep(seconds)
    t1, c1, b1 = time.time_ns(), cpu_seconds(rec.pid), cpu_seconds(cnt.pid)
    time.sleep(1.5)                                   # messages of the window's end reach both
    rec.send_signal(signal.SIGINT)
    cnt.send_signal(signal.SIGINT)
    rec.wait(timeout=30)
    cnt.wait(timeout=30)
    files = recording_files(tmp / "bags" / name)
    msgs = [m for f in files for m in read_bag(f, decode=False).messages]
    size = sum(f.stat().st_size for f in files)
    span = (max(m.log_time for m in msgs) - min(m.log_time for m in msgs)) * 1e-9
    seen = json.loads(counts_file.read_text())
    window = (t1 - t0) * 1e-9
    rows = {}
    for topic in TOPICS:
        if topic in ("/tf_static", "/robot_description", "/safety/estop_latched"):
            continue                                  # latched, one message each
        got = {m.publish_time for m in msgs if m.topic == topic and t0 <= m.publish_time < t1}
        ref = {s for s in seen.get(topic, []) if t0 <= s < t1}
        throttled = topic == CAMERA and overrides.get("camera_rate", 5.0) != 0   # skips by design, not drops
        rows[topic] = (len(ref), len(got), None if throttled else len(ref - got))
    cam_ref, cam_got, _ = rows[CAMERA]
    return {"label": label, "mb_per_min": size / 2**20 / span * 60, "size_mb": size / 2**20, "span": span,
            "rec_cpu": 100 * (c1 - c0) / window, "base_cpu": 100 * (b1 - b0) / window, "window": window,
            "camera_hz_in": cam_ref / window, "camera_hz_rec": cam_got / window,
            "dropped": sum(d for _, _, d in rows.values() if d is not None),
            "checked": sum(r for r, _, d in rows.values() if d is not None), "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="measuring window per configuration")
    p.add_argument("--counter", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.counter:
        return counter(a.counter)
    from qwen_stack.rosenv import ros_environment

    env = {**os.environ, **ros_environment(domain_id=int(os.environ.get("QWEN_STACK_BENCH_DOMAIN", 91)))}
    tmp = Path(tempfile.mkdtemp(prefix="bench_recorder_"))
    audit = tmp / "audit.jsonl"
    procs = [start([sys.executable, "-m", "qwen_stack.sim.node", "--ros-args", "--params-file",
                    str(config_file("sim.yaml"))], tmp / "sim.log", env),
             start([sys.executable, "-m", "qwen_stack.safety.node", "--ros-args", "--params-file",
                    str(config_file("safety.yaml")), "-p", f"audit_log_path:={audit}"], tmp / "safety.log", env)]
    results = []
    try:
        for label, over in [("shipped (camera 5 Hz)", {}), ("every-frame (camera_rate 0)", {"camera_rate": 0.0})]:
            results.append(run_config(tmp, label, over, a.seconds, env))
    finally:
        for pr in procs:
            pr.send_signal(signal.SIGINT)
        for pr in procs:
            try:
                pr.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pr.kill()
    print(f"\nrecorder_node, {a.seconds:g} s windows, sim camera 15 Hz JPEG + TF/odom/scan/cmd_vel/verdicts "
          f"(logs in {tmp}); baseline: plain counting subscriber, same topics, same run")
    print(f"{'configuration':<28} {'cam in Hz':>9} {'cam rec Hz':>10} {'MB/min':>7} {'rec CPU %':>9} "
          f"{'base CPU %':>10} {'checked':>8} {'dropped':>7}")
    for r in results:
        print(f"{r['label']:<28} {r['camera_hz_in']:>9.1f} {r['camera_hz_rec']:>10.1f} {r['mb_per_min']:>7.2f} "
              f"{r['rec_cpu']:>9.1f} {r['base_cpu']:>10.1f} {r['checked']:>8} {r['dropped']:>7}")
    print("\nper topic (plain subscriber / recorded, in the window):")
    for r in results:
        print("  " + r["label"] + ": " + ", ".join(f"{t} {ref}/{got}" for t, (ref, got, _) in r["rows"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
