"""`train-brain --qat`: the weights a step runs through are exactly the NVFP4 checkpoint's (what the engine
computes with after `qwen-stack quantize`), the gradient reaches the full-precision weights, and those come
back after the step."""
from __future__ import annotations

import json

import pytest
import torch

from qwen_stack.qwen_node.brain import train
from qwen_stack.qwen_node.brain.model_config import brain_config
from qwen_stack.qwen_node.brain.qat import NVFP4FakeQuant, nvfp4_round_trip
from qwen_stack.qwen_node.engine.loader import hf_tensors, load_model
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import NVFP4CheckpointReader, quantize_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A fresh random tiny brain (bf16 on disk, as train-brain saves), its NVFP4 copy, the engine model in fp32."""
    import transformers as tf

    d = tmp_path_factory.mktemp("qat")
    torch.manual_seed(0)
    tf.Qwen3_5MoeForCausalLM(brain_config(96, "tiny")).to(torch.bfloat16).save_pretrained(str(d / "bf16"))
    quantize_checkpoint(d / "bf16", d / "nvfp4", measure_error=False)
    return d, load_model(d / "bf16", dtype=torch.float32, progress=False)


def test_inside_the_block_the_weights_are_the_nvfp4_checkpoints(tiny):
    d, model = tiny
    before = {n: t.clone() for n, t in hf_tensors(model)}
    fq = NVFP4FakeQuant(model, d / "bf16")
    ckpt = NVFP4CheckpointReader(d / "nvfp4")
    quantized = {k[: -len(".weight")] for k in ckpt.keys() if k.endswith(".weight") and ckpt.is_quantized(k[:-7])}
    assert set(fq.names) == quantized and any(".experts." in n for n in quantized)
    with fq:
        now = dict(hf_tensors(model))
        for n in fq.names:   # bit for bit: every routed expert's projections with their own global scale
            assert torch.equal(now[n + ".weight"], ckpt.nvfp4(n).dequantize()), n
            assert not torch.equal(now[n + ".weight"], before[n + ".weight"]), n
        for n in now:        # the layers the checkpoint keeps (router, embeddings, norms ...) untouched
            if n[: -len(".weight")] not in quantized:
                assert torch.equal(now[n], before[n]), n
    assert all(torch.equal(t, before[n]) for n, t in hf_tensors(model))


def test_the_gradient_is_the_quantized_models_and_reaches_the_full_precision_weights(tiny):
    d, model = tiny
    ids = torch.randint(0, 96, (1, 40), generator=torch.Generator().manual_seed(3))
    fq = NVFP4FakeQuant(model, d / "bf16")
    for p in model.parameters():
        p.requires_grad_(True)
    with fq:
        model(input_ids=ids).float().logsumexp(-1).sum().backward()
    ste = {n: p.grad.clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    # the reference: a second model whose weights are the round trip, with no context at all
    ref = load_model(d / "bf16", dtype=torch.float32, progress=False)
    for p in ref.parameters():
        p.requires_grad_(True)
    views = dict(hf_tensors(ref))
    with torch.no_grad():
        for n in fq.names:
            views[n + ".weight"].copy_(nvfp4_round_trip(views[n + ".weight"]))
    ref(input_ids=ids).float().logsumexp(-1).sum().backward()
    for n, p in ref.named_parameters():
        assert torch.allclose(ste[n], p.grad, rtol=1e-5, atol=1e-6), n


def test_an_error_inside_the_block_still_restores_the_weights(tiny):
    d, model = tiny
    before = {n: t.clone() for n, t in hf_tensors(model)}
    fq = NVFP4FakeQuant(model, d / "bf16")
    with pytest.raises(KeyError), fq:
        raise KeyError("boom")
    assert all(torch.equal(t, before[n]) for n, t in hf_tensors(model))
    with fq, pytest.raises(RuntimeError, match="re-entrant"), fq:
        pass


def test_train_brain_qat_logs_both_figures_and_saves_the_full_precision_weights(tiny, tmp_path):
    d, _ = tiny
    out = tmp_path / "run"
    args = ["--out", str(out), "--size", "tiny", "--train-examples", "6", "--test-examples", "2", "--steps", "2",
            "--eval-every", "2", "--eval-examples", "1", "--warmup", "1", "--batch", "2", "--first-turns", "2",
            "--lr", "0.05", "--qat"]
    assert train.main(args) == 0
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    final = rows[-1]["final"]
    for key in ("heldout_next_action_acc", "nvfp4_heldout_next_action_acc", "nvfp4_heldout_loss"):
        assert 0 <= final[key] <= (1 if "acc" in key else 1e9)
    assert "nvfp4_heldout_loss" in rows[1]
    # the saved checkpoint is the full-precision weights, not their NVFP4 round trip
    saved = load_model(out / "model", dtype=torch.float32, progress=False)
    fq = NVFP4FakeQuant(saved, out / "model")
    views = dict(hf_tensors(saved))
    off_grid = sum(not torch.equal(views[n + ".weight"], nvfp4_round_trip(views[n + ".weight"])) for n in fq.names)
    assert off_grid == len(fq.names)
