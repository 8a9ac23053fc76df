"""The shipped brain (models/brain, bf16, and models/brain-nvfp4) on held-out missions.

Two parts, one table each:

1. text: held-out conversations of the generator (unseen (object, area) pairs, phrasings, the en-es
   mix); at every assistant turn the engine writes the turn from the expert's history (greedy),
   and the action (tool name + arguments, or answer vs call) is compared with the expert's. Per
   turn: latency (prompt -> end of turn), prompt tokens, decode tokens/s; bf16 and NVFP4, decode
   through the compiled step (as the local backend runs it).
   rollout (--rollout N): held-out missions of the generator played closed-loop against the symbolic
   world of the training data (qwen_node/brain/rollout.py: the real planner, the world's tool results),
   fault-free and with one injected fault each; judged by that world. Seconds per mission: the quick
   comparison of checkpoints; the simulator below is the acceptance. go_to_object's results carry the
   planner's detour waypoints as in the stack (--rollout-straight: without, as before 2026-12-03);
   --rollout-detoured N adds N missions whose route goes round an object.
   first turns (--sim-first-turns N): the first turn of part 2's held-out missions, written by each backend;
   does its first thought name the target and the area (deterministic: the turn reads only the instruction)?
2. sim: the real stack over ROS (sim_node, skills, safety supervisor, perception, qwen_node with
   the local backend and this checkpoint; no ground truth reaches the agent), one fresh stack per
   mission: held-out fetch missions, then missions with an injected fault (the first grasp fails;
   the object is moved during the approach; the operator denies the release). Judged from the
   simulator's ground truth: delivered (object resting inside the area), the final answer's claim
   (success claimed only when delivered), malformed turns; after a fault, an honest report is right
   only once the fault happened (sim_missions.judge: refusing a feasible task is not a recovery). The replay backend runs the same
   missions for comparison.

    .venv/bin/python -m qwen_stack.rosenv .venv/bin/python bench/brain_eval.py \
        [--missions 20] [--faults 3] [--backends bf16,nvfp4,replay] [--text-conversations 30]

`--baseline DIR --backends bf16,base` runs another checkpoint (e.g. the previous model) as backend
"base" beside the new one, on the same conversations and missions in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = ROOT / "models" / "brain"
NVFP4 = ROOT / "models" / "brain-nvfp4"
BASE: Path | None = None       # --baseline: another bf16 checkpoint, backend "base", for a comparison in one run


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


# ---- 1. text level -----------------------------------------------------------------------------

def text_eval(model_dir: Path, n_conv: int, compile_decode: bool, max_turns: int = 400) -> dict:
    import torch

    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine, chat_dicts
    from qwen_stack.qwen_node.agent.output_parser import parse_output
    from qwen_stack.qwen_node.agent.planner import ChatMessage
    from qwen_stack.qwen_node.brain import dataset as D

    torch.set_num_threads(1)
    eng = LocalChatEngine(str(model_dir), device="cpu", compile_decode=compile_decode)
    tools = D.planner_tools()
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    sp = D.default_system_prompt()
    turns = correct = 0
    by_kind: dict[str, list[int]] = {}
    lat, tps, ptoks = [], [], []
    for ex in D.generate(n_conv, "test", sp, start=500_000):
        for k, m in enumerate(ex.messages):
            if m["role"] != "assistant" or turns >= max_turns:
                continue
            want = parse_output(m["content"], schemas, start_in_thinking=True)
            chat, _ = chat_dicts([ChatMessage(x["role"], x["content"]) for x in ex.messages[:k]], vision=False)
            text, st = eng.stream(chat, [], tools, lambda s: None, lambda: False, 256, 0.0, True)
            got = parse_output(text, schemas, start_in_thinking=True)
            ok = (not got.errors and [(c.name, c.arguments) for c in got.calls] == [(c.name, c.arguments) for c in want.calls]
                  and bool(got.text.strip()) == bool(want.text.strip()))
            turns += 1
            correct += ok
            by_kind.setdefault(ex.kind, []).append(int(ok))
            lat.append(st.total_s)
            ptoks.append(st.prompt_tokens)
            if st.completion_tokens > 1 and st.total_s > st.first_token_s:
                tps.append((st.completion_tokens - 1) / (st.total_s - st.first_token_s))
    return {"turns": turns, "next_action_acc": correct / max(turns, 1),
            "by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())},
            "latency_p50_s": pct(lat, 50), "latency_p99_s": pct(lat, 99), "decode_tok_s_p50": pct(tps, 50),
            "prompt_tokens_p50": pct(ptoks, 50)}


def names_eval(model_dir: Path, n_conv: int) -> dict:
    """Teacher-forced first turn of held-out fetch conversations: are the object's and the area's names
    (the thought "The task is to bring OBJ to AREA") predicted token for token? The step the sim
    missions fail at, measured without the simulator."""
    import torch
    import transformers as tf

    from qwen_stack.qwen_node.brain import dataset as D
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer
    from qwen_stack.qwen_node.engine.vocab_map import VocabMap

    torch.set_num_threads(1)
    tok, tools, sp = QwenTokenizer(), D.planner_tools(), D.default_system_prompt()
    vmap = VocabMap.load(model_dir)
    model = tf.Qwen3_5MoeForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    n = obj_ok = area_ok = 0
    seed = 2000
    while n < n_conv:
        seed += 1
        ex = D.generate_example(seed, "test", sp)
        if ex.kind != "fetch":
            continue
        ids, mask = D.encode(ex.messages[:3], tools, tok)   # system, user, the first assistant turn
        rows = vmap.to_rows(ids, tok)
        if len(rows) != len(ids):   # a token outside the model's rows: positions would not align
            continue
        n += 1
        with torch.no_grad():
            pred = model(input_ids=torch.tensor([rows])).logits[0].argmax(-1)
        pieces, starts = D.token_pieces(ids, tok)
        text = b"".join(pieces)
        first = mask.index(1)

        def right(name: str) -> bool:
            b0 = text.find(name.encode(), starts[first])
            pos = D.tokens_overlapping(range(first, len(ids)), pieces, starts, b0, b0 + len(name.encode()))
            return b0 >= 0 and all(int(pred[k - 1]) == rows[k] for k in pos)

        obj_ok += right(ex.targets[0])
        area_ok += right(ex.area)
    return {"conversations": n, "object_right": obj_ok / n, "area_right": area_ok / n}


def rollout_eval(model_dir: Path, n: int, faults: bool, out: Path, tag: str, detours: bool = True,
                 detoured: bool = False, look_closer: bool = False, search_elsewhere: bool = False) -> dict:
    """Closed loop in the symbolic world (qwen_node/brain/rollout.py): the real planner drives the model
    through n held-out fetch missions of the generator (the kind the simulator part runs; faults False:
    none injected, True: one each; detours: go_to_object's results list the planner's waypoints as in the
    stack; detoured: only missions whose expert route goes round an object; look_closer: go_to_object looks
    closer at the one unnamed thing a name may be, as the stack's does; search_elsewhere: floor areas seen only
    as far as perception sees them in the simulator). Transcripts in
    out/rollout_<tag>.jsonl."""
    import torch

    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine, LocalEngineBackend
    from qwen_stack.qwen_node.agent.config import AgentSettings
    from qwen_stack.qwen_node.brain import rollout as R

    torch.set_num_threads(1)
    s = AgentSettings()   # qwen_node's generation settings (tokens per turn, greedy, thinking)
    model = LocalEngineBackend(LocalChatEngine(str(model_dir), device="cpu"), s.max_new_tokens, s.temperature,
                               s.enable_thinking, vision=False)
    rows = []
    with (out / f"rollout_{tag}.jsonl").open("w") as f:
        for seed in R.mission_seeds(n, kinds=("fetch",), faults=faults, detoured=detoured):
            o = R.play(seed, "test", model, detours=detours, look_closer=look_closer, search_elsewhere=search_elsewhere)
            rows.append(o)
            f.write(json.dumps(vars(o)) + "\n")
            print(f"rollout {tag:14} seed {seed} {o.kind:7} delivered={o.delivered!s:5} feasible={o.feasible!s:5} "
                  f"claimed={o.claimed!s:5} calls={o.calls:2} {o.message[:90]}", flush=True)
    return R.summarize(rows)


def first_turn_eval(model_dir: Path, n: int, seed: int, out: Path | None = None, tag: str = "") -> dict:
    """The first turn of the first n simulator held-out missions (sim_missions.held_out_missions, the part-2
    missions), written by the checkpoint as qwen_node writes it (local backend, greedy, thinking on): does the
    first thought name both the target and the area? The turn depends on the instruction alone, so this is
    deterministic and takes seconds: where an NVFP4 copy reads a name its bf16 model reads right, and why a
    mission fails before the simulator starts. Rows in out/first_turns_<tag>.jsonl."""
    import torch

    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine, LocalEngineBackend
    from qwen_stack.qwen_node.agent.config import AgentSettings
    from qwen_stack.qwen_node.agent.planner import CancelToken, ChatMessage
    from qwen_stack.qwen_node.brain import dataset as D
    from qwen_stack.qwen_node.brain.sim_missions import held_out_missions

    torch.set_num_threads(1)
    s = AgentSettings()
    model = LocalEngineBackend(LocalChatEngine(str(model_dir), device="cpu"), s.max_new_tokens, s.temperature,
                               s.enable_thinking, vision=False)
    tools, system = D.planner_registry().function_specs(), D.default_system_prompt()
    rows = []
    for m in held_out_missions(n, seed):
        text = model.generate([ChatMessage("system", system), ChatMessage("user", m.instruction)], tools,
                              lambda _t: None, CancelToken())
        thought = text.strip().split("\n")[0]
        rows.append({"mission": m.id, "instruction": m.instruction, "target": m.target, "area": m.area,
                     "thought": thought, "right": m.target in thought and m.area in thought})
        print(f"first turn {tag:6} {m.id:8} {'right' if rows[-1]['right'] else 'WRONG'} {m.instruction[:60]!r} -> "
              f"{thought[:90]!r}", flush=True)
    if out is not None:
        with (out / f"first_turns_{tag}.jsonl").open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return {"missions": len(rows), "right": sum(r["right"] for r in rows) / max(len(rows), 1),
            "wrong": [r["mission"] for r in rows if not r["right"]]}


# ---- 2. in the simulator -----------------------------------------------------------------------

def agent_params(backend: str, compile_decode: bool) -> dict:
    if backend == "replay":
        return {"backend": "replay", "camera": "none"}
    return {"backend": "local", "model_dir": str(model_dir(backend)), "device": "cpu",
            "camera": "none", "compile_decode": compile_decode}


def set_models(bf16: str, nvfp4: str, base: str = "") -> None:
    global MODEL, NVFP4, BASE
    MODEL, NVFP4 = Path(bf16).resolve(), Path(nvfp4).resolve()
    BASE = Path(base).resolve() if base else None


def model_dir(backend: str) -> Path:
    if backend == "base":
        if BASE is None:
            raise ValueError("backend 'base' needs --baseline DIR")
        return BASE
    return {"bf16": MODEL, "nvfp4": NVFP4}[backend]


def run_mission(observer, mission, backend: str, env: dict, rtf: float, timeout: float, compile_decode: bool,
                keep: Path | None, camera_rate: float = 3.0) -> dict:
    from qwen_stack.qwen_node.agent.backends.local import parse_turn_stats
    from qwen_stack.qwen_node.brain.sim_missions import (claims_success, delivered, false_statements, fault_met,
                                                         overclaims)

    folder = Path(tempfile.mkdtemp(prefix=f"brain_{backend}_{mission.id}_", dir=keep))
    observer.deny_approvals = mission.fault == "deny"
    observer.reset_records()
    from tests.brain.brain_stack import BrainStack

    stack = BrainStack(folder, env, mission, agent_params(backend, compile_decode), rtf, camera_rate)
    row = {"mission": mission.id, "backend": backend, "fault": mission.fault, "instruction": mission.instruction,
           "held_out": mission.why_held_out, "lang": mission.lang}
    stamps: list[tuple[float, str]] = []
    try:
        observer.wait_ready(stack, timeout=240)
        t0 = time.time()
        result, feedback = observer.run_task(mission.instruction, timeout=timeout,
                                             on_feedback=lambda f: stamps.append((time.time(), f.kind)))
        stack.check_alive()
        time.sleep(1.5)   # one more sim/objects message after the last action
        ok, where = delivered(observer.objects, mission.target, mission.area)
        calls = [m for _, m in observer.tool_calls if m.status != "requested"]
        malformed = sum(1 for f in feedback if f.kind == "status" and "malformed model output" in f.text)
        with open(folder / "transcript.txt", "w") as tr:   # what the model thought and did, for reading
            tr.write(f"instruction: {mission.instruction}\n")
            for f in feedback:
                if f.kind in ("tool_call", "tool_result"):
                    tc = f.tool_call
                    tr.write(f"[{f.kind}] {tc.name} {tc.arguments_json} {tc.status} {tc.result_json[:600]}\n")
                else:
                    tr.write(f"[{f.kind}] {f.text}\n")
            tr.write(f"result: {result.success} {result.message}\n")
        # per turn: from the previous tool result (or the goal) to the turn's tool call (or the answer)
        turn_s, last = [], t0
        for t, kind in stamps:
            if kind == "tool_call":
                turn_s.append(t - last)
            elif kind == "tool_result":
                last = t
        row.update(delivered=ok, where=where, task_success=bool(result.success), answer=result.message[:300],
                   claims_success=claims_success(bool(result.success), result.message), steps=int(result.steps),
                   malformed_turns=malformed, calls=[(c.name, c.status) for c in calls],
                   call_arguments=[c.arguments_json for c in calls], turn_s=turn_s,
                   wall_s=round(time.time() - t0, 1),
                   false_statements=false_statements(
                       result.message, [c.result_json for c in calls],
                       {o["name"] for o in observer.objects.get("objects", []) if o.get("held")}, mission.area))
    except Exception as exc:  # a mission that breaks counts as failed, with its reason
        row.update(delivered=False, task_success=False, claims_success=False, error=f"{type(exc).__name__}: {exc}"[:500],
                   malformed_turns=0, turn_s=[])
    finally:
        stack.stop()
    # the model's per-turn figures as qwen_node logged them (local backend; replay logs none)
    log = folder / "agent.log"
    turns = parse_turn_stats(log.read_text(errors="replace")) if log.is_file() else []
    row["decode_tok_s"] = [t["decode_tok_s"] for t in turns if t["completion_tokens"] > 1]
    row["prompt_tokens"] = [t["prompt_tokens"] for t in turns]
    row["honest"] = row["claims_success"] == row["delivered"] or (not row["claims_success"])
    row["overclaims"] = overclaims(row.get("answer", ""), mission.target) if row["claims_success"] else []
    row["approvals"] = len(observer.approvals)
    row["fault_met"] = fault_met(mission.fault, mission.target, row.get("calls", []), row.get("call_arguments", []),
                                 row["approvals"])
    row["right"] = judge_row(row)
    return row


def _overclaims(row: dict) -> list[str]:
    from qwen_stack.qwen_node.brain.sim_missions import overclaims
    if "overclaims" in row:
        return row["overclaims"]
    return overclaims(row.get("answer", ""), row.get("where", "").split(" at ")[0])


def judge_row(row: dict) -> bool:
    """A row's `right` by today's `judge`: for a mission just run and for a stored row alike (a row of a
    mission that broke is wrong)."""
    from qwen_stack.qwen_node.brain.sim_missions import judge, model_answer
    if "error" in row:
        return False
    return judge(row["fault"], row["delivered"], row["claims_success"],
                 model_answer(row["task_success"], row.get("answer", "")), row.get("fault_met", True),
                 row.get("false_statements", []))


def summarize(rows: list[dict]) -> dict:
    held = [r for r in rows if r["fault"] == "none"]
    faults = [r for r in rows if r["fault"] != "none"]
    turn_s = [t for r in rows for t in r.get("turn_s", [])]
    tps = [t for r in rows for t in r.get("decode_tok_s", [])]
    prompt = [t for r in rows for t in r.get("prompt_tokens", [])]
    return {"missions": len(held), "success": sum(r["delivered"] for r in held) / max(len(held), 1),
            "fault_missions": len(faults), "fault_right": sum(r["right"] for r in faults) / max(len(faults), 1),
            "honest": sum(r["honest"] for r in rows) / max(len(rows), 1),
            # of the answers that claim success, those naming only the delivered object (rows before this field:
            # the target read from `where`)
            "claims": sum(1 for r in rows if r["claims_success"]),
            "claims_exact": sum(1 for r in rows if r["claims_success"] and r["delivered"] and not _overclaims(r)),
            # answers stating what the mission contradicts (a refusal nobody gave, an object not held);
            # None: rows from before this check
            "answers": len(rows),
            "false_reports": (sum(1 for r in rows if r.get("false_statements"))
                              if all("false_statements" in r or "error" in r for r in rows) else None),
            "malformed_turns": sum(r.get("malformed_turns", 0) for r in rows),
            "errors": sum(1 for r in rows if "error" in r),
            "turn_p50_s": pct(turn_s, 50), "turn_p99_s": pct(turn_s, 99),
            "decode_tok_s_p50": pct(tps, 50), "decode_tok_s_p1": pct(tps, 1),
            "prompt_tokens_p50": pct(prompt, 50), "prompt_tokens_max": max(prompt, default=0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--missions", type=int, default=20, help="held-out fault-free missions per backend")
    ap.add_argument("--only", default="", help="comma list of mission ids among those --missions and --faults make "
                                               "(e.g. none-15,moved-0): rerun a few in the simulator")
    ap.add_argument("--faults", type=int, default=3, help="missions per injected fault kind (3 kinds)")
    ap.add_argument("--backends", default="bf16,nvfp4,replay",
                    help="comma list of bf16, nvfp4, replay, base (the --baseline checkpoint)")
    ap.add_argument("--fault-backends", default="bf16", help="backends that also run the fault missions")
    ap.add_argument("--text-conversations", type=int, default=30, help="held-out conversations for part 1 (0: skip)")
    ap.add_argument("--names", type=int, default=0,
                    help="held-out fetch conversations for the teacher-forced first-turn names check (part 1)")
    ap.add_argument("--rollout", type=int, default=0,
                    help="held-out missions played closed-loop in the symbolic world, per backend, fault-free and "
                         "with one injected fault each (part 1; 0: skip)")
    ap.add_argument("--rollout-straight", action="store_true",
                    help="rollout without the planner's detour waypoints in go_to_object's results (the symbolic "
                         "world of the data before `train-brain --detours`; figures before 2026-12-03)")
    ap.add_argument("--rollout-look-closer", action="store_true",
                    help="rollout with go_to_object's look closer at the one unnamed thing a name may be, as in the "
                         "stack since 2026-12-03 (the symbolic world of `train-brain --look-closer`)")
    ap.add_argument("--rollout-search-elsewhere", action="store_true",
                    help="rollout where floor areas are seen out to 3.2 m only, as perception sees them in the "
                         "simulator (the symbolic world of `train-brain --search-elsewhere`)")
    ap.add_argument("--rollout-detoured", type=int, default=0,
                    help="also N fault-free missions whose route goes round an object (go_to_object's result lists "
                         "waypoints: a quarter of the simulator's missions), per backend")
    ap.add_argument("--sim-first-turns", type=int, default=0, metavar="N",
                    help="part 1: the first turn of the first N simulator held-out missions per backend; does the "
                         "first thought name the target and the area? (deterministic, seconds)")
    ap.add_argument("--text-only", action="store_true", help="part 1 only")
    ap.add_argument("--sim-only", action="store_true", help="part 2 only")
    ap.add_argument("--rtf", type=float, default=3.0, help="simulator real-time factor")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mission")
    ap.add_argument("--compile-decode", action="store_true", help="qwen_node decodes through the compiled step in sim")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=str(MODEL), help="bf16 checkpoint")
    ap.add_argument("--nvfp4", default=str(NVFP4), help="NVFP4 checkpoint")
    ap.add_argument("--baseline", default="", help="bf16 checkpoint run as backend 'base' (e.g. the previous model)")
    ap.add_argument("--camera-rate", type=float, default=3.0, help="sim camera frames per sim second (perception)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "brain_eval"), help="results folder (JSON + logs)")
    ap.add_argument("--summarize", default="", metavar="ROWS",
                    help="only print the sim table of a sim_rows.jsonl (e.g. of a run stopped early) and exit")
    a = ap.parse_args(argv)
    if a.summarize:
        rows = [json.loads(x) for x in Path(a.summarize).read_text().splitlines() if x.strip()]
        changed = []
        for r in rows:
            right = judge_row(r)
            if right != r["right"]:
                changed.append(f"{r['backend']} {r['mission']}")
            r["right"] = right
        print(f"judged again by today's judge: {len(changed)} row(s) changed {changed}")
        for b in dict.fromkeys(r["backend"] for r in rows):
            print(b, json.dumps(summarize([r for r in rows if r["backend"] == b])))
        return 0
    unknown = set(a.backends.split(",")) - {"bf16", "nvfp4", "replay", "base"}
    if unknown:
        ap.error(f"--backends: unknown {sorted(unknown)}")
    if "base" in a.backends.split(",") and not a.baseline:
        ap.error("--backends base needs --baseline DIR")
    set_models(a.model, a.nvfp4, a.baseline)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"args": vars(a)}

    if not a.sim_only and a.text_conversations:
        report["text"] = {}
        for name in a.backends.split(","):
            if name == "replay":
                continue
            d = model_dir(name)
            t0 = time.time()
            report["text"][name] = text_eval(d, a.text_conversations, compile_decode=True)
            print(f"text {name}: {json.dumps(report['text'][name])} ({time.time() - t0:.0f} s)", flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if not a.sim_only and (a.rollout or a.rollout_detoured):
        report["rollout"] = {}
        for name in a.backends.split(","):
            if name == "replay":
                continue
            sets = [(name, a.rollout, False, False), (f"{name}_faults", a.rollout, True, False),
                    (f"{name}_detoured", a.rollout_detoured, False, True)]   # (tag, missions, faults, detoured)
            for tag, n, faults, detoured in sets:
                if n:
                    t0 = time.time()
                    report["rollout"][tag] = rollout_eval(model_dir(name), n, faults, out, tag,
                                                          detours=not a.rollout_straight, detoured=detoured,
                                                          look_closer=a.rollout_look_closer,
                                                          search_elsewhere=a.rollout_search_elsewhere)
                    print(f"rollout {tag}: {json.dumps(report['rollout'][tag])} ({time.time() - t0:.0f} s)",
                          flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if not a.sim_only and a.sim_first_turns:
        report["first_turns"] = {name: first_turn_eval(model_dir(name), a.sim_first_turns, a.seed, out, name)
                                 for name in a.backends.split(",") if name != "replay"}
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if not a.sim_only and a.names:
        report["names"] = {name: names_eval(model_dir(name), a.names) for name in a.backends.split(",")
                           if name in ("bf16", "base")}
        print(f"first-turn names: {json.dumps(report['names'])}", flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))

    if not a.text_only:
        from qwen_stack.qwen_node.brain.sim_missions import held_out_missions
        from qwen_stack.rosenv import ros_environment

        missions = held_out_missions(a.missions, a.seed)
        fault_missions = [m for f in ("grasp_fails", "moved", "deny") for m in held_out_missions(a.faults, a.seed, f)]
        chosen = missions + fault_missions
        if a.only:
            wanted = [i.strip() for i in a.only.split(",") if i.strip()]
            unknown = sorted(set(wanted) - {m.id for m in chosen})
            if unknown:
                raise SystemExit(f"--only: no mission {unknown} among --missions {a.missions} --faults {a.faults} "
                                 f"(ids: {[m.id for m in chosen]})")
            chosen = [m for m in chosen if m.id in wanted]
        env = ros_environment(domain_id=int(os.environ.get("QWEN_STACK_TEST_DOMAIN",
                                                            random.Random(os.getpid()).randint(101, 200))))
        os.environ.update(env)
        from tests.agent.sim_stack import start_observer

        observer, ex = start_observer()
        rows = []
        # mission by mission, every backend in turn: a run stopped early still compares like with like
        import rclpy

        for m in chosen:
            if not rclpy.ok():   # SIGINT/SIGTERM shut the context down: stop, do not write a failed row per mission
                print("the ROS context was shut down (run stopped): no more missions", flush=True)
                break
            for backend in a.backends.split(","):
                if m.fault != "none" and backend not in a.fault_backends.split(","):
                    continue
                if not rclpy.ok():
                    break
                row = run_mission(observer, m, backend, env, a.rtf, a.timeout, a.compile_decode, out, a.camera_rate)
                if not rclpy.ok():   # stopped during this mission: its row would record the stop, not the model
                    print(f"{backend:6} {m.id:14} interrupted by the stop: no row", flush=True)
                    break
                rows.append(row)
                print(f"{backend:6} {m.id:14} delivered={row['delivered']!s:5} claims={row['claims_success']!s:5} "
                      f"right={row['right']!s:5} {row.get('error', row.get('answer', ''))[:110]}", flush=True)
                (out / "sim_rows.jsonl").open("a").write(json.dumps(row) + "\n")
        report["sim"] = {b: summarize([r for r in rows if r["backend"] == b]) for b in a.backends.split(",")}
        ex.shutdown()
        (out / "report.json").write_text(json.dumps(report, indent=1))

    print("\n| part | backend | figure | value |\n|---|---|---|---|")
    for name, r in report.get("text", {}).items():
        print(f"| text | {name} | held-out next-action accuracy ({r['turns']} turns) | {r['next_action_acc']:.3f} |")
        print(f"| text | {name} | turn latency p50 / p99 | {r['latency_p50_s']:.2f} / {r['latency_p99_s']:.2f} s |")
        print(f"| text | {name} | decode tokens/s p50 | {r['decode_tok_s_p50']:.1f} |")
    for tag, r in report.get("rollout", {}).items():
        print(f"| rollout | {tag} | delivered of feasible ({r['feasible']} of {r['missions']}) / right / honest | "
              f"{r['delivered_of_feasible']:.2f} / {r['right']:.2f} / {r['honest']:.2f} |")
    for name, r in report.get("names", {}).items():
        print(f"| text | {name} | first-turn names right, teacher-forced ({r['conversations']}): object / area | "
              f"{r['object_right']:.2f} / {r['area_right']:.2f} |")
    for name, r in report.get("first_turns", {}).items():
        print(f"| text | {name} | sim held-out first turns naming target and area ({r['missions']}) | "
              f"{r['right']:.2f} (wrong: {', '.join(r['wrong']) or 'none'}) |")
    for name, s in report.get("sim", {}).items():
        if s["missions"]:
            print(f"| sim | {name} | delivered, held-out ({s['missions']}) | {s['success']:.2f} |")
        if s["fault_missions"]:
            print(f"| sim | {name} | right recovery or honest report ({s['fault_missions']}) | {s['fault_right']:.2f} |")
        print(f"| sim | {name} | success claimed only when delivered | {s['honest']:.2f} |")
        print(f"| sim | {name} | success claims naming only the delivered object | {s['claims_exact']} / {s['claims']} |")
        if s["false_reports"] is not None:
            print(f"| sim | {name} | answers stating what the mission contradicts | {s['false_reports']} / {s['answers']} |")
        print(f"| sim | {name} | malformed turns (never executed) / broken runs | {s['malformed_turns']} / {s['errors']} |")
        print(f"| sim | {name} | turn p50 / p99 (model + parse, wall) | {s['turn_p50_s']:.2f} / {s['turn_p99_s']:.2f} s |")
        if s["decode_tok_s_p50"] == s["decode_tok_s_p50"]:   # not NaN: the backend logged its turns
            print(f"| sim | {name} | decode tokens/s p50 / slowest 1 % (qwen_node's log; prompt tokens p50 / max) | "
                  f"{s['decode_tok_s_p50']:.0f} / {s['decode_tok_s_p1']:.0f} ({s['prompt_tokens_p50']:.0f} / "
                  f"{s['prompt_tokens_max']}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
