"""Generation: greedy tokens identical to transformers, sampling controls, stops, streaming, cancellation."""
from __future__ import annotations

import threading

import pytest
import torch

from qwen_stack.qwen_node.engine.generate import SamplingParams, generate, sample_next
from qwen_stack.qwen_node.engine.loader import load_model


@pytest.fixture(scope="module")
def moe(checkpoints):
    folder, ref = checkpoints["moe_vl"]
    return load_model(folder, dtype=torch.float32, progress=False), ref


@pytest.mark.parametrize("name", ["moe_vl", "dense_text"])
def test_greedy_32_tokens_identical_to_transformers(checkpoints, name):
    folder, ref = checkpoints[name]
    ours = load_model(folder, dtype=torch.float32, progress=False)
    prompt = torch.randint(0, ours.config.text.vocab_size, (1, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = ref.generate(prompt, max_new_tokens=32, min_new_tokens=32, do_sample=False)[0, 12:].tolist()
    got = generate(ours, prompt[0], SamplingParams(max_new_tokens=32)).token_ids
    assert got == want


def test_seeded_sampling_is_reproducible_and_seed_dependent(moe):
    model, _ = moe
    prompt = list(range(3, 13))
    p = dict(max_new_tokens=12, temperature=1.5)
    a = generate(model, prompt, SamplingParams(seed=1, **p)).token_ids
    b = generate(model, prompt, SamplingParams(seed=1, **p)).token_ids
    c = generate(model, prompt, SamplingParams(seed=2, **p)).token_ids
    assert a == b
    assert a != c


def test_top_k_1_and_tiny_top_p_are_greedy(moe):
    model, _ = moe
    prompt = list(range(20, 30))
    greedy = generate(model, prompt, SamplingParams(max_new_tokens=8)).token_ids
    assert generate(model, prompt, SamplingParams(max_new_tokens=8, temperature=2.0, top_k=1, seed=3)).token_ids == greedy
    assert generate(model, prompt, SamplingParams(max_new_tokens=8, temperature=2.0, top_p=1e-6, seed=3)).token_ids == greedy


def test_sample_next_respects_top_k_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    g = torch.Generator().manual_seed(0)
    top_k = {sample_next(logits, SamplingParams(temperature=1.0, top_k=2), g) for _ in range(200)}
    assert top_k == {0, 1}
    # top_p=0.7: 0.5 alone < 0.7, 0.5+0.3 reaches it -> {0, 1}
    top_p = {sample_next(logits, SamplingParams(temperature=1.0, top_p=0.7), g) for _ in range(200)}
    assert top_p == {0, 1}
    everything = {sample_next(logits, SamplingParams(temperature=1.0), g) for _ in range(400)}
    assert everything == {0, 1, 2, 3}


def test_stop_token_ends_generation(moe):
    model, _ = moe
    prompt = list(range(40, 50))
    free = generate(model, prompt, SamplingParams(max_new_tokens=10)).token_ids
    stop = free[4]
    res = generate(model, prompt, SamplingParams(max_new_tokens=10, stop_token_ids=(stop,)))
    assert res.token_ids == free[:free.index(stop) + 1]
    assert res.finish_reason == "stop_token"


def fake_detokenize(ids):
    """Test double for a tokenizer: token i -> the letter chr(97 + i % 26)."""
    return "".join(chr(97 + i % 26) for i in ids)


def test_stop_string_cuts_text_and_streaming_matches(moe):
    model, _ = moe
    prompt = list(range(60, 70))
    free = generate(model, prompt, SamplingParams(max_new_tokens=10), detokenize=fake_detokenize)
    stop = free.text[5:7]
    streamed = []
    res = generate(model, prompt, SamplingParams(max_new_tokens=10, stop_strings=(stop,)),
                   detokenize=fake_detokenize, on_token=lambda t, d: streamed.append(d))
    assert res.finish_reason == "stop_string"
    assert res.text == free.text[:free.text.find(stop)]
    assert "".join(streamed) == res.text
    assert stop not in "".join(streamed)


def test_cancel_event_stops_generation(moe):
    model, _ = moe
    cancel = threading.Event()
    seen = []

    def on_token(tok, delta):
        seen.append(tok)
        if len(seen) == 3:
            cancel.set()

    res = generate(model, list(range(5, 15)), SamplingParams(max_new_tokens=20), on_token=on_token, cancel=cancel)
    assert res.finish_reason == "cancelled"
    assert len(res.token_ids) == 3


def test_bad_sampling_params_are_rejected():
    for bad in [dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(top_k=-2), dict(stop_strings=("",))]:
        with pytest.raises(ValueError):
            SamplingParams(**bad)
