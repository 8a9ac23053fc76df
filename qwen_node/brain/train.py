"""`qwen-stack train-brain --out DIR`: train the stand-in brain on generated missions, on the CPU.

Seeded (data, order and initialisation all follow --seed) and resumable (DIR/state.pt is written
every --save-every steps and picked up on the next start, keeping its vocabulary rows). One
conversation per step, loss on the assistant's tokens only, the decision tokens (object and area
names, tool names and argument values, an answer's opening: dataset.decision_flags) weighted
--decision-weight times. Logged per step to DIR/log.jsonl and the terminal (progress, ETA); the
held-out split's next-action accuracy (teacher-forced: every token of the turn's action, i.e. the
tool call or the answer's opening, predicted right) every --eval-every steps; DIR/loss.png at the
end. The checkpoint goes to DIR/model (HF layout, bf16, vocab_map.json).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

from . import dataset as D
from .model_config import brain_config

TOOL_CALL_OPEN = "<tool_call>"


def build_data(n_train: int, n_test: int, seed: int, tok, tools, system_prompt: str) -> dict:
    """Encoded examples: {"train": [(ids, mask)], "test": [(ids, mask, action_spans)]} in tokenizer ids."""
    out: dict[str, list] = {"train": [], "test": []}
    meta: dict[str, list] = {"train": [], "test": []}
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            # training sees small edits of the prompt's wording; the held-out split the exact prompt
            sp, tl = D.prompt_variant(system_prompt, tools, rng) if split == "train" else (system_prompt, tools)
            ex = D.generate_example(seed * 1_000_000 + i, split, sp)
            ids, mask = D.encode(ex.messages, tl, tok)
            out[split].append((ids, mask))
            meta[split].append({"kind": ex.kind, "lang": ex.lang, "outcome": ex.outcome})
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


def weighted_loss(logits, targets, flags, weight: float, read_weight: float | None = None):
    """Cross-entropy over the written tokens, the decision tokens (dataset.decision_flags 1) counted
    `weight` times and the names read for the first time (flag READ) `read_weight` times: a 2.6 M
    model otherwise spends its updates on the thinking's boilerplate and learns the turns' shape long
    before it learns to read the instruction's objects (the shipped one never did)."""
    ce = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    table = torch.tensor([1.0, weight, weight if read_weight is None else read_weight])
    w = table[flags.long()]
    return (ce * w).sum() / w.sum(), ce.mean()


@torch.no_grad()
def evaluate(model, examples, think_end: int, limit: int) -> dict:
    model.eval()
    turns = correct = 0
    loss_sum = n_tok = 0.0
    dec_right = dec_n = 0
    for ids, mask, flags in examples[:limit]:
        x = torch.tensor([ids])
        logits = model(input_ids=x).logits[0].float()
        pred = logits.argmax(-1)
        m = torch.tensor(mask[1:], dtype=torch.bool)
        lp = torch.nn.functional.cross_entropy(logits[:-1][m], x[0, 1:][m], reduction="sum")
        loss_sum += float(lp)
        n_tok += int(m.sum())
        f = (torch.tensor(flags[1:]) > 0) & m
        dec_right += int((pred[:-1][f] == x[0, 1:][f]).sum())
        dec_n += int(f.sum())
        for positions in action_positions(ids, mask, think_end):
            if not positions:
                continue
            turns += 1
            correct += all(int(pred[p - 1]) == ids[p] for p in positions)
    model.train()
    return {"heldout_loss": loss_sum / max(n_tok, 1), "heldout_next_action_acc": correct / max(turns, 1),
            "heldout_turns": turns, "heldout_decision_token_acc": dec_right / max(dec_n, 1)}


def save_hf(model, vmap, tok_mapped, out_dir: Path, dtype=torch.bfloat16) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    m = model.to(dtype)
    m.save_pretrained(str(out_dir))
    model.to(torch.float32)
    vmap.save(out_dir)
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    # the engine checks these special ids against the tokenizer: they are model rows here
    cfg["image_token_id"] = tok_mapped.token_id("<|image_pad|>")
    cfg["video_token_id"] = tok_mapped.token_id("<|video_pad|>")
    cfg["vision_start_token_id"] = tok_mapped.token_id("<|vision_start|>")
    cfg["eos_token_id"] = tok_mapped.im_end_id
    cfg_path.write_text(json.dumps(cfg, indent=2))


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
    ap.add_argument("--train-examples", type=int, default=4000, help="generated training conversations")
    ap.add_argument("--test-examples", type=int, default=200, help="generated held-out conversations")
    ap.add_argument("--steps", type=int, default=1500, help="optimiser steps (one conversation each)")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop (and save) after this wall time; 0: no limit")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, cosine to 10%%)")
    ap.add_argument("--warmup", type=int, default=60, help="linear warm-up steps")
    ap.add_argument("--eval-every", type=int, default=250, help="held-out evaluation period (steps)")
    ap.add_argument("--eval-examples", type=int, default=40, help="held-out conversations per evaluation")
    ap.add_argument("--save-every", type=int, default=100, help="resumable state period (steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves the other core free)")
    ap.add_argument("--max-tokens", type=int, default=6144, help="conversations longer than this are cut")
    ap.add_argument("--size", default="small", help="model_config preset")
    ap.add_argument("--decision-weight", type=float, default=4.0,
                    help="loss weight of the decision tokens (names, tool calls, an answer's opening); 1: plain")
    ap.add_argument("--read-weight", type=float, default=16.0,
                    help="loss weight of a name written for the first time (read from the instruction)")
    ap.add_argument("--export-only", action="store_true",
                    help="write DIR/model-step<N> from the saved state (a look at a run in progress) and exit")
    a = ap.parse_args(argv)
    for name in ("train_examples", "test_examples", "steps", "eval_every", "save_every", "threads", "max_tokens"):
        if getattr(a, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    if not (a.lr > 0 and a.minutes >= 0 and a.warmup >= 0):
        ap.error("--lr must be > 0, --minutes and --warmup >= 0")
    if not (a.decision_weight >= 1 and a.read_weight >= 1):
        ap.error("--decision-weight and --read-weight must be >= 1")

    torch.set_num_threads(a.threads)
    import transformers as tf

    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer
    from qwen_stack.qwen_node.engine.vocab_map import MappedTokenizer, VocabMap

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
        bundle = build_data(a.train_examples, a.test_examples, a.seed, tok, tools, D.default_system_prompt())
        bundle["tools"] = tools
        torch.save(bundle, data_path)
        (out / "tools.json").write_text(json.dumps(tools, indent=1))
    state_path = out / "state.pt"
    st = torch.load(state_path, weights_only=False) if state_path.exists() else None
    if st is not None and "vocab" in st:
        vmap = VocabMap(st["vocab"], tok.vocab_size)
    elif st is not None and VocabMap.load(out / "model") is not None:   # a state saved before "vocab" was kept
        vmap = VocabMap.load(out / "model")
    else:
        vmap = VocabMap.build({t for ids, _ in bundle["data"]["train"] for t in ids}, tok)
    # a resumed run keeps its rows even when its data was regenerated: tokens it lacks are written as bytes
    mtok = MappedTokenizer(tok, vmap)
    think_end = mtok.token_id("</think>")

    def to_rows(pairs):
        res = []
        for ids, mask in pairs:
            ids, mask = ids[:a.max_tokens], mask[:a.max_tokens]
            flags = D.decision_flags(ids, mask, tok)
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

    train, test = to_rows(bundle["data"]["train"]), to_rows(bundle["data"]["test"])
    print(f"data: {len(train)} train / {len(test)} held-out conversations, vocabulary {len(vmap)} rows, "
          f"mean length {sum(len(r[0]) for r in train) / len(train):.0f} tokens", flush=True)

    torch.manual_seed(a.seed)
    cfg = brain_config(len(vmap), a.size)
    model = tf.Qwen3_5MoeForCausalLM(cfg)
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
        save_hf(model, vmap, mtok, out / f"model-step{step}")
        plot_loss(out / "log.jsonl", out / "loss.png")
        print(f"saved {out / f'model-step{step}'} and {out / 'loss.png'}", flush=True)
        return 0
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

    log = open(out / "log.jsonl", "a")
    model.train()
    t0, s0 = time.time(), step
    stop_reason = "steps"
    while step < a.steps:
        if a.minutes and time.time() - t_start > a.minutes * 60:
            stop_reason = "time limit"
            break
        ids, mask, flags = train[order_rng.randrange(len(train))]
        x = torch.tensor([ids])
        m = torch.tensor(mask[1:], dtype=torch.bool)
        f = torch.tensor(flags[1:])[m]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        outp = model(input_ids=x, output_router_logits=True)
        logits = outp.logits[0, :-1]
        wloss, loss = weighted_loss(logits[m], x[0, 1:][m], f, a.decision_weight, a.read_weight)
        total = wloss + (cfg.router_aux_loss_coef * outp.aux_loss if getattr(outp, "aux_loss", None) is not None else 0)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        rec = {"step": step, "loss": round(loss.item(), 5), "weighted_loss": round(wloss.item(), 5),
               "lr": round(lr_at(step - 1), 6), "tokens": len(ids),
               "t": round(time.time() - t_start, 1)}
        if step % 10 == 0 or step == 1:
            rate = (time.time() - t0) / max(1, step - s0)
            left = (a.steps - step) * rate
            if a.minutes:
                left = min(left, a.minutes * 60 - (time.time() - t_start))
            bar = "#" * int(30 * step / a.steps)
            print(f"[{bar:<30}] {step}/{a.steps} loss {loss.item():.4f} {rate:.2f} s/step ETA {left / 60:.1f} min",
                  flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            rec.update(evaluate(model, test, think_end, a.eval_examples))
            print(f"  held-out: loss {rec['heldout_loss']:.4f}, next-action accuracy "
                  f"{rec['heldout_next_action_acc']:.3f} over {rec['heldout_turns']} turns, decision-token accuracy "
                  f"{rec['heldout_decision_token_acc']:.3f}", flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if step % a.save_every == 0:
            save_state()
    save_state()
    final = evaluate(model, test, think_end, min(len(test), 100))
    final.update(step=step, stop=stop_reason, minutes=round((time.time() - t_start) / 60, 1))
    log.write(json.dumps({"final": final}) + "\n")
    log.close()
    print(f"final held-out ({min(len(test), 100)} conversations): {json.dumps(final)}", flush=True)
    save_hf(model, vmap, mtok, out / "model")
    (out / "model" / "README.md").write_text(
        "A small Qwen3.5-architecture model trained on simulated robot missions by `qwen-stack train-brain` "
        "(a stand-in until a real Qwen3.5 checkpoint is given with model_dir).\n\n"
        f"Command: `qwen-stack train-brain {' '.join(sys.argv[2:] if argv is None else argv)}`\n\n"
        f"Held-out (teacher-forced) next-action accuracy: {final['heldout_next_action_acc']:.3f}\n")
    plot_loss(out / "log.jsonl", out / "loss.png")
    print(f"saved {out / 'model'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
