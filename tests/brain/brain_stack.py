"""The stack of the brain's in-simulator missions (bench/brain_eval.py, test_brain_sim.py): sim_node with
the mission's scenario and injected faults, skills, safety supervisor, perception and qwen_node; the observer
(tests/agent/sim_stack.MissionObserver) plays the operator (approves, or denies when the mission says so)."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.agent.sim_stack import SimStack


class BrainStack(SimStack):
    """SimStack on the mission's scenario (written to `folder`) with its injected fault; `agent`: qwen_node's
    parameters over the replay backend's."""

    def __init__(self, folder: Path, env: dict, mission, agent: dict, rtf: float, camera_rate: float = 3.0):
        scen = folder / "scenario.yaml"
        scen.write_text(yaml.safe_dump(mission.scenario(), sort_keys=False))
        faults = {"fault_fail_grasps": 1 if mission.fault == "grasp_fails" else 0,
                  "fault_move_on_approach": mission.target if mission.fault == "moved" else ""}
        super().__init__(folder, env, mission.seed, agent_overrides=agent, real_time_factor=rtf,
                         scenario=str(scen), camera_rate=camera_rate, sim_overrides=faults)

