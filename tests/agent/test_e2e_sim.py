"""End to end in the simulator: sim_node + skills_node + safety_supervisor + qwen_node (replay backend).

The replay script (config/replay/fetch_red_cube.jsonl) is not a model; it discovers the world through
tools: it looks all round (look_at, rotate, detect_objects) and go_to_object then drives to the positions
perception_node remembers from the camera and the laser (the sim's ground truth is only the test's oracle). The operator's approval of `release` (the policy requires one) is given by the
observer node, an operator double. Seeds: QWEN_STACK_E2E_SEEDS (default "0"; the acceptance run uses
0-9).
"""
from __future__ import annotations

import contextlib
import os
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("qwen_stack_interfaces", reason="ros_ws not built (scripts/build_ros_ws.sh)")
pytest.importorskip("mujoco")

from .serve_process import serving  # noqa: E402
from tests.agent.sim_stack import SimStack, cube_on_square  # noqa: E402
from .test_node_parts import REPLAY_CALLS  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SEEDS = [int(s) for s in os.environ.get("QWEN_STACK_E2E_SEEDS", "0").split(",") if s.strip()]
MISSION = "Find the red cube and bring it to the blue square."


@pytest.mark.parametrize("seed", SEEDS)
def test_fetch_mission_succeeds_and_every_action_is_audited_first(tmp_path, ros_env, observer, seed):
    stack = SimStack(tmp_path, ros_env, seed)
    try:
        observer.wait_ready(stack)
        result, feedback = observer.run_task(MISSION, timeout=240)
        stack.check_alive()
        time.sleep(1.2)  # one more sim/objects message after the release
        ok, where = cube_on_square(observer.objects)
        calls = [m for _, m in observer.tool_calls if m.status != "requested"]   # agent/tool_calls (reliable)
        summary = [(c.name, c.status, c.result_json[:400]) for c in calls]
        if not (result.success and ok and all(c.status == "succeeded" for c in calls)):
            print(f"seed {seed} FAILED: {result.message}\n  {where}\n  " + "\n  ".join(map(str, summary)))
        fb_results = [f.tool_call.name for f in feedback if f.kind == "tool_result"]
        assert result.success, f"{result.message}; calls {summary}"
        assert all(c.status == "succeeded" for c in calls), summary
        assert ok, f"{where}; calls {summary}"
        assert observer.approvals == ["skills/release"]

        # every actuating call: accepted audit record(s) of its service, written before its effect reached the robot
        audit = [r for r in stack.audit() if r["kind"] == "action"]
        assert [c.name for c in calls] == REPLAY_CALLS, summary
        # the action's feedback carried the results in order; under load the last ones (release and
        # describe_state come within a fraction of a second of the result) may trail the result and be
        # dropped by the client (feedback and result are separate channels in ROS actions)
        assert fb_results == [c.name for c in calls][:len(fb_results)] and len(fb_results) >= len(calls) - 2, fb_results
        # windows from the ToolCall stamps (qwen_node's clock at publish: wall time, no sim time)
        stamp = lambda m: m.stamp.sec + m.stamp.nanosec * 1e-9  # noqa: E731
        requested = [(stamp(m), m) for _, m in observer.tool_calls if m.status == "requested" and m.actuating]
        finished = [(stamp(m), m) for _, m in observer.tool_calls if m.status != "requested" and m.actuating]
        service_of = {"go_to_object": "skills/go_to_pose", "grasp": "skills/grasp", "release": "skills/release",
                      "look_at": "skills/look_at", "rotate": "skills/rotate"}
        assert len(requested) == len(finished) == sum(1 for c in calls if c.actuating)
        for (t_req, m), (t_done, _) in zip(requested, finished):
            recs = [r for r in audit if t_req <= r["wall_time"] <= t_done]
            assert recs and all(r["accepted"] and r["source"] == "planner" for r in recs), (m.name, recs)
            assert {r["service"] for r in recs} == {service_of[m.name]}
            if m.name == "look_at":        # pan only: no base motion, no held change to observe
                continue
            if m.name in ("go_to_object", "rotate"):   # its effect: the skill commands motion
                effects = [t for t, v, w in observer.motion if t_req <= t <= t_done and (abs(v) > 1e-3 or abs(w) > 1e-3)]
            else:                           # grasp / release: the held object changes (sim/objects, 2 Hz)
                effects = [t for t, _ in observer.held_changes if t_req <= t <= t_done + 0.6]
            assert effects, f"no observed effect of {m.name}"
            assert min(r["wall_time"] for r in recs) <= min(effects), f"{m.name} acted before its audit record"
        assert len(audit) >= 4 and all(r["accepted"] for r in audit)
        print(f"seed {seed}: {where}; {len(audit)} audited actions")
    finally:
        stack.stop()


def test_estop_mid_mission_cancels_the_task_and_stops_the_robot(tmp_path, ros_env, observer):
    import yaml

    from qwen_stack.paths import config_file

    stack = SimStack(tmp_path, ros_env, seed=0)
    try:
        observer.wait_ready(stack)
        fired = {}

        def on_feedback(fb):
            # latch the e-stop once the robot is driving towards the cube
            if not fired and fb.kind == "tool_call" and fb.tool_call.name == "go_to_object":
                fired["armed"] = True

        import threading

        def trigger_when_moving():
            end = time.time() + 120
            while time.time() < end:
                sp = observer.speeds(window=0.2)
                moving = bool(sp) and sp[-1][1] > 0.1
                if fired.get("armed") and moving:
                    fired["sim_t"] = sp[-1][0]
                    from std_srvs.srv import Trigger
                    observer.trigger.call_async(Trigger.Request())
                    return
                time.sleep(0.02)

        threading.Thread(target=trigger_when_moving, daemon=True).start()
        result, feedback = observer.run_task(MISSION, timeout=180, on_feedback=on_feedback)
        assert "sim_t" in fired, "the robot never drove: nothing to stop"
        assert not result.success and result.message == "cancelled: e-stop latched"
        time.sleep(2.0)
        # stopped within the watchdog bound, in sim time: the supervisor sends zero at once; the base's own
        # cmd_vel timeout is the backstop
        safety = yaml.safe_load(config_file("safety.yaml").read_text())["/**"]["ros__parameters"]
        sim = yaml.safe_load(config_file("sim.yaml").read_text())["/**/sim"]["ros__parameters"]
        bound = safety["autonomy_timeout"] + sim["cmd_vel_timeout"]
        after = observer.speeds(since_sim_t=fired["sim_t"], window=0.1)
        stopped_at = next((t for t, v in after if v < 0.02), None)
        assert stopped_at is not None, "robot never stopped"
        assert stopped_at - fired["sim_t"] <= bound, f"stopped after {stopped_at - fired['sim_t']:.2f} s sim time"
        print(f"e-stop: robot below 0.02 m/s {stopped_at - fired['sim_t']:.2f} s (sim time) after the trigger; "
              f"bound {bound:.2f} s")
        assert all(v < 0.02 for t, v in after if t > stopped_at + 0.5), "robot moved again while latched"
        results = [f.tool_call for f in feedback if f.kind == "tool_result"]
        assert results[-1].name == "go_to_object" and results[-1].status == "cancelled"   # in flight, abandoned
        assert [f.kind for f in feedback if f.kind in ("tool_call", "tool_result")][-1] == "tool_result"  # none after
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from .tiny_model import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen_e2e"))


@pytest.mark.parametrize("backend", ["local", "openai"])
def test_model_backends_run_from_camera_frame_to_parsed_output(tmp_path, ros_env, observer, tiny_checkpoint, backend):
    """A tiny RANDOM checkpoint: it will not act sensibly; what is checked is the plumbing: sim camera frames
    reach the prompt, the model's output streams through the parser into feedback, the task ends with a reason."""
    overrides = {"backend": backend, "max_new_tokens": 12, "max_turns": 2, "max_parse_retries": 1}
    with contextlib.ExitStack() as running:
        if backend == "local":
            overrides.update(model_dir=str(tiny_checkpoint), device="cpu")
        else:
            url = running.enter_context(serving(tiny_checkpoint, env=ros_env, log=tmp_path / "serve.log"))
            overrides.update(openai_base_url=url)
        stack = SimStack(tmp_path, ros_env, seed=0, agent_overrides=overrides)
        running.callback(stack.stop)
        observer.wait_ready(stack, timeout=120)
        end = time.time() + 30
        while time.time() < end and not (observer.status and observer.status[-1]["frames_in_window"] > 0):
            time.sleep(0.1)
        result, feedback = observer.run_task(MISSION, timeout=240)
        kinds = {f.kind for f in feedback}
        assert kinds & {"thinking", "text"}, kinds          # model text went through the parser
        assert result.message                              # ended with a reason (usually: malformed output)
        last = observer.status[-1]
        assert last["is_model"] is True and last["backend"].startswith(backend)
        assert last["last_prompt_images"] >= 1             # a sim camera frame was in the prompt
        print(f"{backend}: result success={result.success} message={result.message[:120]!r}")
