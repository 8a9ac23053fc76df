"""The mission generator: every conversation is one the planner could have held with a model that
answers like the expert, in the exact format the engine renders, with an honest final answer."""
from __future__ import annotations

import json
import random

import pytest

from qwen_stack.qwen_node.agent.output_parser import parse_output
from qwen_stack.qwen_node.brain import dataset as D
from qwen_stack.qwen_node.brain import phrasing as P
from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer


@pytest.fixture(scope="module")
def tools():
    return D.planner_tools()


@pytest.fixture(scope="module")
def examples():
    sp = D.default_system_prompt()
    return {"train": list(D.generate(400, "train", sp)), "test": list(D.generate(120, "test", sp))}


def test_every_turn_parses_and_calls_a_real_tool_with_valid_arguments(examples, tools):
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    n_calls = 0
    for split in ("train", "test"):
        for ex in examples[split]:
            assistant = [m for m in ex.messages if m["role"] == "assistant"]
            for k, m in enumerate(assistant):
                turn = parse_output(m["content"], schemas, start_in_thinking=True)
                assert not turn.errors, (ex.id, m["content"], [e.message for e in turn.errors])
                assert turn.thinking.strip(), (ex.id, "every turn thinks first")
                if k < len(assistant) - 1:
                    assert len(turn.calls) == 1 and not turn.text.strip(), (ex.id, m["content"])
                    n_calls += 1
                else:   # the last turn is the final answer: text, no call
                    assert not turn.calls and turn.text.strip(), (ex.id, m["content"])
            # tool messages answer the calls one to one
            assert sum(m["role"] == "tool" for m in ex.messages) == len(assistant) - 1
    assert n_calls > 1000


def test_tool_responses_have_the_planner_shape(examples):
    for ex in examples["train"][:100]:
        for m in ex.messages:
            if m["role"] != "tool" or m["content"].endswith("chars]"):   # folded ones are cut
                continue
            r = json.loads(m["content"])
            assert set(r) >= {"tool", "status"} and r["status"] in ("succeeded", "failed", "rejected")
            assert m["content"] == json.dumps(r, sort_keys=True)
            if r["tool"] == "detect_objects":   # the perception contract's shape
                assert set(r) == {"tool", "status", "in_view", "memory"}
                for e in r["memory"]:
                    assert set(e) == {"name", "colour", "shape", "x", "y", "distance", "confidence", "seen_s_ago"}


def test_in_view_lists_names_in_memorys_order_as_perception_does(examples):
    # perception's memory_report lists in_view in its memory's order (first seen), not by distance; the
    # symbolic world sorted by distance, so a model trained on it met an order the simulator never gives
    from qwen_stack.perception.memory import memory_report
    n_reordered = 0
    for ex in examples["train"]:
        for m in ex.messages:
            if m["role"] != "tool" or m["content"].endswith("chars]") or '"detect_objects"' not in m["content"]:
                continue
            r = json.loads(m["content"])
            entries = [dict(e, last_seen=0.0, in_view=e["name"] in r["in_view"]) for e in r["memory"]]
            assert r["in_view"] == memory_report(entries, None, 0.0)["in_view"], ex.id
            dist = {e["name"]: e["distance"] for e in r["memory"]}
            n_reordered += r["in_view"] != sorted(r["in_view"], key=dist.__getitem__)
    assert n_reordered > 10   # the cases that tell the two orders apart do occur


def test_final_answers_claim_success_only_when_the_world_shows_it(examples):
    kinds = set()
    for ex in examples["train"] + examples["test"]:
        kinds.add(ex.kind)
        if ex.outcome == "success":
            assert ex.world_success, ex.id
        if ex.kind in ("fetch", "fetch2") and not ex.world_success:
            assert ex.outcome == "failed", ex.id
        if ex.kind == "unsafe":
            assert ex.outcome == "refused" and len(ex.messages) == 3, ex.id   # no tool call at all
    assert kinds == {"fetch", "fetch2", "missing", "goto", "look", "drive", "turn", "unsafe"}


def test_recoveries_follow_the_faults(examples):
    seen = set()
    for ex in examples["train"]:
        calls = [m["content"] for m in ex.messages if m["role"] == "assistant"]
        tools_called = [c.split("<function=")[1].split(">")[0] for c in calls if "<function=" in c]
        final = calls[-1].split("</think>")[-1]
        if ex.faults.get("deny_release"):
            seen.add("deny")
            assert tools_called[-1] == "release" and "refused" in final, ex.id   # stop at the denial
        if ex.faults.get("grasp_failures"):
            n = max(ex.faults["grasp_failures"].values())
            seen.add(f"grasp{n}")
            if n >= 3 and ex.kind == "fetch":
                assert tools_called.count("grasp") == 3 and "could not" in final, ex.id   # give up, say so
            elif ex.kind == "fetch":
                assert tools_called.count("grasp") == n + 1 and ex.outcome == "success", ex.id
                i = tools_called.index("grasp")
                assert tools_called[i + 1] == "detect_objects", ex.id   # re-detect before re-approaching
        if ex.faults.get("estop_latched"):
            seen.add("estop")
            assert ex.outcome == "failed" and "e-stop" in final, ex.id
        if ex.kind == "missing":
            seen.add("missing")
            assert tools_called.count("rotate") >= 5 and "could not find" in final, ex.id   # a full search first
    assert {"deny", "grasp1", "grasp3", "estop", "missing"} <= seen


def test_held_out_split_is_unseen_in_training(examples):
    train, test = examples["train"], examples["test"]
    for ex in train:
        assert ex.lang != P.HELD_OUT_MIX
        if ex.kind in ("fetch", "fetch2", "missing"):
            assert D.pair_split(ex.targets[0], ex.area) == "train", ex.id
        assert ex.template in P.template_indices("fetch" if ex.kind == "missing" else ex.kind, ex.lang, "train")
    train_texts = {ex.instruction for ex in train}
    assert not any(ex.instruction in train_texts for ex in test if ex.kind in ("fetch", "fetch2"))
    assert any(ex.lang == P.HELD_OUT_MIX for ex in test)
    assert any(ex.kind == "fetch" and D.pair_split(ex.targets[0], ex.area) == "test" for ex in test)
    assert len({ex.lang for ex in train}) == len(P.LANGUAGES) >= 5


def test_every_held_out_refusal_reason_is_trained_in_another_language():
    # the held-out split tests unseen phrasings of a refusal, not a reason never trained: before, every
    # language held out its "x=12" template, so no model could learn to refuse leaving the area
    trained = {P.UNSAFE_REASONS[l][i] for l in P.LANGUAGES for i in P.template_indices("unsafe", l, "train")}
    held = [(l, i) for l in P.LANGUAGES for i in P.template_indices("unsafe", l, "test")]
    assert trained == set(P.UNSAFE_REASONS["en"])
    assert len(held) >= len(P.LANGUAGES) and {l for l, _ in held} == set(P.LANGUAGES)
    for lang in P.LANGUAGES:
        train, test = (set(P.template_indices("unsafe", lang, s)) for s in ("train", "test"))
        assert train.isdisjoint(test) and train | test == set(range(len(P.TEMPLATES["unsafe"][lang])))


def test_phrasing_agrees_in_gender():
    assert P.noun_phrase("red_ball", "es") == "la pelota roja"
    assert P.noun_phrase("blue_square", "fr", "to") == "au carré bleu"
    assert P.noun_phrase("green_cube", "de") == "den grünen Würfel"
    assert P.noun_phrase("blue_square", "de", "to") == "zum blauen Quadrat"
    assert P.noun_phrase("yellow_ball", "it") == "la palla gialla"
    assert P.noun_phrase("orange_cube", "de") == "den orangen Würfel"      # not 'orangeen'
    assert P.noun_phrase("orange_square", "de", "to") == "zum orangen Quadrat"


# seams no speaker writes (written out by hand, not derived from phrasing's own table)
_UNGRAMMATICAL = {
    "de": [r"\w+eeen\b", r"\borangee\b", r"\borangeen\b"],
    "fr": [r"\bde le\b", r"\bà le\b"],
    "es": [r"\ba el\b", r"\bde el\b"],
    "it": [r"\bsu il\b", r"\bsu la\b", r"\ba il\b", r"\ba la\b"],
    "pt": [r"\bem o\b", r"\bem a\b", r"\bde o\b", r"\bde a\b"],
    P.HELD_OUT_MIX: [r"\ba el\b", r"\bde el\b"],
}


def test_every_rendered_instruction_contracts_prepositions_and_inflects_as_the_language_does():
    import re

    things = [f"{c}_{s}" for c in P.COLOURS for s in P.SHAPES]
    areas = [f"{c}_{P.AREA_SHAPE}" for c in P.COLOURS]
    bad = []
    for kind, per_lang in P.TEMPLATES.items():
        for lang, templates in per_lang.items():
            for i in range(len(templates)):
                for obj, obj2, area in zip(things, things[1:] + things[:1], areas * 3):
                    text = P.render(kind, lang, i, obj=obj, obj2=obj2, area=area, dist=1.5, deg=30).text
                    bad += [(lang, text) for pat in _UNGRAMMATICAL.get(lang, []) if re.search(pat, text)]
    assert not bad, bad[:10]
    assert P.render("fetch", "it", 2, obj="orange_cylinder", area="yellow_square").text == \
        "Per favore, metti il cilindro arancione sul quadrato giallo."
    assert P.render("goto", "pt", 1, obj="red_cube").text == "Aproxime-se do cubo vermelho."
    assert P.render("goto", "fr", 1, obj="red_cube").text == "Approche-toi du cube rouge."
    assert P.render("goto", "es", 1, obj="red_cube").text == "Acércate al cubo rojo."
    assert P.render("fetch", "de", 6, obj="orange_cube", area="red_square").text == \
        "Schaff bitte den orangen Würfel zum roten Quadrat."


def test_loss_mask_covers_exactly_what_the_model_writes(examples, tools):
    tok = QwenTokenizer()
    for ex in examples["train"][:25]:
        ids, mask = D.encode(ex.messages, tools, tok)
        assert len(ids) == len(mask)
        written = tok.decode([t for t, m in zip(ids, mask) if m])
        expected = "".join(m["content"] + "<|im_end|>" for m in ex.messages if m["role"] == "assistant")
        assert written == expected, ex.id
        # and the rendered conversation is what the engine's chat format gives (not stored pre-rendered)
        text, spans = D.render_segments(ex.messages, tools)
        assert tok.decode(ids) == text and len(spans) == sum(m["role"] == "assistant" for m in ex.messages)


def test_prompt_variants_edit_wording_only(tools):

    sp = D.default_system_prompt()
    assert D.prompt_variant(sp, tools, random.Random(0), p=0.0) == (sp, tools)
    changed = 0
    for seed in range(20):
        sp2, tools2 = D.prompt_variant(sp, tools, random.Random(seed), p=1.0)
        assert len(sp2) < len(sp)
        assert [t["function"]["name"] for t in tools2] == [t["function"]["name"] for t in tools]
        assert [t["function"]["parameters"] for t in tools2] == [t["function"]["parameters"] for t in tools]
        changed += tools2 != tools
    assert changed > 5


def test_decision_flags_mark_names_calls_and_the_answers_opening(examples, tools):
    tok = QwenTokenizer()
    ex = next(e for e in examples["train"] if e.kind == "fetch" and e.outcome == "success")
    ids, mask = D.encode(ex.messages, tools, tok)
    flags = D.decision_flags(ids, mask, tok)
    assert all(m for f, m in zip(flags, mask) if f), "a decision token outside the written text"
    flagged = tok.decode([t for t, f in zip(ids, flags) if f])
    plain = tok.decode([t for t, m, f in zip(ids, mask, flags) if m and not f])
    obj, area = ex.targets[0], ex.area
    # the names the instruction asks for, the tools chosen and their argument values are decisions
    assert obj in flagged and area in flagged
    for name in ("detect_objects", "go_to_object", "grasp", "release"):
        assert name in flagged
    # the fixed markup of a call, <|im_end|> and the thinking's filler are not
    assert "<|im_end|>" not in flagged and "</parameter>" not in flagged and "<function=" not in flagged
    assert "</parameter>" in plain and "<|im_end|>" in plain
    assert 0.1 < sum(flags) / sum(mask) < 0.6
    # the names are "read" (the hard decision) where first written, copied afterwards
    read = tok.decode([t for t, f in zip(ids, flags) if f == D.READ])
    assert obj in read and area in read and read.count(obj) == 1 and flagged.count(obj) > 1
    # the final answer's opening (its success or failure claim) is flagged
    answer = ex.messages[-1]["content"].rpartition("</think>")[2].strip()
    assert answer.split()[0] in flagged.rpartition("<tool_call>")[2]


def test_whole_answers_flag_the_reason_a_report_quotes(examples, tools):
    # brain16 reported "no operator approval within 30.0 s" after "operator denied the request": the reason
    # comes after the answer's opening, so by default it weighs as the thinking's filler
    tok = QwenTokenizer()
    ex = next(e for e in examples["train"] if e.faults.get("deny_release") and e.outcome != "success")
    reason = ex.messages[-1]["content"].rpartition("refused (")[2].rpartition(").")[0]
    assert reason, ex.id
    ids, mask = D.encode(ex.messages, tools, tok)
    head = D.decision_flags(ids, mask, tok)
    whole = D.decision_flags(ids, mask, tok, whole_answers=True)
    answer_end = max(i for i, m in enumerate(mask) if m)
    answer_start = max(i for i in range(answer_end) if ids[i] == tok.token_id("</think>"))

    def flagged(flags):   # without spaces: whitespace-only tokens are never flagged
        return "".join(tok.decode([t for t, f in zip(ids[answer_start + 1:answer_end],
                                                      flags[answer_start + 1:answer_end]) if f]).split())

    reason = "".join(reason.split())

    assert reason not in flagged(head) and reason in flagged(whole)
    assert "<|im_end|>" not in flagged(whole)
    # only the answer changes: every flag before it, and the READ flags, are the same
    assert head[:answer_start + 1] == whole[:answer_start + 1]
    assert [f == D.READ for f in head] == [f == D.READ for f in whole]


def test_decision_flags_refuse_misaligned_input():
    with pytest.raises(ValueError):
        D.decision_flags([1, 2, 3], [1, 1], QwenTokenizer())


def _examples_with_untrained_turns(**rate):
    """(example, indices of its untrained turns) over 120 seeds at `rate` (slip_rate= or miss_rate=), for the
    examples that have some; checked on the way: seeded, and one without any is exactly the plain example."""
    sp = D.default_system_prompt()
    for seed in range(120):
        ex = D.generate_example(seed, "train", sp, **rate)
        assert ex.messages == D.generate_example(seed, "train", sp, **rate).messages   # seeded
        untrained = [k for k, m in enumerate(ex.messages) if m.get("train") is False]
        if untrained:
            yield ex, untrained
        else:
            plain = D.generate_example(seed, "train", sp)
            assert all("train" not in m for m in plain.messages) and ex.messages == plain.messages, ex.id


def _assert_only_trained_turns_written(ex, tools, tok):
    ids, mask = D.encode(ex.messages, tools, tok)
    written = tok.decode([t for t, m in zip(ids, mask) if m])
    trained = [m for m in ex.messages if m["role"] == "assistant" and m.get("train") is not False]
    assert written == "".join(m["content"] + "<|im_end|>" for m in trained), ex.id


def test_slips_are_near_miss_names_followed_by_the_planners_error_and_the_recovery(tools):
    """--slip-rate: a go_to_object first written with a name perception does not know, the planner's
    'no object named ...' error, then the same call with the exact name. The slip is never a training
    target; the recovery is. Without slips the data is exactly what it was."""
    tok = QwenTokenizer()
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    n_slips = 0
    for ex, slips in _examples_with_untrained_turns(slip_rate=0.3):
        for k in slips:
            n_slips += 1
            slip, err, fix = ex.messages[k], ex.messages[k + 1]["content"], ex.messages[k + 2]   # err may be folded
            wrong = parse_output(slip["content"], schemas, start_in_thinking=True).calls[0].arguments["object_name"]
            right = parse_output(fix["content"], schemas, start_in_thinking=True).calls[0].arguments["object_name"]
            assert slip["role"] == "assistant" and fix["role"] == "assistant" and fix.get("train") is not False
            assert err.startswith('{"error": "no object named ' + repr(wrong) + " in memory (known: [")
            assert wrong != right and right in fix["content"].split("</think>")[0]
            if "folded" not in err:
                assert json.loads(err)["status"] == "failed" and repr(right) in err
        _assert_only_trained_turns_written(ex, tools, tok)   # the slip's tokens masked, the recovery's written
    assert n_slips >= 10


def test_misses_call_a_name_not_yet_in_memory_then_search(tools):
    """--miss-rate: go_to_object with the right name before perception knows it, the planner's error (the
    name is not in the known list), then a search (rotate) whose thinking says why. The call is never a
    training target; the search is. Without misses the data is exactly what it was."""
    tok = QwenTokenizer()
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    n_misses = n_repeats = 0
    for ex, untrained in _examples_with_untrained_turns(miss_rate=0.3, miss_repeat=0.3):
        for k in untrained:
            n_misses += 1
            miss, err, search = ex.messages[k], ex.messages[k + 1]["content"], ex.messages[k + 2]
            name = parse_output(miss["content"], schemas, start_in_thinking=True).calls[0].arguments["object_name"]
            if '"status": "rejected"' in err:       # an e-stop refuses it first: the final report follows
                assert not parse_output(search["content"], schemas, start_in_thinking=True).calls
                continue
            assert err.startswith('{"error": "no object named ' + repr(name) + " in memory (known: [")
            if "folded" not in err:
                assert repr(name) not in err.split("known: ")[1]        # the right name, not yet known
            nxt = parse_output(search["content"], schemas, start_in_thinking=True).calls[0]
            if search.get("train") is False:    # the same call repeated (untrained), then the search
                assert (nxt.name, nxt.arguments) == ("go_to_object", {"object_name": name})
                n_repeats += 1
                continue
            assert nxt.name == "rotate" and name in search["content"]
        _assert_only_trained_turns_written(ex, tools, tok)
    assert n_misses >= 10 and n_repeats >= 2, (n_misses, n_repeats)
    for ex, untrained in _examples_with_untrained_turns(miss_rate=0.3):   # --miss-repeat 0: one miss, then search
        assert not any(k + 2 in untrained for k in untrained), ex.id


def test_look_after_grasp_detects_before_deciding_on_the_area(tools):
    """--look-after-grasp: every successful grasp is followed by detect_objects, and the next turn drives to
    the area only when that detection lists it (else it searches). Without it the data is exactly as before."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    sp = D.default_system_prompt()
    looks = to_area = searches = 0
    for seed in range(150):
        ex = D.generate_example(seed, "train", sp, look_after_grasp=True)
        plain = D.generate_example(seed, "train", sp)
        if not any(m["role"] == "tool" and '"attached ' in m["content"] for m in ex.messages):
            assert ex.messages == plain.messages, ex.id   # no grasp succeeded: nothing changes
            continue
        assert ex.outcome == plain.outcome and ex.world_success == plain.world_success, ex.id
        for k, m in enumerate(ex.messages):
            if m["role"] != "tool" or '"attached ' not in m["content"] or ex.messages[k + 1]["role"] != "assistant":
                continue
            look = parse_output(ex.messages[k + 1]["content"], schemas, start_in_thinking=True)
            assert [c.name for c in look.calls] == ["detect_objects"], ex.id
            looks += 1
            if "older tool response folded" in ex.messages[k + 2]["content"]:
                continue   # folded later in the conversation: the list is cut
            seen = json.loads(ex.messages[k + 2]["content"])
            nxt = parse_output(ex.messages[k + 3]["content"], schemas, start_in_thinking=True)
            listed = ex.area in [e["name"] for e in seen["memory"]]
            if listed:
                to_area += 1
                assert [(c.name, c.arguments) for c in nxt.calls] == [("go_to_object", {"object_name": ex.area})]
            elif nxt.calls:
                searches += 1
                assert nxt.calls[0].name in ("rotate", "go_to_object") and ex.area not in str(nxt.calls[0].arguments)
    assert looks >= 30 and to_area >= 10 and searches >= 3, (looks, to_area, searches)


def test_detours_are_the_planners_route_around_remembered_objects():
    """--detours: the symbolic world's go_to_object result lists the waypoints and the goal the real planner
    computes (agent/planner.py's ToolExecutor over the same memory, pose and standoff: the route of the
    stack's results), areas are driven over, and without detours the result is as before."""
    import math

    from qwen_stack.geometry import Pose2D
    from qwen_stack.qwen_node.agent.planner import CancelToken, ToolExecutor
    from qwen_stack.qwen_node.agent.output_parser import ParsedToolCall
    from qwen_stack.qwen_node.brain.world import OBJECT_STANDOFF, Faults, SymbolicWorld, Thing

    from tests.agent.doubles import TransportDouble, WorldDouble

    def scene(detours):
        things = [Thing("red_cube", 2.4, 0.1), Thing("grey_crate", 1.2, 0.0, graspable=False),
                  Thing("blue_square", 0.8, 0.05, area=True)]
        w = SymbolicWorld(things, (0.0, 0.0, 0.0), Faults(), random.Random(0), detours)
        w.detect()
        return w

    w = scene(True)
    r = w.call("go_to_object", {"object_name": "red_cube"})
    mem = {e.name: (e.x, e.y) for e in w.memory.values()}
    assert r["status"] == "succeeded" and r["waypoints"] and abs(r["waypoints"][0][1]) > 0.4
    ex = ToolExecutor(D.planner_registry(), TransportDouble(),
                      WorldDouble(mem, Pose2D(0.0, 0.0, 0.0), solid={"red_cube", "grey_crate"}),
                      grounding_standoff_m=0.3, object_standoff_m=OBJECT_STANDOFF)
    status, planned = ex.execute(ParsedToolCall("go_to_object", {"object_name": "red_cube"}, ""), CancelToken())
    assert status == "succeeded"
    assert r["waypoints"] == planned["waypoints"] and r["goal"] == planned["goal"]
    assert (w.x, w.y) == pytest.approx((r["goal"]["x"], r["goal"]["y"]), abs=1e-3)
    assert math.hypot(w.x - mem["red_cube"][0], w.y - mem["red_cube"][1]) == pytest.approx(OBJECT_STANDOFF)

    plain = scene(False).call("go_to_object", {"object_name": "red_cube"})
    assert "waypoints" not in plain and plain["goal"]["theta"] == pytest.approx(math.atan2(mem["red_cube"][1],
                                                                                        mem["red_cube"][0]), abs=1e-2)
    # the blue square on the way is not routed around (the crate is the only solid obstacle)
    w2 = scene(True)
    w2.things.pop("grey_crate")
    w2.memory.pop("grey_crate")
    assert "waypoints" not in w2.call("go_to_object", {"object_name": "red_cube"})


def test_detours_change_only_the_results_of_routed_approaches(tools):
    """The data with --detours is the data without it up to the first go_to_object that routes around an
    object, whose result lists the waypoints; the expert decides the same after it (only poses, distances and
    what is in view in later results differ, and so the wording of later thinking); about one fetch mission in ten has a detour."""
    sp = D.default_system_prompt()
    routed = fetches = 0
    for seed in range(120):
        a, b = D.generate_example(seed, "train", sp), D.generate_example(seed, "train", sp, detours=True)
        fetches += a.kind in ("fetch", "fetch2")
        assert len(a.messages) == len(b.messages) and a.outcome == b.outcome, seed
        diff = [(x, y) for x, y in zip(a.messages, b.messages) if x != y]
        if diff:
            first = diff[0][1]
            assert first["role"] == "tool" and json.loads(first["content"])["tool"] == "go_to_object", seed
            assert "waypoints" in json.loads(first["content"]), seed
            # the same decisions (the thinking's wording may differ: a different view draws other noise)
            assert all(x["role"] == "tool" or x["content"].split("</think>")[-1] == y["content"].split("</think>")[-1]
                       for x, y in diff), seed
        routed += bool(diff)
    assert 0.04 * fetches <= routed <= 0.4 * fetches


def test_the_training_world_sees_as_far_as_perception():
    """The symbolic world's view range is perception's max_range: an area the data shows at 3.9 m and the
    simulator's perception dropped (max_range was 3.5) cost a mission 40 steps of turning in place."""
    import yaml

    from qwen_stack.paths import config_file
    from qwen_stack.perception.config import PerceptionConfig
    from qwen_stack.qwen_node.brain.world import VIEW_RANGE

    params = yaml.safe_load(config_file("perception.yaml").read_text())["/**/perception"]["ros__parameters"]
    assert params["max_range"] == PerceptionConfig().max_range == VIEW_RANGE


def test_look_closer_in_the_training_world_is_the_planners():
    """--look-closer: go_to_object for a name not in memory drives up to the one unnamed thing of its colour and
    kind and looks (agent/look_closer.py, as ToolExecutor._look_closer): named as asked, the approach follows;
    something else, the call fails saying what it is; without the flag the call fails at once, as before."""
    import math

    from qwen_stack.qwen_node.brain.world import OBJECT_STANDOFF, Faults, SymbolicWorld, Thing

    def scene(look_closer, things):
        w = SymbolicWorld(things, (0.0, 0.0, 0.0), Faults(), random.Random(0), True, look_closer)
        w.detect()
        return w

    far_area = [Thing("green_square", 3.5, 0.2, area=True), Thing("red_cube", 1.0, 1.0)]
    w = scene(True, far_area)
    assert "green_object_1" in w.memory and w.look_candidate("green_square") == "green_object_1"
    r = w.call("go_to_object", {"object_name": "green_square"})
    assert r["status"] == "succeeded" and r["looked_closer_at"] == "green_object_1"
    assert "green_square" in w.memory and "green_object_1" not in w.memory
    e = w.memory["green_square"]
    assert math.hypot(w.x - e.x, w.y - e.y) == pytest.approx(OBJECT_STANDOFF, abs=1e-6)

    assert "green_square" in scene(False, far_area).memory   # before: areas were named at any range
    before = scene(False, [Thing("green_cylinder", 3.5, 0.0)]).call("go_to_object", {"object_name": "green_cylinder"})
    assert before["status"] == "failed" and before["error"].startswith("no object named 'green_cylinder' in memory")

    w = scene(True, [Thing("green_ball", 3.5, 0.0)])
    r = w.call("go_to_object", {"object_name": "green_cylinder"})
    assert r["status"] == "failed" and r["looked_closer_at"] == "green_object_1" and "it is green_ball" in r["error"]
    assert math.hypot(w.x - 3.5, w.y) == pytest.approx(1.0, abs=0.1)   # looked from about LOOK_M
    # a ball asked as an area, or two unnamed green things: nothing to look at, nothing moves
    for things, name in (([Thing("green_ball", 3.5, 0.0)], "green_square"),
                         ([Thing("green_ball", 3.5, 0.0), Thing("green_cube", 3.4, 0.8)], "green_cylinder")):
        w = scene(True, things)
        r = w.call("go_to_object", {"object_name": name})
        assert r["status"] == "failed" and "looked_closer_at" not in r and (w.x, w.y) == (0.0, 0.0)


def test_look_closer_data_goes_to_the_name_itself_and_stays_honest():
    """With --look-closer the expert asks go_to_object for the name itself where the stack would look closer
    (before: for the unnamed entry, then detect), never misses on such a name, and every mission still ends
    with an answer the world shows (generate_example raises otherwise); without it the data is unchanged."""
    sp = D.default_system_prompt()
    looks = 0
    for seed in range(150):
        a = D.generate_example(seed, "train", sp, 0.0, 0.5, True, 0.3, True)
        b = D.generate_example(seed, "train", sp, 0.0, 0.5, True, 0.3, True, look_closer=True)
        assert "looked_closer_at" not in json.dumps(a.messages)
        for i, m in enumerate(b.messages):
            if m["role"] == "tool" and "looked_closer_at" in m["content"]:
                looks += 1
                call = b.messages[i - 1]["content"]
                assert "_object_" not in call.split("</think>")[-1] and "train" not in b.messages[i - 1]
    assert looks >= 3


def _drive(world, gen):
    """Play an expert generator against the symbolic world: (the calls it made, what it returned)."""
    calls, turn = [], next(gen)
    try:
        while True:
            assert turn.call is not None, turn
            calls.append(turn.call)
            turn = gen.send(world.call(*turn.call))
    except StopIteration as stop:
        return calls, stop.value


@pytest.mark.parametrize("elsewhere", [False, True])
def test_search_elsewhere_drives_back_to_the_start_point_and_turns_again(elsewhere):
    """--search-elsewhere: floor areas are seen out to AREA_RANGE only (as perception in the simulator); after a
    full turn that misses the area, the expert drives to the start point (odom 0, 0) and turns again there,
    where the simulator's none-16 square (3.9 m off the pick site) comes into range. Without it: one turn, not
    found."""

    from qwen_stack.qwen_node.brain.expert import Expert
    from qwen_stack.qwen_node.brain.world import AREA_RANGE, Faults, SymbolicWorld, Thing

    things = [Thing("green_square", -1.72, 1.35, area=True), Thing("yellow_cylinder", 1.6, 0.2)]
    world = SymbolicWorld(things, (0.97, -1.46, 0.0), Faults(), random.Random(0), look_closer=True,
                          area_range=AREA_RANGE)
    calls, found = _drive(world, Expert(world, random.Random(1), search_elsewhere=elsewhere)._find("green_square"))
    names = [c[0] for c in calls]
    assert names[:10] == ["rotate", "detect_objects"] * 5   # the full turn at the pick site first
    if not elsewhere:
        assert found is False and len(calls) == 10
        return
    assert found is True and calls[10] == ("go_to_pose", {"x": 0.0, "y": 0.0, "theta": 0.0, "use_theta": False})
    assert names[11] == "detect_objects" and "green_square" in world.memory
    # at the start point already (within MIDDLE_RADIUS): the one turn is the whole search
    world = SymbolicWorld([Thing("green_square", -1.72, 1.35, area=True)], (0.2, 0.1, 0.0), Faults(),
                          random.Random(0), area_range=2.0)
    calls, found = _drive(world, Expert(world, random.Random(1), search_elsewhere=True)._find("green_square"))
    assert found is False and "go_to_pose" not in [c[0] for c in calls]


def test_search_elsewhere_data_is_valid_and_honest(tools):
    """Missions generated with --search-elsewhere call real tools with valid arguments, the drive back is a
    go_to_pose to the start point, and the answers stay honest (generate_example refuses a false success)."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    sp = D.default_system_prompt()
    drives = 0
    for seed in range(600):   # about one mission in a hundred needs the drive back
        ex = D.generate_example(seed, "train", sp, miss_rate=0.5, look_after_grasp=True, detours=True,
                                look_closer=True, search_elsewhere=True)
        for m in ex.messages:
            if m["role"] != "assistant":
                continue
            out = parse_output(m["content"], schemas, start_in_thinking=True)
            assert not out.errors, (ex.id, out.errors)
            for c in out.calls:
                if c.name == "go_to_pose":
                    assert c.arguments == {"x": 0.0, "y": 0.0, "theta": 0.0, "use_theta": False}, ex.id
                    drives += 1
        assert ex.outcome != "success" or ex.world_success, ex.id
    assert drives >= 3, drives


def test_quote_errors_starts_the_recovery_with_the_errors_words(tools):
    """--quote-errors: after a slip or a miss, the trained thought starts "go_to_object failed: " and the
    planner's error up to its list of known names, as the thoughts after a timeout or a failed grasp quote
    theirs (runs/ro_brain12 answered a miss with the timeout's words); every call, result and other turn is
    the data without it."""
    tok = QwenTokenizer()
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    sp = D.default_system_prompt()
    rates = dict(slip_rate=0.3, miss_rate=0.5, miss_repeat=0.3, look_after_grasp=True, detours=True,
                 look_closer=True, search_elsewhere=True)
    n_quoted = 0
    for seed in range(200):
        plain = D.generate_example(seed, "train", sp, **rates)
        ex = D.generate_example(seed, "train", sp, **rates, quote_errors=True)
        assert len(ex.messages) == len(plain.messages) and ex.outcome == plain.outcome, seed
        assert [m["content"].split("</think>")[-1] for m in ex.messages] == \
               [m["content"].split("</think>")[-1] for m in plain.messages], seed   # every call and result
        for k, (m, p) in enumerate(zip(ex.messages, plain.messages)):
            if m == p:
                continue
            # only a trained recovery right after an untrained call's error differs, in its thinking only
            bad, err = ex.messages[k - 2], ex.messages[k - 1]["content"]
            assert bad.get("train") is False and m.get("train") is not False and m["role"] == "assistant"
            name = parse_output(bad["content"], schemas, start_in_thinking=True).calls[0].arguments["object_name"]
            quote = f"no object named {name!r} in memory"
            assert m["content"].startswith(f"go_to_object failed: {quote}. ")
            assert err.startswith('{"error": "' + quote + " (known: [")
            got, was = (parse_output(x["content"], schemas, start_in_thinking=True).calls for x in (m, p))
            assert [(c.name, c.arguments) for c in got] == [(c.name, c.arguments) for c in was]
            n_quoted += 1
        _assert_only_trained_turns_written(ex, tools, tok)
    assert n_quoted >= 20, n_quoted


def test_release_slips_read_not_holding_anything_and_go_back_for_the_object(tools):
    """--release-slips: with the object found, a drive to the area and a release before the grasp (untrained),
    the world's "not holding anything", then the trained recovery: a thought quoting that result, the approach
    to the object, the grasp, and on as usual; an honest answer at the end. Without the slip the data is
    exactly what it was (_examples_with_untrained_turns). The failure it teaches: runs/sim_full16 moved-1."""
    tok = QwenTokenizer()
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    n = 0
    for ex, untrained in _examples_with_untrained_turns(release_slip=0.5):
        assert ex.kind in ("fetch", "fetch2", "missing") and "deny_release" not in ex.faults, ex.id
        k = untrained[-1]
        calls = [parse_output(ex.messages[i]["content"], schemas, start_in_thinking=True).calls[0]
                 for i in untrained]
        assert calls[0].name == "go_to_object" and calls[0].arguments["object_name"] == ex.area, ex.id
        if len(calls) == 2:   # the drive to the area succeeded: the release comes back failed
            n += 1
            assert calls[1].name == "release" and '"not holding anything"' in ex.messages[k + 1]["content"]
            fix = ex.messages[k + 2]
            thought, call = fix["content"].split("</think>")[0], parse_output(
                fix["content"], schemas, start_in_thinking=True).calls[0]
            assert fix.get("train") is not False and "not holding anything" in thought
            assert call.name == "go_to_object" and call.arguments["object_name"] in ex.targets, ex.id
            later = [parse_output(m["content"], schemas, start_in_thinking=True).calls
                     for m in ex.messages[k + 2:] if m["role"] == "assistant"]
            assert any(c and c[0].name == "grasp" for c in later), ex.id
        assert ex.world_success or ex.outcome != "success", ex.id
        _assert_only_trained_turns_written(ex, tools, tok)
    assert n >= 10


def test_polite_adds_the_languages_word_where_a_speaker_puts_it():

    seen = set()
    for seed in range(40):
        rng = random.Random(seed)
        seen.add(P.polite("Bring den roten Würfel zum blauen Quadrat.", "de", rng))
        assert P.polite("Que vois-tu ?", "fr", rng) == "Que vois-tu, s'il te plaît ?"   # a question: at the end
        assert P.polite("Was siehst du?", "de", rng) == "Was siehst du, bitte?"
        assert P.polite("Bitte leg den Ball auf das Quadrat.", "de", rng) == "Bitte leg den Ball auf das Quadrat."
        assert P.polite("Please put the ball on the square.", "en", rng) == "Please put the ball on the square."
    assert seen == {"Bring bitte den roten Würfel zum blauen Quadrat.", "Bitte bring den roten Würfel zum blauen Quadrat.",
                    "Bring den roten Würfel zum blauen Quadrat, bitte."}
    rng = random.Random(3)
    fronted = {P.polite("Trae el cubo rojo al cuadrado azul.", "es", rng) for _ in range(20)}
    assert fronted == {"Por favor, trae el cubo rojo al cuadrado azul.", "Trae el cubo rojo al cuadrado azul, por favor."}


def test_polite_instructions_are_training_data_only_and_change_nothing_else():
    """--polite: a share of the training split's instructions get the word; the rest of each conversation, and
    the held-out split, are exactly as without it."""
    sp = D.default_system_prompt()
    changed = 0
    for seed in range(60):
        for split in ("train", "test"):
            plain = D.generate_example(seed, split, sp)
            ex = D.generate_example(seed, split, sp, polite_rate=0.5 if split == "train" else 0.0)
            assert ex.messages[2:] == plain.messages[2:] and ex.messages[0] == plain.messages[0]
            if ex.messages[1] != plain.messages[1]:
                changed += 1
                assert split == "train" and ex.instruction != plain.instruction
                words = {"en": "please", "de": "bitte", "fr": "s'il te plaît", "es": "por favor",
                         "it": "per favore", "pt": "por favor"}
                assert words[ex.lang] in ex.messages[1]["content"].lower(), ex.messages[1]
    assert 15 <= changed <= 45


def test_denial_reason_draws_the_proxys_three_denials_with_varied_timeouts():
    from qwen_stack.safety.tool_proxy import OPERATOR_DENIED
    drawn = [D.denial_reason(random.Random(s)) for s in range(200)]
    assert OPERATOR_DENIED in drawn
    own = {r for r in drawn if r.startswith("no operator approval within ") and "deadline" not in r}
    callers = {r for r in drawn if "the caller's deadline (" in r}
    assert len(own) >= 5 and len(callers) >= 20 and len(own) + len(callers) + 1 == len(set(drawn))
    assert all(r.endswith(" s (denied)") for r in own) and all(r.endswith(" s) (denied)") for r in callers)


def test_varied_reasons_reach_the_tool_result_and_the_report_of_training_denials_only():
    """--varied-reasons: a denied release's tool result carries a drawn denial and the expert's report quotes
    that one; every other mission, and the held-out split, are exactly as without it."""
    sp = D.default_system_prompt()
    denials = set()
    for seed in range(300):
        for split in ("train", "test"):
            plain = D.generate_example(seed, split, sp)
            ex = D.generate_example(seed, split, sp, varied_reasons=split == "train")
            if split == "test" or not ex.faults.get("deny_release"):
                assert ex.messages == plain.messages, (split, seed)
                continue
            reason = ex.faults["deny_reason"]
            denials.add(reason)
            assert reason in ex.messages[-2]["content"] and ex.messages[-2]["role"] == "tool", seed
            assert f"refused ({reason})" in ex.messages[-1]["content"].rpartition("</think>")[2], seed
    assert len(denials) >= 6, denials


def test_reason_first_reports_the_denial_in_the_thoughts_words_and_the_judge_reads_it():
    """--reason-first: a denied release's thought and report share the words before the reason; every call and
    result is as without it; sim_missions.false_statements reads the new report (a swapped reason is false)."""
    from qwen_stack.qwen_node.brain.sim_missions import false_statements

    sp = D.default_system_prompt()
    n = 0
    for seed in range(300):
        plain = D.generate_example(seed, "train", sp, varied_reasons=True)
        ex = D.generate_example(seed, "train", sp, varied_reasons=True, reason_first=True)
        assert [m["content"] for m in ex.messages if m["role"] != "assistant"] == \
               [m["content"] for m in plain.messages if m["role"] != "assistant"], seed
        if not ex.faults.get("deny_release") or "release" not in ex.messages[-2]["content"]:
            assert ex.messages == plain.messages, seed
            continue
        n += 1
        reason = ex.faults["deny_reason"]
        thought, _, answer = ex.messages[-1]["content"].rpartition("</think>")
        assert f"The release was refused: {reason}." in thought
        assert answer.strip().startswith(f"The release was refused: {reason}. I did not finish:")
        results = [m["content"] for m in ex.messages if m["role"] == "tool"]
        held = {ex.targets[0]}
        assert false_statements(answer, results, held) == []
        other = "operator denied the request" if "approval" in reason else "no operator approval within 30.0 s (denied)"
        assert false_statements(answer.replace(reason, other), results, held)
    assert n >= 5, n
