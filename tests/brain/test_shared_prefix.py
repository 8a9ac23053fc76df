"""The shared-prefix training forward gives the loss and the gradients of the conversations run one by one
through the engine's own inference forward, on a tiny random model (fresh inputs each run)."""
from __future__ import annotations

import importlib.util
import random

import pytest
import torch
import torch.nn.functional as F

from qwen_stack.paths import SOURCE_ROOT
from qwen_stack.qwen_node.brain import shared_prefix as SP


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import transformers as tf

    from qwen_stack.qwen_node.brain.model_config import brain_config
    from qwen_stack.qwen_node.engine.loader import load_model

    folder = tmp_path_factory.mktemp("sp_init")
    torch.manual_seed(0)
    hf = tf.Qwen3_5MoeForCausalLM(brain_config(300, "tiny"))
    engine_tests = importlib.util.spec_from_file_location("engine_tiny_checkpoints",
                                                          SOURCE_ROOT / "tests" / "engine" / "tiny_checkpoints.py")
    mod = importlib.util.module_from_spec(engine_tests)
    engine_tests.loader.exec_module(mod)
    mod.randomise(hf, 5)     # not the near-zero init: every path must carry signal
    hf.save_pretrained(str(folder))
    m = load_model(folder, dtype=torch.float32, progress=False)
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def batch_of(rng, prefix_len=150, n=3):
    V = 300
    prefix = [rng.randrange(V) for _ in range(prefix_len)]
    sufs = []
    for _ in range(n):
        L = rng.randrange(70, 160)   # over one 64-token DeltaNet chunk, different lengths: padding
        sufs.append(([rng.randrange(V) for _ in range(L)], [0.0] + [rng.choice([0.0, 1.0, 4.0]) for _ in range(L - 1)]))
    return prefix, sufs


def one_by_one(model, prefix, sufs):
    total = 0.0
    for s, w in sufs:
        ids = torch.tensor([prefix + s])
        logits = model(input_ids=ids)[0].float()          # the engine's inference forward (its caches)
        ce = F.cross_entropy(logits[:-1], ids[0, 1:], reduction="none")
        total = total + (ce * torch.tensor([0.0] * len(prefix) + w)[1:]).sum()
    return total


def test_loss_matches_the_conversations_one_by_one(model):
    rng = random.Random()
    prefix, sufs = batch_of(rng)
    loss, wsum, _, _ = SP.batch_loss(model, prefix, sufs)
    with torch.no_grad():
        ref = one_by_one(model, prefix, sufs)
    assert float(wsum) == sum(sum(w) for _, w in sufs)
    assert torch.allclose(loss, ref, rtol=1e-5), (float(loss), float(ref))


def test_gradients_match_the_full_sequences(model):
    seed = random.randrange(2 ** 32)
    prefix, sufs = batch_of(random.Random(seed), n=2)
    model.zero_grad()
    SP.batch_loss(model, prefix, sufs)[0].backward()
    shared = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    total = 0.0
    for s, w in sufs:   # the full sequence through the same functional forward, no prefix sharing
        ids = torch.tensor([prefix + s])
        h, _ = SP.hidden_states(model, ids)
        ce = F.cross_entropy(model.lm_head(h[0, :-1]).float(), ids[0, 1:], reduction="none")
        total = total + (ce * torch.tensor([0.0] * len(prefix) + w)[1:]).sum()
    total.backward()
    assert shared.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for n, p in model.named_parameters():
        if n in shared:
            err = (shared[n] - p.grad).abs().max() / p.grad.abs().max().clamp_min(1e-12)
            # The problem is ill-conditioned on this random model: scaling the weights by 1 + 1e-7 noise (fp32
            # rounding) moves the reference gradient itself by up to 5e-3 (seen: 7.3e-3 between the two paths).
            # A lost path is far larger: detaching the prefix's conv inputs, recurrent state or keys gives
            # 6.6e-2 .. 1.6 (measured over 8 seeds each).
            assert err < 2e-2, (seed, n, float(err))
    model.zero_grad()


def test_a_trained_first_suffix_token_is_refused(model):
    with pytest.raises(ValueError, match="first token"):
        SP.batch_loss(model, [1, 2, 3], [([4, 5], [1.0, 1.0])])
