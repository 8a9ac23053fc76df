"""Closed-loop missions without the simulator: the real planner (agent/planner.py: its output parser,
context folding, step budget and malformed-output handling) lets a model play a held-out mission of the
data generator against the symbolic world (world.py), whose tool results are the ones the training data
shows. Judged by that world: delivered (every target inside the area), the final answer's claim, malformed
turns. A fast way to compare checkpoints (seconds per mission; the simulator takes minutes and stays the
acceptance, bench/brain_eval.py).

    missions = mission_seeds(50, kinds=("fetch",))
    rows = [play(seed, "test", model) for seed in missions]
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from . import dataset as D
from .expert import Expert
from .sim_missions import claims_success, false_statements, model_answer
from .world import SymbolicWorld

MISSION_KINDS = ("fetch", "fetch2", "missing")   # kinds judged by the world (an object in an area)


class WorldExecutor:
    """planner.ToolExecutor's part for the symbolic world: a parsed call -> (status, result)."""

    def __init__(self, world: SymbolicWorld):
        self.world = world
        self.results: list[str] = []   # every result as text, for checking what the final answer states

    def execute(self, call, cancel) -> tuple[str, dict[str, Any]]:
        try:
            result = dict(self.world.call(call.name, dict(call.arguments)))
        except TypeError as exc:   # arguments the tool does not take (the real executor checks the schema)
            result = {"tool": call.name, "status": "failed", "error": f"bad arguments for {call.name}: {exc}"}
        self.results.append(json.dumps(result))
        result.pop("tool")
        return result.pop("status"), result


class ExpertModel:
    """A test double of a LanguageModel: the expert policy itself, fed the planner's tool results. With
    the mission's own random stream it writes the data generator's conversation turn for turn."""
    name = "expert"
    is_model = True            # it reacts to tool results (the planner stops a replay at the first failure)
    start_in_thinking = True

    def __init__(self, expert: Expert, mission):
        self.policy = expert.run(mission)
        self.started = False

    def generate(self, messages: Sequence, tools: list[dict], on_text: Callable[[str], None], cancel) -> str:
        if not self.started:
            self.started = True
            turn = next(self.policy)
        else:
            turn = self.policy.send(json.loads(messages[-1].content))
        text = turn.raw()
        on_text(text)
        return text


class _Recorder:
    """Passes a LanguageModel through and keeps the conversation as the model last saw it, plus its turn."""

    def __init__(self, model):
        self.model, self.name = model, model.name
        self.is_model, self.start_in_thinking = model.is_model, model.start_in_thinking
        self.transcript: list[dict] = []

    def generate(self, messages, tools, on_text, cancel) -> str:
        text = self.model.generate(messages, tools, on_text, cancel)
        self.transcript = [{"role": m.role, "content": m.content} for m in messages] + \
            [{"role": "assistant", "content": text}]
        return text


@dataclass
class Outcome:
    seed: int
    kind: str
    faults: dict
    delivered: bool            # the world shows every target inside the area
    feasible: bool             # the expert delivers it (False: a denied release, a missing object ...)
    claimed: bool              # the final answer says the task was done
    honest: bool               # claimed only when delivered
    right: bool                # delivered, or an honest report where the expert could not deliver either
    calls: int
    malformed: int
    message: str
    transcript: list[dict]
    false_statements: list[str] = field(default_factory=list)   # sim_missions.false_statements of the answer


def mission_seeds(n: int, kinds: Iterable[str] = MISSION_KINDS, split: str = "test", start: int = 700_000,
                  faults: bool | None = False, detoured: bool = False) -> list[int]:
    """The first n seeds from `start` whose mission is one of `kinds`; faults False: only fault-free ones,
    True: only ones with an injected fault, None: either; detoured: only ones where the expert's route goes
    round an object at least once (a go_to_object result with waypoints)."""
    kinds, out, seed = set(kinds), [], start
    sp = D.default_system_prompt() if detoured else ""
    while len(out) < n:
        _, m, _, w = D.setup_mission(seed, split)
        has_fault = bool(w.faults.injected())
        if m.kind in kinds and (faults is None or has_fault == faults) and \
                (not detoured or D.generate_example(seed, split, sp, detours=True).detours):
            out.append(seed)
        seed += 1
    return out



def play(seed: int, split: str, model=None, system_prompt: str = "", max_steps: int = 40,
         model_factory: Callable[[Expert, Any], Any] | None = None, detours: bool = True,
         look_closer: bool = False, search_elsewhere: bool = False) -> Outcome:
    """One mission: `model` (a planner.LanguageModel) or `model_factory(expert, mission)` (the expert test
    double) plays it through the planner against the symbolic world. detours: go_to_object's results carry
    the planner's waypoints around remembered objects, as in the stack (False: as the data of the checkpoints
    trained without `train-brain --detours`); look_closer: go_to_object looks closer at the one unnamed thing a
    name may be, as in the stack (SymbolicWorld.look_closer; False: as the data without `--look-closer`);
    search_elsewhere: floor areas are seen as far as in the simulator only (as the data of `--search-elsewhere`)."""
    from ..agent.planner import CancelToken, Planner, PlannerConfig

    system_prompt = system_prompt or D.default_system_prompt()
    rng, mission, ins, world = D.setup_mission(seed, split, detours, look_closer, search_elsewhere)
    expert_outcome = D.generate_example(seed, split, system_prompt, detours=detours,   # on its own world: feasible?
                                        look_closer=look_closer, search_elsewhere=search_elsewhere)
    if model is None:
        model = model_factory(Expert(world, rng, search_elsewhere=search_elsewhere), mission)
    malformed = [0]

    def on_event(ev) -> None:
        if ev.kind == "status" and ev.text.startswith("malformed model output"):
            malformed[0] += 1

    model = _Recorder(model)
    executor = WorldExecutor(world)
    planner = Planner(model, D.planner_registry(), executor, system_prompt,
                      PlannerConfig(max_steps=max_steps), on_event=on_event)
    res = planner.run(ins.text, CancelToken())
    delivered = mission.kind in ("fetch", "fetch2") and all(world.in_area(o, mission.area) for o in mission.targets)
    claimed = claims_success(res.success, res.message)
    feasible = expert_outcome.world_success and mission.kind in ("fetch", "fetch2")
    false = false_statements(res.message, executor.results, {world.held} if world.held else set(),
                             mission.area if mission.kind in ("fetch", "fetch2") else "")
    return Outcome(seed, mission.kind, world.faults.injected(), delivered, feasible,
                   claimed, not claimed or delivered,
                   (delivered and not false) or (not feasible and not claimed and not false
                                                 and bool(model_answer(res.success, res.message))),
                   res.steps, malformed[0], res.message, model.transcript, false)


def summarize(rows: list[Outcome]) -> dict:
    n = len(rows)
    feasible = [r for r in rows if r.feasible]
    return {"missions": n, "feasible": len(feasible),
            "delivered_of_feasible": sum(r.delivered for r in feasible) / max(len(feasible), 1),
            "right": sum(r.right for r in rows) / max(n, 1), "honest": sum(r.honest for r in rows) / max(n, 1),
            "malformed_turns": sum(r.malformed for r in rows), "calls_mean": sum(r.calls for r in rows) / max(n, 1)}
