"""What an NVFP4 lm_head costs in accuracy, on the trained brain: the data behind `qwen-stack quantize --lm-head`'s
default (nvfp4_checkpoint's docstring).

    .venv/bin/python -m qwen_stack.rosenv .venv/bin/python bench/nvfp4_lm_head.py [--model models/brain-nvfp4] \
        [--conversations 20]

The model's lm_head as stored (bf16) against the same weights quantized to NVFP4, on the same hidden states:
held-out conversations of the brain's generator, teacher-forced, over the positions that predict an assistant
token. Prints the lm_head's per-layer relative error, the top-1 agreement of the two heads, each head's
teacher-forced accuracy, the logits' relative L2 error and the mean KL(bf16 || NVFP4) in nats. Reads the model
folder only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def assistant_sequences(model_dir: Path, n: int) -> list[tuple[list[int], list[int]]]:
    """(model rows, mask) per held-out conversation; mask 1 on the assistant's tokens (the generator's split)."""
    from qwen_stack.qwen_node.brain import dataset as D
    from qwen_stack.qwen_node.engine.tokenizer import QwenTokenizer
    from qwen_stack.qwen_node.engine.vocab_map import VocabMap

    tok, vmap, tools = QwenTokenizer(), VocabMap.load(model_dir), D.planner_tools()
    if vmap is None:
        raise SystemExit(f"{model_dir}: no vocab_map.json (this measure is for the brain's pruned vocabulary)")
    seqs = []
    for ex in D.generate(n, "test", D.default_system_prompt(), start=500_000):
        ids, mask = D.encode(ex.messages, tools, tok)
        rows, rmask = [], []
        for t, m in zip(ids, mask):                    # a token outside the pruned vocabulary becomes bytes
            r = vmap.to_rows([t], tok)
            rows += r
            rmask += [m] * len(r)
        seqs.append((rows, rmask))
    return seqs


@torch.inference_mode()
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "brain-nvfp4", help="model folder (bf16 lm_head)")
    ap.add_argument("--conversations", type=int, default=20, help="held-out conversations (default 20)")
    args = ap.parse_args(argv)
    from qwen_stack.qwen_node.engine.nvfp4 import NVFP4Linear, quantize_nvfp4
    from qwen_stack.qwen_node.engine.nvfp4_loader import load_model_auto

    torch.set_num_threads(1)
    model = load_model_auto(args.model, dtype=torch.float32, progress=False)
    if isinstance(model.lm_head, NVFP4Linear):
        raise SystemExit(f"{args.model}: lm_head is already NVFP4; give a folder that keeps it")
    w = model.lm_head.weight
    q = quantize_nvfp4(w.to(torch.bfloat16))                       # as `qwen-stack quantize` reads a bf16 file
    head = NVFP4Linear(q)
    hidden = {}
    model.lm_head.register_forward_hook(lambda mod, inp, out: hidden.__setitem__("h", inp[0]))
    agree = n = right_bf16 = right_nvfp4 = 0
    err2 = ref2 = kl = 0.0
    for rows, mask in assistant_sequences(args.model, args.conversations):
        ref = model(torch.tensor([rows]))[0]                        # [T, V], stored lm_head
        got = head(hidden["h"].reshape(len(rows), -1))              # the same hidden states, NVFP4 lm_head
        sel = torch.tensor(mask[1:] + [0], dtype=torch.bool)        # positions predicting an assistant token
        a, b, target = ref[sel], got[sel], torch.tensor(rows[1:] + [0])[sel]
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        right_bf16 += int((a.argmax(-1) == target).sum())
        right_nvfp4 += int((b.argmax(-1) == target).sum())
        n += int(sel.sum())
        err2 += float((a - b).square().sum())
        ref2 += float(a.square().sum())
        kl += float(F.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="sum"))
    if n == 0:
        raise SystemExit("no assistant positions")
    rel = float((q.dequantize() - w.float()).norm() / w.float().norm())
    print(f"{args.model}: lm_head {tuple(w.shape)}, NVFP4 per-layer relative error {rel:.4f}")
    print(f"{args.conversations} held-out conversations, {n} assistant positions (teacher-forced): top-1 agreement "
          f"{agree / n:.4f} ({n - agree} changed); accuracy bf16 head {right_bf16 / n:.4f}, NVFP4 head "
          f"{right_nvfp4 / n:.4f}; logits relative L2 error {(err2 / ref2) ** 0.5:.4f}; mean KL(bf16 || NVFP4) "
          f"{kl / n:.2e} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
