"""lm_head in NVFP4 (`qwen-stack quantize --lm-head nvfp4`): written, recorded, loaded packed, run by the fused
kernel in eager and compiled decode; checkpoints without it (the default, and models/brain-nvfp4) load as before."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from qwen_stack.qwen_node.engine.loader import load_model
from qwen_stack.qwen_node.engine.model import Linear
from qwen_stack.qwen_node.engine.nvfp4 import NVFP4Linear, quantize_nvfp4
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import CheckpointError, quantize_checkpoint, read_quant_config
from qwen_stack.qwen_node.engine.nvfp4_cli import quantize_main
from qwen_stack.qwen_node.engine.nvfp4_loader import load_model_auto

from .test_nvfp4_engine import fake_quant_copy, greedy, rel_max


def tensor(model_dir, name):
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(name)


@pytest.fixture(scope="module")
def head_dir(tiny_moe_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm_head_nvfp4") / "q"
    report = quantize_checkpoint(tiny_moe_dir, out, lm_head=True)
    assert "lm_head" in report.quantized and 0 < report.rel_error["lm_head"] < 0.2
    return out


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory):
    """A dense text-only model whose lm_head is its embedding matrix (transformers stores it once)."""
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    from .conftest import TINY_TEXT

    text = {k: v for k, v in TINY_TEXT.items() if "expert" not in k}
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("tied") / "src"
    model = Qwen3_5ForCausalLM(Qwen3_5TextConfig(**text, intermediate_size=96, tie_word_embeddings=True))
    model.to(torch.bfloat16).save_pretrained(str(path))
    return path


def test_the_option_is_recorded_and_lm_head_loads_packed(tiny_moe_dir, head_dir):
    assert "lm_head" not in read_quant_config(head_dir).exclude_modules
    cfg = json.loads((head_dir / "config.json").read_text())
    assert "lm_head" not in cfg["quantization_config"]["ignore"]
    want = quantize_nvfp4(tensor(tiny_moe_dir, "lm_head.weight"))
    assert torch.equal(tensor(head_dir, "lm_head.weight"), want.packed)
    model = load_model_auto(head_dir, dtype=torch.bfloat16, progress=False)
    head = model.lm_head
    assert isinstance(head, NVFP4Linear) and head.weight.dtype == torch.uint8
    assert torch.equal(head.qweight.dequantize(), want.dequantize())
    assert model.text.embed_tokens.weight.dtype == torch.bfloat16              # caches follow the activations
    model.setup_caches(1, 4)
    assert model.text.layers[3].self_attn.k_cache.dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lm_head_matches_the_dequantize_then_linear_reference(head_dir, dtype):
    head = load_model_auto(head_dir, dtype=dtype, progress=False).lm_head
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    h = torch.randn(7, head.in_features, generator=gen).to(dtype)
    ref = F.linear(h, head.qweight.dequantize(dtype))
    assert torch.equal(head(h), ref)                      # prefill: one tile of the reference's values, one GEMM
    row = head(h[:1])                                     # decode: the fused kernel, fp32 accumulation
    ref32 = F.linear(h[:1].float(), head.qweight.dequantize(torch.float32))
    tol = 1e-5 if dtype == torch.float32 else 1e-2        # bf16: the result is rounded once to bf16
    assert rel_max(row, ref32) <= tol


def test_model_with_nvfp4_lm_head_matches_the_dequantized_reference(tiny_moe_dir, head_dir):
    q = load_model_auto(head_dir, dtype=torch.float32, progress=False)
    fake = fake_quant_copy(load_model(tiny_moe_dir, dtype=torch.float32, progress=False), q)
    fake.lm_head.weight.data = q.lm_head.qweight.dequantize(torch.float32)
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert rel_max(q(ids), fake(ids)) <= 1e-4


def test_default_keeps_lm_head_and_loads_as_before(tiny_moe_dir, tmp_path):
    quantize_checkpoint(tiny_moe_dir, tmp_path / "q", measure_error=False)
    assert "lm_head" in read_quant_config(tmp_path / "q").exclude_modules
    model = load_model_auto(tmp_path / "q", dtype=torch.bfloat16, progress=False)
    assert type(model.lm_head) is Linear
    assert torch.equal(model.lm_head.weight, tensor(tiny_moe_dir, "lm_head.weight"))


def test_tied_lm_head_gets_its_own_packed_tensor_and_the_embedding_stays(tied_dir, tmp_path):
    quantize_checkpoint(tied_dir, tmp_path / "q", lm_head=True, measure_error=False)
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is False
    embed = tensor(tied_dir, "model.embed_tokens.weight")
    assert torch.equal(tensor(tmp_path / "q", "model.embed_tokens.weight"), embed)
    model = load_model_auto(tmp_path / "q", dtype=torch.bfloat16, progress=False)
    assert isinstance(model.lm_head, NVFP4Linear)
    assert torch.equal(model.lm_head.qweight.dequantize(), quantize_nvfp4(embed).dequantize())
    ids = torch.tensor([[5, 0, 255, 17]])
    assert torch.equal(model.embed(ids)[0], embed[ids[0]])                      # the lookup reads the bf16 rows
    # without the option the tied model loads as before: lm_head is the embedding matrix
    quantize_checkpoint(tied_dir, tmp_path / "keep", measure_error=False)
    kept = load_model_auto(tmp_path / "keep", dtype=torch.bfloat16, progress=False)
    assert type(kept.lm_head) is Linear and torch.equal(kept.lm_head.weight, embed)


def test_untied_model_without_lm_head_tensor_is_refused(tied_dir, tmp_path):
    cfg_path = tmp_path / "src" / "config.json"
    import shutil
    shutil.copytree(tied_dir, tmp_path / "src")
    cfg = json.loads(cfg_path.read_text())
    cfg["tie_word_embeddings"] = False
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no lm_head.weight"):
        quantize_checkpoint(tmp_path / "src", tmp_path / "q", lm_head=True, measure_error=False)


def test_cli_option_and_its_contradiction(tiny_moe_dir, tmp_path, capsys):
    assert quantize_main(["--model", str(tiny_moe_dir), "--out", str(tmp_path / "a"), "--lm-head", "nvfp4",
                          "--quiet", "--no-error"]) == 0
    assert "lm_head" not in read_quant_config(tmp_path / "a").exclude_modules
    assert quantize_main(["--model", str(tiny_moe_dir), "--out", str(tmp_path / "b"), "--lm-head", "nvfp4",
                          "--exclude", "lm_head"]) == 2
    assert "contradicts" in capsys.readouterr().err


def test_compiled_decode_with_nvfp4_lm_head_matches_eager(head_dir):
    """The compiled step calls the fused kernel for lm_head too (one more matvec per step, [V, D/2] codes) and
    gives eager decoding's greedy tokens (fp32: in bf16 the compiled step's fused loops round differently from
    eager's, which flips near-ties of this random model whatever the weights' format)."""
    from qwen_stack.qwen_node.engine import compiled_decode
    from qwen_stack.qwen_node.engine.generate import SamplingParams, generate

    torch._dynamo.reset()
    model = load_model_auto(head_dir, dtype=torch.float32, progress=False)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()))))
    want = greedy(model, ids, 10)
    logs = []
    assert compiled_decode.enable_with_warm_up(model, log=logs.append), logs
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        res = generate(model, ids[0].tolist(), SamplingParams(max_new_tokens=10))
    heads = [e for e in prof.key_averages(group_by_input_shape=True)
             if e.key == "qwen_stack_nvfp4::matvec" and list(e.input_shapes[1]) == [256, 32]]
    assert heads and heads[0].count >= 9, "lm_head did not go through the fused kernel in the compiled step"
    assert res.token_ids == want[0].tolist()
    torch._dynamo.reset()
