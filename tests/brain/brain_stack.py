"""The stack of the brain's in-simulator missions (bench/brain_eval.py, test_brain_sim.py): sim_node with
the mission's scenario and injected faults, skills, safety supervisor, perception and qwen_node; and
an observer that plays the operator (approves, or denies when the mission says so)."""
from __future__ import annotations

import sys
import threading
from pathlib import Path


class BrainStack:
    """sim_node (mission scenario, injected faults), skills, safety supervisor, perception, qwen_node."""

    def __init__(self, folder: Path, env: dict, mission, agent: dict, rtf: float, camera_rate: float = 3.0):
        import yaml

        from qwen_stack.paths import config_file
        from tests.agent.sim_stack import params_file

        self.folder, self.env, self.procs = folder, env, []
        scen = folder / "scenario.yaml"
        scen.write_text(yaml.safe_dump(mission.scenario(), sort_keys=False))
        sim = {"scenario": str(scen), "seed": mission.seed, "real_time_factor": rtf, "camera_rate": camera_rate,
               "fault_fail_grasps": 1 if mission.fault == "grasp_fails" else 0,
               "fault_move_on_approach": mission.target if mission.fault == "moved" else ""}
        self._start("sim", "qwen_stack.sim.node", [config_file("sim.yaml"), params_file(folder, "sim_over", sim)])
        self._start("skills", "qwen_stack.sim.skills_node", [config_file("sim.yaml")])
        self._start("safety", "qwen_stack.safety.node",
                    [config_file("safety.yaml"), params_file(folder, "safety_over",
                                                              {"audit_log_path": str(folder / "audit.jsonl")})])
        self._start("perception", "qwen_stack.perception.node", [config_file("perception.yaml")])
        self._start("agent", "qwen_stack.qwen_node.node", [config_file("agent.yaml"),
                                                           params_file(folder, "agent_over", agent)])

    def _start(self, name, module, files):
        import subprocess

        cmd = [sys.executable, "-m", module, "--ros-args"]
        for f in files:
            cmd += ["--params-file", str(f)]
        log = open(self.folder / f"{name}.log", "w")
        self.procs.append((name, subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)))

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n"
                                   f"{(self.folder / f'{name}.log').read_text()[-2000:]}")

    def stop(self):
        import subprocess

        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def make_observer():
    from tests.agent.sim_stack import MissionObserver

    class EvalObserver(MissionObserver):
        deny_approvals = False

        def reset_records(self):
            with self.lock:
                self.motion.clear()
                self.truth.clear()
                self.objects = {}
                self.held_changes.clear()
            self.tool_calls.clear()
            self.approvals.clear()
            self.status.clear()

        def _on_approval(self, m):
            self.approvals.append(m.service)
            req = self._Approve.Request(request_id=m.request_id, approved=not self.deny_approvals,
                                        operator_name="operator_double")
            self.approve.call_async(req)

    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init()
    node = EvalObserver()
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    return node, ex


