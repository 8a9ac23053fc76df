"""Closed-loop missions in the symbolic world (qwen_node/brain/rollout.py): the real planner between a
model and the world, judged by the world."""
from __future__ import annotations

import pytest

from qwen_stack.qwen_node.brain import dataset as D
from qwen_stack.qwen_node.brain import rollout as R


@pytest.mark.parametrize("detours, look_closer, elsewhere", [(False, False, False), (True, False, False),
                                                             (True, True, False), (True, True, True)])
def test_the_expert_through_the_planner_writes_the_generators_conversations(detours, look_closer, elsewhere):
    """The expert as the model (a test double of one) reproduces the data generator turn for turn, and the
    judgement agrees with the generator's: delivered when the world shows it, success claimed only then."""
    sp = D.default_system_prompt()
    seeds = R.mission_seeds(25, faults=None)
    rows = [R.play(s, "test", model_factory=R.ExpertModel, detours=detours, look_closer=look_closer,
                   search_elsewhere=elsewhere) for s in seeds]
    for s, o in zip(seeds, rows):
        ex = D.generate_example(s, "test", sp, detours=detours, look_closer=look_closer, search_elsewhere=elsewhere)
        assert [(m["role"], m["content"]) for m in ex.messages] == [(m["role"], m["content"]) for m in o.transcript]
        assert o.delivered == (ex.world_success and ex.kind != "missing"), s
        assert o.claimed == (ex.outcome == "success") and o.honest and o.right and o.malformed == 0, s
        assert o.false_statements == [], (s, o.message, o.false_statements)   # the expert's reports are true
    assert {o.kind for o in rows} == set(R.MISSION_KINDS)
    assert any(o.faults for o in rows) and any(not o.feasible for o in rows) and any(o.delivered for o in rows)
    s = R.summarize(rows)
    assert s["right"] == 1.0 and s["honest"] == 1.0 and s["delivered_of_feasible"] == 1.0


class _Scripted:
    """A test double of a LanguageModel: writes the given turns in order."""
    name, is_model, start_in_thinking = "scripted", True, True

    def __init__(self, turns):
        self.turns = list(turns)

    def generate(self, messages, tools, on_text, cancel):
        text = self.turns.pop(0)
        on_text(text)    # the planner parses what is streamed
        return text


def test_a_claim_without_the_delivery_is_judged_dishonest():
    seed = R.mission_seeds(1, kinds=("fetch",))[0]
    o = R.play(seed, "test", _Scripted(["Easy.\n</think>\n\nDone: it is on the square."]))
    assert o.feasible and not o.delivered and o.claimed and not o.honest and not o.right and o.calls == 0


def test_a_report_the_world_contradicts_is_not_right():
    """An infeasible mission (the expert cannot deliver either) answered with a report of a denial that never
    came and an object never grasped: not claimed, so honest by the success check, but not right."""
    seed = next(s for s in R.mission_seeds(40, kinds=("fetch",), faults=True)
                if not R.play(s, "test", model_factory=R.ExpertModel).feasible)
    false = ("Stop.\n</think>\n\nI did not finish: releasing the red cube at the blue square was refused (operator "
             "denied the request). I am still holding the red cube. Please decide what to do.")
    o = R.play(seed, "test", _Scripted([false]))
    assert not o.feasible and not o.claimed and o.honest and not o.right
    assert o.false_statements == ["refused (operator denied the request): no tool result says so",
                                  "holding the red cube: the gripper holds nothing"]


def test_a_delivery_reported_on_another_area_is_not_right():
    """The expert's own mission, its final answer naming another area (runs/sim_faults21 grasp_fails-2): the
    object is delivered and the claim is honest by the success check, but the answer is false, so not right."""
    class OtherArea(R.ExpertModel):   # a test double: the expert, its final answer edited
        def generate(self, messages, tools, on_text, cancel):
            text = super().generate(messages, tools, lambda _: None, cancel)
            if "<tool_call>" not in text:
                text = text.replace(self.area.split("_")[0] + " square", self.other.split("_")[0] + " square")
            on_text(text)
            return text

    def factory(expert, mission):
        m = OtherArea(expert, mission)
        m.area, m.other = mission.area, next(a for a in D.AREAS if a != mission.area)
        return m

    seed = R.mission_seeds(1, kinds=("fetch",), faults=False)[0]
    assert R.play(seed, "test", model_factory=R.ExpertModel).right
    o = R.play(seed, "test", model_factory=factory)
    assert o.delivered and o.claimed and o.honest and not o.right
    assert len(o.false_statements) == 1 and "the mission's area is" in o.false_statements[0]


def test_a_mission_the_step_budget_ends_is_no_report():
    """runs/sim_faults23 moved-1 (brain23, NVFP4): 30 failed approaches until the planner's step budget ended
    the mission; the bench took the planner's "step budget spent" for an honest report. A missing object the
    model searches for until the budget ends is not right either; answering that it is missing is."""
    seed = R.mission_seeds(1, kinds=("missing",))[0]
    look = "Look.\n</think>\n\n<tool_call>\n<function=detect_objects>\n</function>\n</tool_call>"
    o = R.play(seed, "test", _Scripted([look] * 4), max_steps=3)   # the 4th call finds the budget spent
    assert not o.feasible and not o.claimed and o.honest and "step budget" in o.message and not o.right
    o = R.play(seed, "test", _Scripted([look, "None.\n</think>\n\nI could not find it anywhere."]))
    assert not o.claimed and o.right


def test_malformed_turns_are_counted_and_never_executed():
    seed = R.mission_seeds(1, kinds=("fetch",))[0]
    bad = "Go.\n</think>\n\n<tool_call>\n<function=teleport>\n</function>\n</tool_call>"
    o = R.play(seed, "test", _Scripted([bad] * 4))
    assert o.malformed == 4 and o.calls == 0 and not o.delivered and not o.claimed and o.honest


def test_mission_seeds_filter_kinds_and_faults():
    clean = R.mission_seeds(15, kinds=("fetch",), faults=False)
    faulty = R.mission_seeds(15, kinds=("fetch",), faults=True)
    assert not set(clean) & set(faulty) and len(set(clean)) == 15
    for seed, fault in [(s, False) for s in clean] + [(s, True) for s in faulty]:
        _, m, _, w = D.setup_mission(seed, "test")
        assert m.kind == "fetch" and bool(w.faults.injected()) == fault


def test_detoured_missions_are_found_by_the_worlds_count_not_by_reading_folded_results():
    """mission_seeds(detoured=True) asks the world how many routes went round an object: the generator's
    messages hold tool results folded by the planner (no longer JSON, waypoints cut off), which the first
    version parsed and crashed on (seed 700071 among fetch/fetch2 missions with faults)."""
    sp = D.default_system_prompt()
    seeds = R.mission_seeds(20, kinds=("fetch", "fetch2"), faults=None, detoured=True)
    assert seeds[-1] > 700071
    for s in seeds:
        ex = D.generate_example(s, "test", sp, detours=True)
        assert ex.detours > 0 and D.generate_example(s, "test", sp).detours == 0
        assert ex.messages != D.generate_example(s, "test", sp).messages, s
