"""recorder_node over a live graph: a whole demo mission recorded and read back with the mcap library and the
ROS 2 (CDR) decoders; `kill -9` mid-run; clean close on SIGTERM; bad parameters refused.

The mission runs like tests/agent/test_e2e_sim.py (sim_node, skills, safety_supervisor, qwen_node on the replay
backend, an operator double approving `release`), with recorder_node beside it.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("qwen_stack_interfaces", reason="ros_ws not built (scripts/build_ros_ws.sh)")
pytest.importorskip("mujoco")

from qwen_stack.paths import config_file  # noqa: E402
from qwen_stack.recorder.reading import read_bag, recording_files  # noqa: E402
from qwen_stack.recorder.timeline import format_timeline, mission_timeline  # noqa: E402
from tests.agent.sim_stack import SimStack  # noqa: E402
from tests.ros_processes import SpinThread, params_file, ros_args, start_node, stop, stop_all  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
MISSION = "Find the red cube and bring it to the blue square."


def start_recorder(folder, env, log_name="recorder", **overrides):
    values = {"output_dir": str(folder / "bags"), "recording_name": "rec", **overrides}
    over = params_file(folder, f"{log_name}_over", values)
    return start_node("qwen_stack.recorder.node", ros_args([config_file("recorder.yaml"), over]), env,
                      folder / f"{log_name}.log")


def wait_recording(folder, topics: set, timeout=60.0, log_name="recorder"):
    """Until the recorder has subscribed to `topics` (its log says so)."""
    end = time.time() + timeout
    log = folder / f"{log_name}.log"
    while time.time() < end:
        text = log.read_text()
        if all(f"recording {t} [" in text for t in topics):
            return
        time.sleep(0.2)
    raise AssertionError(f"recorder did not pick up {topics}:\n{log.read_text()[-2000:]}")


def close(proc, sig=signal.SIGINT):
    """Ends a recorder as Ctrl-C (or `sig`) does: its exit status (-9: killed after 20 s without exiting)."""
    return stop(proc, sig, timeout=20)


def test_demo_mission_recorded_every_cmd_vel_after_its_verdict(tmp_path, ros_env, observer):
    """Two recorders: `rec` runs to the end (Ctrl-C), `killed` gets `kill -9` mid-mission."""
    import threading

    stack = SimStack(tmp_path, ros_env, seed=0)
    rec = start_recorder(tmp_path, ros_env)
    victim = start_recorder(tmp_path, ros_env, log_name="killed", recording_name="killed")
    killed = {}

    def kill_mid_mission():
        end = time.time() + 240
        while time.time() < end and len(observer.tool_calls) < 8:   # a few calls in: the robot is busy
            time.sleep(0.05)
        victim.kill()                                            # SIGKILL: no close, no summary
        killed["at"] = time.time_ns()

    try:
        observer.wait_ready(stack)
        for name in ("recorder", "killed"):
            wait_recording(tmp_path, {"/cmd_vel", "/safety/verdict", "/agent/tool_calls", "/agent/status", "/tf",
                                      "/odom", "/scan", "/camera/image_raw/compressed"}, log_name=name)
        threading.Thread(target=kill_mid_mission, daemon=True).start()
        # the mission's own success is tests/agent/test_e2e_sim.py's business; a loaded host can fail it
        # (a skill timing out): what is checked here is that the recording shows what happened
        result, _ = observer.run_task(MISSION, timeout=240)
        time.sleep(1.0)
        assert close(rec) == 0, (tmp_path / "recorder.log").read_text()[-2000:]
    finally:
        stop_all([rec, victim], signal.SIGKILL)
        stack.stop()
    files = recording_files(tmp_path / "bags" / "rec")
    assert len(files) == 1
    bag = read_bag(files[0])
    assert bag.complete, bag.error                               # SIGINT: closed with summary and footer
    ch = bag.channels["/tf_static"]
    assert bag.schemas[ch.schema_id].name == "tf2_msgs/msg/TFMessage" and ch.message_encoding == "cdr"
    assert "durability: transient_local" in ch.metadata["offered_qos_profiles"]
    counts = {t: len(bag.on(t)) for t in bag.channels}
    for t in ("/tf", "/tf_static", "/odom", "/scan", "/camera/image_raw/compressed", "/cmd_vel/autonomy",
              "/robot_description", "/agent/thinking"):
        assert counts.get(t, 0) > 0, (t, counts)

    # every cmd_vel message after the verdict that produced it (publish times: the supervisor's send order)
    verdicts = [m for m in bag.on("/safety/verdict") if not m.data.source.startswith("action:")]
    # from the first verdict on: the recorder subscribes to the topics one by one as it discovers them
    cmds = [m for m in bag.on("/cmd_vel") if m.publish_time >= verdicts[0].publish_time]
    assert len(cmds) > 100
    events = sorted([(m.publish_time, 0, m) for m in verdicts] + [(m.publish_time, 1, m) for m in cmds],
                    key=lambda e: (e[0], e[1]))
    pending, moving = None, 0
    for _, kind, m in events:
        if kind == 0:
            pending = m
            continue
        assert pending is not None, "a cmd_vel message without a verdict before it"
        sent = (pending.data.sent.linear.x, pending.data.sent.angular.z)
        assert sent == (m.data.linear.x, m.data.angular.z), (sent, m.data)
        moving += abs(m.data.linear.x) > 1e-3
        pending = None                                           # one verdict per command
    assert moving > 20                                           # the robot drove: not only zeros compared

    # every actuating tool call: its action verdict and its audit record inside the call's window
    calls = bag.on("/agent/tool_calls")
    audit = [r for r in stack.audit() if r["kind"] == "action"]
    action_verdicts = [m for m in bag.on("/safety/verdict") if m.data.source.startswith("action:")]
    requested = [m for m in calls if m.data.status == "requested" and m.data.actuating]
    finished = [m for m in calls if m.data.status != "requested" and m.data.actuating]
    assert len(requested) == len(finished) >= 1
    for req, done in zip(requested, finished):
        if done.data.status != "succeeded":                      # may have failed before reaching the proxy
            continue
        t0, t1 = req.publish_time, done.publish_time
        assert [v for v in action_verdicts if t0 <= v.publish_time <= t1 and v.data.level_name == "ALLOW"], req.data.name
        assert [r for r in audit if t0 * 1e-9 <= r["wall_time"] <= t1 * 1e-9 and r["accepted"]], req.data.name

    text = format_timeline(mission_timeline(bag.messages))
    print(text)
    assert f"MISSION: {MISSION!r}" in text
    assert ("mission ended: succeeded" in text) == result.success, result.message
    for m in requested:
        assert f" {m.data.name}(" in text
    assert text.count("verdict ALLOW on skills/") >= len([m for m in finished if m.data.status == "succeeded"]) >= 1
    assert text.count("-> ") == len([m for m in calls if m.data.status != "requested"])
    if result.success:                                           # the fetch mission ends with an approved release
        assert "approval requested for skills/release" in text and " go_to_object(" in text and " grasp(" in text
    out = subprocess.run([sys.executable, "-m", "qwen_stack.cli", "bag", "summary", str(tmp_path / "bags" / "rec")],
                         env=ros_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and f"MISSION: {MISSION!r}" in out.stdout, out.stderr

    # the killed recorder's file: readable, and it holds everything the full recording has from the same
    # span, up to about a second before the kill (flush period 1 s + the 0.25 s flush timer + delivery slack)
    assert "at" in killed, "the mission ended before the kill"
    cut = read_bag(recording_files(tmp_path / "bags" / "killed")[0])
    assert not cut.complete and cut.messages
    cutoff = killed["at"] - 1.5e9
    for topic in ("/cmd_vel", "/safety/verdict", "/agent/tool_calls", "/agent/thinking", "/tf", "/odom", "/scan"):
        have = {m.publish_time for m in cut.on(topic)}
        assert have, topic
        ref = {m.publish_time for m in bag.on(topic) if min(have) <= m.publish_time < cutoff}
        # streams must have messages in the span; event topics (a burst of tool calls) may have none there
        assert ref or topic not in ("/cmd_vel", "/tf", "/odom", "/scan"), topic
        assert ref <= have, f"{topic}: {len(ref - have)} of {len(ref)} messages older than 1.5 s missing"
    lost_s = (killed["at"] - max(m.log_time for m in cut.messages)) * 1e-9
    print(f"kill -9 mid-mission: {len(cut.messages)} messages readable; newest {lost_s:.2f} s before the kill")


def test_kill_9_leaves_a_readable_file_missing_at_most_about_a_second(tmp_path, ros_env):
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor

    sim = params_file(tmp_path, "sim_over", {"seed": 0, "real_time_factor": 1.0, "camera_rate": 5.0})
    simp = start_node("qwen_stack.sim.node", ros_args([config_file("sim.yaml"), sim]), ros_env, tmp_path / "sim.log")
    rec = start_recorder(tmp_path, ros_env)
    rclpy.init()
    node = rclpy.create_node("odom_reference")
    seen: list[int] = []   # source timestamps of odometry this process received (the reference)
    node.create_subscription(Odometry, "odom", lambda m, info: seen.append(info["source_timestamp"]), 100)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    SpinThread(ex).start()
    try:
        wait_recording(tmp_path, {"/odom", "/tf", "/scan"})
        time.sleep(6.0)
        assert rec.poll() is None
        rec.kill()                                  # SIGKILL: no close, no summary
        killed_at = time.time_ns()
        rec.wait(timeout=10)
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown()
        stop(rec, signal.SIGKILL)
        stop(simp, timeout=20)
    bag = read_bag(recording_files(tmp_path / "bags" / "rec")[0])
    assert not bag.complete and len(bag.messages) > 50
    recorded = {m.publish_time for m in bag.on("/odom")}
    # reference messages published well before the kill (1 s flush period + the 0.25 s flush timer + slack
    # for delivery on a loaded host): every one of them is in the file
    # from the recorder's first odometry message on: it subscribes once it discovers the publisher, which can
    # be a few messages after this reference node did
    old_enough = [s for s in seen if min(recorded) <= s < killed_at - 1.5e9]
    assert len(old_enough) > 30
    missing = [s for s in old_enough if s not in recorded]
    assert not missing, f"{len(missing)} odometry messages older than 1.5 s lost; last recorded " \
                        f"{(killed_at - max(recorded)) * 1e-9:.2f} s before the kill"
    lost_s = (killed_at - max(m.log_time for m in bag.messages)) * 1e-9
    print(f"kill -9: file readable, {len(bag.messages)} messages; newest recorded {lost_s:.2f} s before the kill")
    assert lost_s < 1.5


def test_sigterm_closes_the_file_and_bad_parameters_exit_2(tmp_path, ros_env):
    rec = start_recorder(tmp_path, ros_env, topics=["/tf_static_none"], camera_topic="", annotated_image_topic="")
    wait_for = time.time() + 30
    while time.time() < wait_for and "recording to" not in (tmp_path / "recorder.log").read_text():
        time.sleep(0.1)
    assert close(rec, signal.SIGTERM) == 0
    bag = read_bag(recording_files(tmp_path / "bags" / "rec")[0])
    assert bag.complete and bag.messages == []

    bad = params_file(tmp_path, "bad", {"camera_rate": -2.0})
    out = subprocess.run([sys.executable, "-m", "qwen_stack.recorder.node", "--ros-args", "--params-file",
                          str(bad)], env=ros_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "'camera_rate'" in out.stderr, out.stderr
    again = subprocess.run([sys.executable, "-m", "qwen_stack.recorder.node", "--ros-args", "-p",
                            f"output_dir:={tmp_path / 'bags'}", "-p", "recording_name:=rec"],
                           env=ros_env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already holds a recording" in again.stderr, again.stderr


def test_record_and_bag_commands(tmp_path, ros_env):
    from qwen_stack.paths import SOURCE_ROOT

    cli = [sys.executable, "-m", "qwen_stack.cli"]
    log = open(tmp_path / "record.log", "w")
    rec = subprocess.Popen([*cli, "record", "--out", str(tmp_path / "bags"), "--name", "cli", "--topics", "/odom_x",
                            "/tf_x", "--no-images"], env=ros_env, stdout=log, stderr=subprocess.STDOUT)
    end = time.time() + 60
    while time.time() < end and "recording to" not in (tmp_path / "record.log").read_text():
        time.sleep(0.1)
    assert close(rec) == 0, (tmp_path / "record.log").read_text()
    text = (tmp_path / "record.log").read_text()
    assert f"recording to {tmp_path / 'bags' / 'cli'} (2 topics; flush" in text, text    # --topics replaced the list
    assert read_bag(tmp_path / "bags" / "cli" / "cli_0.mcap").complete

    inside = subprocess.run([*cli, "record", "--out", str(SOURCE_ROOT / "bags")], env=ros_env, capture_output=True,
                            text=True, timeout=60)
    assert inside.returncode == 2 and "'output_dir'" in inside.stderr and "source checkout" in inside.stderr

    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all")
    junk = subprocess.run([*cli, "bag", "summary", str(tmp_path / "junk.mcap")], env=ros_env, capture_output=True,
                          text=True, timeout=60)
    assert junk.returncode == 2 and "not a readable MCAP file" in junk.stderr, junk.stderr
    empty = subprocess.run([*cli, "bag", "summary", str(tmp_path / "bags" / "cli")], env=ros_env, capture_output=True,
                           text=True, timeout=60)
    assert empty.returncode == 0 and "(no mission events" in empty.stdout, empty.stdout + empty.stderr
