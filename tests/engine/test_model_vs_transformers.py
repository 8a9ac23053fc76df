"""Our model (engine/model.py) against transformers on tiny random checkpoints, fp32 on CPU.

Error measure: max |ours - reference| / max |reference| over all logits, required <= 1e-4."""
from __future__ import annotations

import pytest
import torch

from qwen_stack.qwen_node.engine.loader import load_model

TOL = 1e-4


def rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("name", ["moe_vl", "dense_vl", "moe_text", "dense_text"])
def test_text_logits_match_transformers(checkpoints, name):
    folder, ref = checkpoints[name]
    ours = load_model(folder, dtype=torch.float32, progress=False)
    vocab = ours.config.text.vocab_size
    ids = torch.randint(0, vocab, (2, 70), generator=torch.Generator().manual_seed(1))   # 70 > one 64-token chunk
    with torch.no_grad():
        want = ref(input_ids=ids).logits
        got = ours(ids)
    assert got.shape == want.shape
    assert rel_err(got, want) <= TOL


@pytest.mark.parametrize("name", ["moe_vl", "dense_text"])
def test_decode_with_caches_equals_full_recompute(checkpoints, name):
    folder, _ = checkpoints[name]
    model = load_model(folder, dtype=torch.float32, progress=False)
    ids = torch.randint(0, model.config.text.vocab_size, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)                                   # [1, 40, V], one pass from an empty cache
        model(ids[:, :25], start=0)                         # prefill 25, then 5-token block, then single steps
        steps = [model(ids[:, 25:30], start=25)]
        steps += [model(ids[:, t:t + 1], start=t) for t in range(30, 40)]
    incremental = torch.cat(steps, dim=1)
    assert rel_err(incremental, full[:, 25:]) <= TOL
