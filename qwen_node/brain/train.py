"""`qwen-stack train-brain --out DIR`: train the stand-in brain on generated missions, on the CPU.

Seeded (data, order and initialisation all follow --seed) and resumable (DIR/state.pt is written
every --save-every steps and picked up on the next start, keeping its vocabulary rows). The model is
the engine's own (engine/model.py, fp32, initialised as transformers initialises Qwen3.5), trained
through shared_prefix.py: every conversation starts with the same system prompt and tool list, which
runs once per step for the whole batch. A step: --batch whole conversations of similar length,
--first-turns conversations cut after their first assistant turn (the turn that reads the instruction:
cheap, and the decision the model learns last), --short-first-turns of the same from the user turn on
(no system prompt: where the model learns to read the instruction at all), every --variant-every steps
one conversation whose prompt wording was edited (dataset.prompt_variant; it runs on its own). Loss on the assistant's tokens
only, the decision tokens (dataset.decision_flags) weighted --decision-weight times and the names read
for the first time --read-weight times. Logged per step to DIR/log.jsonl and the terminal (progress,
ETA); the held-out split's next-action accuracy (teacher-forced: every token of the turn's action,
i.e. the tool call or the answer's opening, predicted right) and name-reading accuracy every
--eval-every steps; DIR/loss.png at the end. The checkpoint goes to DIR/model (HF layout, bf16,
vocab_map.json), which transformers loads too. --qat (qat.py) runs each step through the weights' NVFP4
round trip, for a fine-tune whose NVFP4 copy should decide as the bf16 model does.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import dataset as D
from . import shared_prefix as SP
from .model_config import brain_config
from .qat import NVFP4FakeQuant

TOOL_CALL_OPEN = "<tool_call>"


def build_data(n_train: int, n_test: int, seed: int, tok, tools, system_prompt: str, slip_rate: float = 0.0,
               miss_rate: float = 0.0, look_after_grasp: bool = False, miss_repeat: float = 0.0,
               detours: bool = False, look_closer: bool = False, search_elsewhere: bool = False,
               quote_errors: bool = False, release_slip: float = 0.0, polite_rate: float = 0.0,
               varied_reasons: bool = False, reason_first: bool = False) -> dict:
    """Encoded examples: {"train": [(ids, mask)], "test": [(ids, mask, action_spans)]} in tokenizer ids.
    slip_rate, miss_rate, release_slip: the expert's near-miss names, calls to names not yet in memory and
    releases before the grasp, polite_rate: instructions with a politeness word, varied_reasons: the proxy's
    denials with drawn timeouts (D.denial_reason): training split only, the held-out split stays comparable.
    Both splits: reason_first, a denied release's report in the thought's words (Expert.reason_first: the
    held-out split scores the format taught); look_after_grasp: the expert's policy, detours: the planner's
    waypoints in go_to_object's results, look_closer: go_to_object's look closer (SymbolicWorld.look_closer)."""
    out: dict[str, list] = {"train": [], "test": []}
    meta: dict[str, list] = {"train": [], "test": []}
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            # training sees small edits of the prompt's wording; the held-out split the exact prompt
            sp, tl = D.prompt_variant(system_prompt, tools, rng) if split == "train" else (system_prompt, tools)
            train = split == "train"
            ex = D.generate_example(seed * 1_000_000 + i, split, sp, slip_rate if train else 0.0,
                                    miss_rate if train else 0.0, look_after_grasp, miss_repeat, detours,
                                    look_closer, search_elsewhere, quote_errors,
                                    release_slip if train else 0.0, polite_rate if train else 0.0,
                                    varied_reasons and train, reason_first)
            ids, mask = D.encode(ex.messages, tl, tok)
            out[split].append((ids, mask))
            meta[split].append({"kind": ex.kind, "lang": ex.lang, "outcome": ex.outcome,
                                "faults": sorted(ex.faults)})
    return {"data": out, "meta": meta}


def action_positions(ids: list[int], mask: list[int], think_end: int) -> list[list[int]]:
    """Per assistant turn, the positions whose tokens are its action: everything after </think>
    (the tool call, or the first 4 tokens of an answer), its <|im_end|> excluded."""
    turns, cur, after = [], [], False
    for i, (t, m) in enumerate(zip(ids, mask)):
        if not m:
            if cur:
                turns.append(cur)
            cur, after = [], False
            continue
        if after:
            cur.append(i)
        if t == think_end:
            after = True
    if cur:
        turns.append(cur)
    out = []
    for positions in turns:
        positions = positions[:-1]   # drop <|im_end|>
        out.append(positions if len(positions) < 40 else positions[:40])
    return out


def token_weights(mask: list[int], flags: list[int], weight: float, read_weight: float) -> list[float]:
    """Each token's weight as a training target: 0 where the model does not write it (the prompt, the
    user, tool results), 1 for the thinking's filler, `weight` for the decision tokens
    (dataset.decision_flags 1) and `read_weight` for the names read for the first time (flag READ):
    a 2.6 M model otherwise spends its updates on the thinking's boilerplate and learns the turns'
    shape long before it learns to read the instruction's objects."""
    table = (1.0, weight, read_weight)
    return [table[f] if m else 0.0 for m, f in zip(mask, flags)]


@torch.no_grad()
def evaluate(model, prefix: list[int], examples, think_end: int, limit: int) -> dict:
    """Teacher-forced on held-out conversations (exact prompt: they all start with `prefix`): loss per
    written token, next-action accuracy (every token of a turn's action right), decision-token accuracy,
    turn-decision accuracy (every decision token of a turn right, its thinking's included: what
    the turn decides, e.g. whether the target is in memory, before the action copies it) and
    name-reading accuracy (every token of a name written for the first time right)."""
    P = len(prefix)
    _, past = SP.hidden_states(model, torch.tensor([prefix]))
    turns = correct = 0
    loss_sum = n_tok = 0.0
    dec_right = dec_n = read_right = read_n = turn_dec_right = turn_dec_n = 0
    for ids, mask, flags in examples[:limit]:
        if ids[:P] != prefix:
            raise ValueError("a held-out conversation does not start with the exact prompt")
        x = torch.tensor(ids[P:])
        h, _ = SP.hidden_states(model, x[None], start=P, past=past)
        logits = model.lm_head(h[0]).float()                       # position P + t predicts token P + t + 1
        pred = torch.cat([torch.full((P,), -1), logits.argmax(-1)])   # pred[q]: the guess for token q + 1
        m = torch.tensor(mask[P + 1:], dtype=torch.bool)
        loss_sum += float(F.cross_entropy(logits[:-1][m], x[1:][m], reduction="sum"))
        n_tok += int(m.sum())
        full = torch.tensor(ids)
        f = torch.tensor(flags)
        dec = ((f > 0) & torch.tensor(mask, dtype=torch.bool)).nonzero().view(-1)   # never in the prompt
        dec_n += len(dec)
        right = torch.cat([torch.zeros(1, dtype=torch.bool), pred[:-1] == full[1:]])   # token q predicted right
        dec_right += int(right[dec].sum())
        n, r = turn_decisions(mask, flags, right.tolist())
        turn_dec_n, turn_dec_right = turn_dec_n + n, turn_dec_right + r
        # a name read (READ tokens in a row) counts right when all its tokens are
        q = P + 1
        while q < len(ids):
            if f[q] == D.READ and mask[q]:
                r = q
                while r < len(ids) and f[r] == D.READ:
                    r += 1
                read_n += 1
                read_right += int(bool((pred[q - 1:r - 1] == full[q:r]).all()))
                q = r
            else:
                q += 1
        for positions in action_positions(ids, mask, think_end):
            if not positions:
                continue
            turns += 1
            correct += all(int(pred[p - 1]) == ids[p] for p in positions)
    return {"heldout_loss": loss_sum / max(n_tok, 1), "heldout_next_action_acc": correct / max(turns, 1),
            "heldout_turns": turns, "heldout_decision_token_acc": dec_right / max(dec_n, 1),
            "heldout_turn_decision_acc": turn_dec_right / max(turn_dec_n, 1),
            "heldout_names_read_acc": read_right / max(read_n, 1), "heldout_names_read": read_n}


def nvfp4_figures(figures: dict) -> dict:
    """evaluate()'s figures under NVFP4 fake quantization, named apart from the full-precision ones."""
    return {"nvfp4_" + k: v for k, v in figures.items()}


def turn_decisions(mask: list[int], flags: list[int], right: list[bool]) -> tuple[int, int]:
    """(turns with decision tokens, those whose decision tokens were all predicted right); right[q]:
    token q was predicted right. A turn's thinking decides before its action copies the decision
    ("I know where X is" -> go_to_object X), so a turn counts right only when both are."""
    n = n_right = start = 0
    for end in turn_ends(mask):
        dec = [q for q in range(start, end) if mask[q] and flags[q]]
        if dec:
            n += 1
            n_right += all(right[q] for q in dec)
        start = end
    return n, n_right


def special_ids_as_rows(cfg_path: Path, tok_mapped, **extra) -> None:
    """config.json's special token ids as the pruned model's rows (the engine checks them against its tokenizer)."""
    cfg = json.loads(cfg_path.read_text()) | extra
    cfg["image_token_id"] = tok_mapped.token_id("<|image_pad|>")
    cfg["video_token_id"] = tok_mapped.token_id("<|video_pad|>")
    cfg["vision_start_token_id"] = tok_mapped.token_id("<|vision_start|>")
    cfg["eos_token_id"] = tok_mapped.im_end_id
    cfg_path.write_text(json.dumps(cfg, indent=2))


def save_checkpoint(model, init_dir: Path, vmap, tok_mapped, out_dir: Path, dtype=torch.bfloat16) -> None:
    """The engine model's weights in the HF layout (transformers' names, experts one by one as Qwen
    publishes them), config.json and generation_config.json of the run's initial checkpoint (made by
    transformers), and the vocabulary map."""
    from safetensors.torch import save_file

    from ..engine.loader import hf_tensors

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.to(dtype).contiguous() for name, t in hf_tensors(model)}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "generation_config.json"):
        if (init_dir / name).exists():
            (out_dir / name).write_text((init_dir / name).read_text())
    vmap.save(out_dir)
    special_ids_as_rows(out_dir / "config.json", tok_mapped, dtype=str(dtype).removeprefix("torch."))


def shared_prefix(rows: list[list[int]], turn_start: int) -> list[int]:
    """The exact prompt most conversations start with (the system turn: prompt and tools), up to where
    they differ (in the first user turn). turn_start: the <|im_start|> row."""
    def system_turn(r):
        return tuple(r[:r.index(turn_start, 1)])
    counts: dict[tuple, int] = {}
    for r in rows:
        counts[system_turn(r)] = counts.get(system_turn(r), 0) + 1
    key = max(counts, key=counts.get)
    group = [r for r in rows if system_turn(r) == key]
    first, n = group[0], min(len(r) for r in group)
    for r in group[1:]:
        if r[:n] != first[:n]:
            n = next(i for i in range(n) if r[i] != first[i])
    return first[:n]


# the faults a mission recovers from or reports (what --fault-weight draws more often)
RECOVERY_FAULTS = frozenset({"grasp_failures", "move_on_approach", "deny_release"})


def weighted_sample(rng: random.Random, pool: list[int], cum: list[float], k: int) -> list[int]:
    """k distinct items of pool, each draw in proportion to its weight (cum: the cumulative weights)."""
    k = min(k, len(pool))
    got: dict[int, None] = {}
    while len(got) < k:
        got.setdefault(rng.choices(pool, cum_weights=cum)[0])
    return list(got)


def first_turn_end(mask: list[int]) -> int:
    """Index after the first assistant turn (its last written token)."""
    return turn_ends(mask)[0]


def turn_ends(mask: list[int]) -> list[int]:
    """Index after each trained assistant turn (where its written tokens end)."""
    return [i for i in range(1, len(mask) + 1) if mask[i - 1] and (i == len(mask) or not mask[i])]


def plot_loss(log_path: Path, png: Path, size: tuple[int, int] = (900, 480)) -> None:
    """The loss curve as a PNG (PIL only): train loss per step (light) and its running mean over 25
    steps, held-out loss (dots) on a log axis; held-out next-action accuracy (squares) on 0..1 at right."""
    from PIL import Image, ImageDraw

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    # a resumed run logs again the steps after its last saved state: the later record of a step wins
    rows = sorted({r["step"]: r for r in rows if "step" in r}.values(), key=lambda r: r["step"])
    steps = [r["step"] for r in rows if "loss" in r]
    loss = [r["loss"] for r in rows if "loss" in r]
    ev = [r for r in rows if "heldout_loss" in r]
    if not loss:
        raise ValueError(f"{log_path}: no loss rows")
    W, H = size
    x0, x1, y0, y1 = 70, W - 70, 30, H - 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    lo = math.log10(max(min(loss + [r["heldout_loss"] for r in ev]), 1e-3))
    hi = math.log10(max(loss + [r["heldout_loss"] for r in ev]))
    lo, hi = math.floor(lo), math.ceil(hi) if hi > lo else lo + 1
    smax = max(steps)

    def px(step: float) -> float:
        return x0 + (x1 - x0) * step / max(smax, 1)

    def py(v: float) -> float:
        return y1 - (y1 - y0) * (math.log10(max(v, 1e-6)) - lo) / (hi - lo)

    d.rectangle([x0, y0, x1, y1], outline="black")
    for e in range(lo, hi + 1):
        y = py(10 ** e)
        d.line([x0, y, x1, y], fill=(225, 225, 225))
        d.text((8, y - 6), f"1e{e}", fill="black")
    for k in range(5):
        st = round(smax * k / 4)
        d.text((px(st) - 10, y1 + 6), str(st), fill="black")
        acc = k / 4
        d.text((x1 + 6, y1 - (y1 - y0) * acc - 6), f"{acc:.2f}", fill=(0, 130, 0))
    d.line([(px(s_), py(v)) for s_, v in zip(steps, loss)], fill=(170, 190, 235), width=1)
    k = 25
    smooth = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
    d.line([(px(s_), py(v)) for s_, v in zip(steps, smooth)], fill=(20, 60, 200), width=2)
    for r in ev:
        x, y = px(r["step"]), py(r["heldout_loss"])
        d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(220, 80, 20))
        ya = y1 - (y1 - y0) * r["heldout_next_action_acc"]
        d.rectangle([x - 4, ya - 4, x + 4, ya + 4], fill=(0, 150, 0))
    d.text((x0, 8), "train loss (light: per step, dark: mean of 25)   held-out loss (orange dots, log axis)   "
                    "held-out next-action accuracy (green squares, right axis)", fill="black")
    d.text(((x0 + x1) // 2 - 80, H - 22), "step (one conversation each)", fill="black")
    img.save(png)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qwen-stack train-brain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="run folder (resumed when it holds state.pt)")
    ap.add_argument("--seed", type=int, default=0, help="data, order and initialisation seed")
    ap.add_argument("--train-examples", type=int, default=8000, help="generated training conversations")
    ap.add_argument("--test-examples", type=int, default=200, help="generated held-out conversations")
    ap.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    ap.add_argument("--batch", type=int, default=4, help="whole conversations per step (similar lengths)")
    ap.add_argument("--first-turns", type=int, default=16,
                    help="conversations cut after their first assistant turn, per step")
    ap.add_argument("--short-first-turns", type=int, default=16,
                    help="first turns without the system turn, per step: the instruction among 20 tokens instead of "
                         "1,500, where the model learns to read it (then it does with the prompt too)")
    ap.add_argument("--short-cuts", type=int, default=0,
                    help="conversations from the user turn on (no system turn) cut after a random assistant turn, "
                         "per step: reading the tool results (is the target in memory, which name to call) among "
                         "hundreds of tokens instead of thousands")
    ap.add_argument("--slip-rate", type=float, default=0.0,
                    help="the expert's chance per go_to_object of a near-miss name first, then the planner's error "
                         "and the recovery (the slip itself is not trained); used when the data is generated")
    ap.add_argument("--miss-rate", type=float, default=0.0,
                    help="the expert's chance of calling go_to_object with a name not yet in memory before searching "
                         "for it, then the planner's error and the search (the call itself is not trained)")
    ap.add_argument("--miss-repeat", type=float, default=0.0,
                    help="with --miss-rate: the chance (drawn twice) that the miss is repeated before the search, so "
                         "the search follows one to three of the same errors")
    ap.add_argument("--look-after-grasp", action="store_true",
                    help="the expert detects objects after every grasp before deciding whether the area is known "
                         "(both splits: it is the policy, not a mistake)")
    ap.add_argument("--detours", action="store_true",
                    help="go_to_object's results carry the planner's waypoints when it routes around a remembered "
                         "object, as the stack's do (both splits; without it, the data of the earlier checkpoints)")
    ap.add_argument("--look-closer", action="store_true",
                    help="go_to_object for a name not in memory first drives up to the one unnamed thing of its colour "
                         "and kind and looks, as the stack's does (both splits; without it, the data of the earlier "
                         "checkpoints)")
    ap.add_argument("--fault-weight", type=float, default=1.0,
                    help="how much likelier a conversation with a recovery fault (a failed grasp, the object "
                         "moved, the release denied) is drawn for the whole conversations and the cuts of a "
                         "step; 1: as generated")
    ap.add_argument("--aligned-cuts", action="store_true",
                    help="cut the --short-cuts conversations of a step at turns of similar length (around one "
                         "drawn at random) instead of independently, so a batch of them pads little")
    ap.add_argument("--quote-errors", action="store_true",
                    help="the expert's thought after go_to_object's \"no object named ... in memory\" starts with "
                         "the error's own words, as after a timeout or a failed grasp (without it, the data of the "
                         "earlier checkpoints)")
    ap.add_argument("--release-slips", type=float, default=0.0, metavar="RATE",
                    help="chance per fetched object that the expert first drives to the area and releases before "
                         "grasping (untrained), then reads the \"not holding anything\" and goes back for it "
                         "(training split only; 0: the data of the earlier checkpoints)")
    ap.add_argument("--polite", type=float, default=0.0, metavar="RATE",
                    help="chance that a training instruction gets its language's politeness word (at the front, the "
                         "end or after a German imperative), so the word decides nothing (brain16 refused \"Schaff "
                         "bitte ...\"); training split only; 0: the data of the earlier checkpoints")
    ap.add_argument("--varied-reasons", action="store_true",
                    help="a denied release reads one of the safety proxy's three denials, its timeout drawn, not "
                         "one of two fixed strings, so the report must copy the reason (brain16 wrote the other "
                         "one); training split only; without it, the data of the earlier checkpoints")
    ap.add_argument("--reason-first", action="store_true",
                    help="a denied release's report opens with the thought's sentence \"The release was refused: "
                         "REASON.\", which the model copies right (both splits); without it, the data of the "
                         "earlier checkpoints")
    ap.add_argument("--search-elsewhere", action="store_true",
                    help="floor areas are seen out to 3.2 m only, as perception sees them in the simulator, and after "
                         "a full turn without the name the expert drives back to the start point and turns again "
                         "(both splits; without it, the data of the earlier checkpoints)")
    ap.add_argument("--init-from", default="",
                    help="start from this checkpoint folder (HF layout with vocab_map.json, e.g. a previous run's "
                         "model/) instead of a fresh initialisation: a fine-tune on new data")
    ap.add_argument("--variant-every", type=int, default=4,
                    help="every N steps one conversation with an edited prompt wording (0: none)")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop (and save) after this wall time; 0: no limit")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, cosine to 10%%)")
    ap.add_argument("--warmup", type=int, default=60, help="linear warm-up steps")
    ap.add_argument("--eval-every", type=int, default=200, help="held-out evaluation period (steps)")
    ap.add_argument("--eval-examples", type=int, default=40, help="held-out conversations per evaluation")
    ap.add_argument("--save-every", type=int, default=50, help="resumable state period (steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves the other core free)")
    ap.add_argument("--max-tokens", type=int, default=6144, help="conversations longer than this are cut")
    ap.add_argument("--size", default="small", help="model_config preset")
    ap.add_argument("--decision-weight", type=float, default=4.0,
                    help="loss weight of the decision tokens (names, tool calls, an answer's opening); 1: plain")
    ap.add_argument("--whole-answers", action="store_true",
                    help="weight every token of a final answer as a decision, not only its opening: the reason "
                         "a report quotes from a tool result and the object it says it holds come later (training "
                         "weights only; the held-out figures still score the opening)")
    ap.add_argument("--read-weight", type=float, default=8.0,
                    help="loss weight of a name written for the first time (read from the instruction)")
    ap.add_argument("--qat", action="store_true",
                    help="quantization-aware: each step's forward and backward pass through the weights' NVFP4 round "
                         "trip (what `qwen-stack quantize` will store), the gradient applied to the full-precision "
                         "weights; the held-out figures are logged for both (nvfp4_ keys)")
    ap.add_argument("--export-only", action="store_true",
                    help="write DIR/model-step<N> from the saved state (a look at a run in progress) and exit")
    a = ap.parse_args(argv)
    for name in ("train_examples", "test_examples", "steps", "batch", "eval_every", "save_every", "threads",
                 "max_tokens"):
        if getattr(a, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    if not (a.lr > 0 and a.minutes >= 0 and a.warmup >= 0 and a.first_turns >= 0 and a.short_first_turns >= 0
            and a.short_cuts >= 0 and a.variant_every >= 0):
        ap.error("--lr must be > 0, --minutes, --warmup, --first-turns, --short-first-turns, --short-cuts and "
                 "--variant-every >= 0")
    if not (0 <= a.slip_rate < 1 and 0 <= a.miss_rate < 1 and 0 <= a.miss_repeat < 1):
        ap.error("--slip-rate, --miss-rate and --miss-repeat must be in [0, 1)")
    if not (a.decision_weight >= 1 and a.read_weight >= 1 and 1 <= a.fault_weight < math.inf):
        ap.error("--decision-weight, --read-weight and --fault-weight must be >= 1")
    init_from = Path(a.init_from) if a.init_from else None
    if init_from is not None:   # refused before the minutes of data generation, not after
        for name, why in (("model.safetensors", "a checkpoint folder, e.g. models/brain"),
                          ("vocab_map.json", "a full-vocabulary checkpoint is not supported")):
            if not (init_from / name).is_file():
                ap.error(f"--init-from: {init_from} holds no {name} ({why})")

    torch.set_num_threads(a.threads)
    import transformers as tf

    from ..engine.loader import load_model
    from ..engine.tokenizer import QwenTokenizer
    from ..engine.vocab_map import MappedTokenizer, VocabMap

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    tok = QwenTokenizer()
    data_path = out / "data.pt"
    if data_path.exists():
        bundle = torch.load(data_path)
    else:
        print(f"generating {a.train_examples} + {a.test_examples} missions ...", flush=True)
        tools = D.planner_tools()
        bundle = build_data(a.train_examples, a.test_examples, a.seed, tok, tools, D.default_system_prompt(),
                            a.slip_rate, a.miss_rate, a.look_after_grasp, a.miss_repeat, a.detours, a.look_closer,
                            a.search_elsewhere, a.quote_errors, a.release_slips, a.polite, a.varied_reasons,
                            a.reason_first)
        bundle["tools"] = tools
        torch.save(bundle, data_path)
        (out / "tools.json").write_text(json.dumps(tools, indent=1))
    state_path = out / "state.pt"
    st = torch.load(state_path, weights_only=False) if state_path.exists() else None
    if st is not None and "vocab" in st:
        vmap = VocabMap(st["vocab"], tok.vocab_size)
    elif init_from is not None:   # the checkpoint's rows: its embedding is indexed by them
        vmap = VocabMap.load(init_from)
    else:
        vmap = VocabMap.build({t for ids, _ in bundle["data"]["train"] for t in ids}, tok)
    # a resumed run keeps its rows even when its data was regenerated: tokens it lacks are written as bytes
    mtok = MappedTokenizer(tok, vmap)
    think_end = mtok.token_id("</think>")

    def to_rows(pairs, whole_answers=False):
        res = []
        for ids, mask in pairs:
            ids, mask = ids[:a.max_tokens], mask[:a.max_tokens]
            flags = D.decision_flags(ids, mask, tok, whole_answers=whole_answers)
            rows = vmap.to_rows(ids, tok)
            if len(rows) != len(ids):   # byte fallback lengthened it: re-align mask and flags token by token
                rows2, mask2, flags2 = [], [], []
                for t, m, f in zip(ids, mask, flags):
                    r = vmap.to_rows([t], tok)
                    rows2 += r
                    mask2 += [m] * len(r)
                    flags2 += [f] * len(r)
                rows, mask, flags = rows2, mask2, flags2
            res.append((rows, mask, flags))
        return res

    # the held-out figures keep one definition (an answer's opening) whatever the training weights
    train, test = to_rows(bundle["data"]["train"], a.whole_answers), to_rows(bundle["data"]["test"])
    turn_start = mtok.token_id("<|im_start|>")
    prefix = shared_prefix([r for r, _, _ in train], turn_start)
    P = len(prefix)
    weights = [token_weights(m, f, a.decision_weight, a.read_weight) for _, m, f in train]
    canon = [i for i, (r, _, _) in enumerate(train) if r[:P] == prefix]
    user_at = prefix.index(turn_start, 1)     # where the user turn starts
    variants = [i for i in range(len(train)) if train[i][0][:P] != prefix]
    by_length = sorted(canon, key=lambda i: len(train[i][0]))
    draw_weight = [1.0] * len(train)
    if a.fault_weight != 1:
        meta = bundle["meta"]["train"]
        if any("faults" not in m for m in meta):
            ap.error(f"--fault-weight: {data_path} was generated before its missions' faults were recorded; "
                     "use a new --out")
        draw_weight = [a.fault_weight if RECOVERY_FAULTS & set(m["faults"]) else 1.0 for m in meta]
    # cumulative weights of the whole-batch start (a conversation and its neighbours in length) and of the cuts
    start_cum = list(itertools.accumulate(draw_weight[i] for i in by_length[:max(1, len(by_length) - a.batch + 1)]))
    canon_cum = list(itertools.accumulate(draw_weight[i] for i in canon))
    test = [x for x in test if x[0][:P] == prefix]
    print(f"data: {len(train)} train ({len(variants)} with an edited prompt) / {len(test)} held-out conversations, "
          f"vocabulary {len(vmap)} rows, mean length {sum(len(r[0]) for r in train) / len(train):.0f} tokens, "
          f"shared prompt {P} tokens", flush=True)

    torch.manual_seed(a.seed)
    cfg = brain_config(len(vmap), a.size)
    init_dir = out / "init"
    if not (init_dir / "model.safetensors").exists():
        if init_from is not None:   # continue from a trained checkpoint (its config; --size does not apply)
            init_dir.mkdir(parents=True, exist_ok=True)
            for name in ("model.safetensors", "config.json", "generation_config.json", "vocab_map.json"):
                if (init_from / name).exists():
                    shutil.copyfile(init_from / name, init_dir / name)
        else:   # transformers' initialisation of Qwen3.5, saved once
            tf.Qwen3_5MoeForCausalLM(cfg).save_pretrained(str(init_dir))
    model = load_model(init_dir, dtype=torch.float32, progress=False)
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01)
    step = 0
    order_rng = random.Random(a.seed)
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        order_rng.setstate(st["order_rng"])
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed at step {step}", flush=True)
    if a.export_only:
        if not state_path.exists():
            ap.error(f"--export-only: no {state_path}")
        save_checkpoint(model, init_dir, vmap, mtok, out / f"model-step{step}")
        plot_loss(out / "log.jsonl", out / "loss.png")
        print(f"saved {out / f'model-step{step}'} and {out / 'loss.png'}", flush=True)
        return 0
    fake_quant = NVFP4FakeQuant(model, init_dir) if a.qat else None
    if fake_quant is not None:
        print(f"quantization-aware: {len(fake_quant.names)} weights pass through their NVFP4 round trip", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters ({a.size}), {a.threads} thread(s)", flush=True)

    def lr_at(s: int) -> float:
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        p = (s - a.warmup) / max(1, a.steps - a.warmup)
        if a.minutes:   # on a shared machine the time limit may come first: the schedule ends with it
            p = max(p, (time.time() - t_start) / (a.minutes * 60))
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    def save_state() -> None:   # what a resumed run picks up (its vocabulary rows too)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "order_rng": order_rng.getstate(), "torch_rng": torch.get_rng_state(), "vocab": vmap.ids},
                   state_path)

    def suffix(i: int, end: int | None = None):
        rows, _, _ = train[i]
        end = len(rows) if end is None else end
        return rows[P:end], weights[i][P:end]

    log = open(out / "log.jsonl", "a")
    t0, s0 = time.time(), step
    stop_reason = "steps"
    while step < a.steps:
        if a.minutes and time.time() - t_start > a.minutes * 60:
            stop_reason = "time limit"
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        if a.fault_weight == 1:   # as the earlier runs drew (their commands make the same runs)
            k = order_rng.randrange(max(1, len(by_length) - a.batch + 1))   # neighbours in length: little padding
        else:
            k = order_rng.choices(range(len(start_cum)), cum_weights=start_cum)[0]
        whole = [suffix(i) for i in by_length[k:k + a.batch]]
        firsts = [suffix(i, first_turn_end(train[i][1])) for i in order_rng.sample(canon, min(a.first_turns, len(canon)))]
        acc = {"loss": 0.0, "w": 0.0, "ce": 0.0, "n": 0, "tokens": P}   # the step's sums over every batch

        def add(pre, batch, states=None):
            ls, ws, (ce, where), st = SP.batch_loss(model, pre, batch, prefix_states=states)
            acc["loss"], acc["w"] = acc["loss"] + ls, acc["w"] + ws
            acc["ce"] += float(ce.detach().sum())
            acc["n"] += int(where.sum())
            acc["tokens"] += sum(len(s_) for s_, _ in batch)
            return st

        # with --qat the pass runs through the NVFP4 round trip; the optimiser steps the full-precision weights
        with fake_quant if fake_quant is not None else contextlib.nullcontext():
            past = add(prefix, whole)
            if firsts:
                add(prefix, firsts, past)
            if a.short_first_turns:   # the same first turns from the user turn on, at positions 0..
                short = []
                for i in order_rng.sample(canon, min(a.short_first_turns, len(canon))):
                    end = first_turn_end(train[i][1])
                    short.append((train[i][0][user_at:end], weights[i][user_at:end]))
                add([], short)
            if a.short_cuts:   # from the user turn on, cut after a random assistant turn
                cuts = []
                if a.fault_weight == 1:
                    picked = order_rng.sample(canon, min(a.short_cuts, len(canon)))
                else:
                    picked = weighted_sample(order_rng, canon, canon_cum, a.short_cuts)
                length = None
                for i in picked:
                    ends = turn_ends(train[i][1])
                    if not a.aligned_cuts or length is None:
                        end = order_rng.choice(ends)
                        length = end - user_at
                    else:   # the turn end nearest the first cut's length: the batch pads little
                        end = min(ends, key=lambda e: abs(e - user_at - length))
                    cuts.append((train[i][0][user_at:end], weights[i][user_at:end]))
                cuts.sort(key=lambda c: len(c[0]))
                for c0 in range(0, len(cuts), 4):   # similar lengths together: a batch pads to its longest
                    add([], cuts[c0:c0 + 4])
            if a.variant_every and variants and step % a.variant_every == 0:
                i = order_rng.choice(variants)
                rows, _, _ = train[i]
                p = rows.index(turn_start, 1) + 1      # its own prompt, up to the user turn
                add(rows[:p], [(rows[p:], weights[i][p:])])
                acc["tokens"] += p
            weighted = acc["loss"] / acc["w"]
            weighted.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss = acc["ce"] / max(acc["n"], 1)   # per trained token, unweighted, over everything the step saw
        rec = {"step": step, "loss": round(loss, 5), "weighted_loss": round(float(weighted.detach()), 5),
               "lr": round(lr_at(step - 1), 6), "tokens": acc["tokens"],
               "t": round(time.time() - t_start, 1)}
        if step % 10 == 0 or step == 1:
            rate = (time.time() - t0) / max(1, step - s0)
            left = (a.steps - step) * rate
            if a.minutes:
                left = min(left, a.minutes * 60 - (time.time() - t_start))
            bar = "#" * int(30 * step / a.steps)
            print(f"[{bar:<30}] {step}/{a.steps} loss {loss:.4f} {rate:.2f} s/step ETA {left / 60:.1f} min",
                  flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            rec.update(evaluate(model, prefix, test, think_end, a.eval_examples))
            if fake_quant is not None:
                with fake_quant:
                    rec.update(nvfp4_figures(evaluate(model, prefix, test, think_end, a.eval_examples)))
            print(f"  held-out: loss {rec['heldout_loss']:.4f}, next-action accuracy "
                  f"{rec['heldout_next_action_acc']:.3f} over {rec['heldout_turns']} turns, decision-token accuracy "
                  f"{rec['heldout_decision_token_acc']:.3f}, turn decisions {rec['heldout_turn_decision_acc']:.3f}, "
                  f"names read {rec['heldout_names_read_acc']:.3f} "
                  f"of {rec['heldout_names_read']}", flush=True)
            if fake_quant is not None:
                print(f"  held-out, NVFP4 weights: loss {rec['nvfp4_heldout_loss']:.4f}, next-action accuracy "
                      f"{rec['nvfp4_heldout_next_action_acc']:.3f}, "
                      f"names read {rec['nvfp4_heldout_names_read_acc']:.3f}", flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if step % a.save_every == 0:
            save_state()
    save_state()
    final = evaluate(model, prefix, test, think_end, min(len(test), 100))
    if fake_quant is not None:
        with fake_quant:
            final.update(nvfp4_figures(evaluate(model, prefix, test, think_end, min(len(test), 100))))
    final.update(step=step, stop=stop_reason, minutes=round((time.time() - t_start) / 60, 1))
    log.write(json.dumps({"final": final}) + "\n")
    log.close()
    print(f"final held-out ({min(len(test), 100)} conversations): {json.dumps(final)}", flush=True)
    save_checkpoint(model, init_dir, vmap, mtok, out / "model")
    (out / "model" / "README.md").write_text(
        "A small Qwen3.5-architecture model trained on simulated robot missions by `qwen-stack train-brain` "
        "(a stand-in until a real Qwen3.5 checkpoint is given with model_dir).\n\n"
        f"Command: `qwen-stack train-brain {' '.join(sys.argv[2:] if argv is None else argv)}`\n\n"
        f"Held-out (teacher-forced) next-action accuracy: {final['heldout_next_action_acc']:.3f}, "
        f"names read from the instruction: {final['heldout_names_read_acc']:.3f}\n")
    plot_loss(out / "log.jsonl", out / "loss.png")
    print(f"saved {out / 'model'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
