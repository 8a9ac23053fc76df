"""The engine on NVFP4 checkpoints: packed in memory, weight-only matmuls, ModelOpt-layout files.

Tolerances, engine vs the same engine with every quantized weight dequantized up front (the naive
reference), max |diff| / max |ref|: fp32 1e-4 (the fast path applies the global scale after the
matmul, the reference before: ulp-level differences that this random tiny model amplifies about
tenfold over its four layers, since 10% weight noise moves its logits by ~100%). Whole-model bf16
is not compared: on this random model plain bf16 vs plain fp32 already differ by 0.68 (max) in
the logits; bf16 is compared per module (test_nvfp4_format, experts test here) instead.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from qwen_stack.qwen_node.engine.loader import load_model
from qwen_stack.qwen_node.engine.model import Linear
from qwen_stack.qwen_node.engine.nvfp4 import NVFP4Linear
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import EXCLUDE_PRESETS, is_excluded, quantize_checkpoint
from qwen_stack.qwen_node.engine.nvfp4_loader import (
    NVFP4ExpertWeights,
    NVFP4Experts,
    load_model_auto,
    resident_weight_bytes,
)


def rel_max(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float() - ref.float()).abs().max() / ref.float().abs().max())


def rel_norm(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float() - ref.float()).norm() / ref.float().norm())


@pytest.fixture(scope="module")
def nvfp4_dir(tiny_moe_dir, tmp_path_factory):
    """Default preset (all-linears): attention and DeltaNet projections in NVFP4 too."""
    out = tmp_path_factory.mktemp("engine_nvfp4") / "q"
    quantize_checkpoint(tiny_moe_dir, out, measure_error=False)
    return out


def fake_quant_copy(plain_model, nvfp4_model):
    """The plain model with every weight the NVFP4 model holds replaced by its dequantized value."""
    fake = copy.deepcopy(plain_model)
    modules = dict(fake.named_modules())
    for name, m in nvfp4_model.named_modules():
        dtype = modules["lm_head"].weight.dtype
        if isinstance(m, NVFP4Linear):
            modules[name].weight.data = m.qweight.dequantize(dtype)
        elif isinstance(m, NVFP4Experts):
            modules[name].gate_up_proj.data = m.gate_up_proj.dequantize(dtype)
            modules[name].down_proj.data = m.down_proj.dequantize(dtype)
    return fake


def greedy(model, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding with the engine's caches: prefill, then one token per step. ids: [1, T]."""
    model.setup_caches(1, ids.shape[1] + new_tokens)  # sized once: growing them later drops their state
    with torch.no_grad():
        logits = model(ids, start=0, last_only=True)  # [1, 1, V]
        out = [int(logits[0, -1].argmax())]
        for i in range(new_tokens - 1):
            t = ids.shape[1] + i
            logits = model(torch.tensor([[out[-1]]]), start=t, last_only=True)
            out.append(int(logits[0, -1].argmax()))
    return torch.tensor([out])


def test_nvfp4_checkpoint_loads_packed(nvfp4_dir):
    model = load_model_auto(nvfp4_dir, dtype=torch.bfloat16, progress=False)
    layer0, layer3 = model.text.layers[0], model.text.layers[3]
    assert isinstance(layer0.mlp.experts, NVFP4Experts)
    assert isinstance(layer0.linear_attn.in_proj_qkv, NVFP4Linear)
    assert isinstance(layer3.self_attn.q_proj, NVFP4Linear)
    assert isinstance(layer0.mlp.gate, torch.nn.Linear) and layer0.mlp.gate.weight.dtype == torch.bfloat16
    assert isinstance(layer0.linear_attn.in_proj_a, torch.nn.Linear)
    # packed in memory: quantized modules hold only uint8 codes, e4m3 scales and fp32 scalars
    for m in model.modules():
        if isinstance(m, (NVFP4Linear, NVFP4ExpertWeights)):
            assert m.weight.dtype == torch.uint8 and m.weight_scale.dtype == torch.float8_e4m3fn
            assert m.weight_scale_2.dtype == torch.float32
    assert layer0.mlp.experts.gate_up_proj.weight.shape == (4, 64, 32)  # [E, 2I, D/2]
    assert layer0.mlp.experts.gate_up_proj.weight_scale_2.shape == (4, 2)  # gate and up keep their own
    # resident bytes of the quantized layers vs the same layers in bf16: (0.5 + 1/16) B/weight + scalars
    sizes = resident_weight_bytes(model)
    n_weights = sum(
        m.weight.numel() * 2 for m in model.modules() if isinstance(m, (NVFP4Linear, NVFP4ExpertWeights))
    )
    assert sizes["nvfp4"] / (2 * n_weights) <= 0.30


def test_engine_matches_naive_dequantized_reference(tiny_moe_dir, nvfp4_dir):
    dtype, tol = torch.float32, 1e-4
    q = load_model_auto(nvfp4_dir, dtype=dtype, progress=False)
    fake = fake_quant_copy(load_model(tiny_moe_dir, dtype=dtype, progress=False), q)
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert rel_max(q(ids), fake(ids)) <= tol


def test_experts_fast_path_matches_reference():
    gen = torch.Generator().manual_seed(4)
    from qwen_stack.qwen_node.engine.nvfp4 import quantize_nvfp4

    E, D, I = 5, 48, 32
    experts = NVFP4Experts(E, D, I)
    gate_up = torch.randn(E, 2 * I, D, generator=gen) * 0.1
    down = torch.randn(E, D, I, generator=gen) * 0.1
    for e in range(E):
        g, u, d = quantize_nvfp4(gate_up[e, :I]), quantize_nvfp4(gate_up[e, I:]), quantize_nvfp4(down[e])
        experts.gate_up_proj.weight[e] = torch.cat([g.packed, u.packed])
        experts.gate_up_proj.weight_scale[e] = torch.cat([g.block_scale, u.block_scale])
        experts.gate_up_proj.weight_scale_2[e] = torch.stack([g.global_scale, u.global_scale])
        experts.down_proj.weight[e], experts.down_proj.weight_scale[e] = d.packed, d.block_scale
        experts.down_proj.weight_scale_2[e] = d.global_scale
    x = torch.randn(9, D, generator=gen)  # x: [N, D]
    top_w, top_idx = torch.rand(9, E, generator=gen).softmax(-1).topk(2, dim=-1)  # [N, K]
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        got = experts(x.to(dtype), top_idx, top_w.to(dtype))
        want = experts.forward_reference(x.to(dtype), top_idx, top_w.to(dtype))
        assert rel_max(got, want) <= tol


def test_generates_and_reports_logits_error(tiny_moe_dir, nvfp4_dir, capsys):
    q = load_model_auto(nvfp4_dir, dtype=torch.float32, progress=False)
    plain = load_model(tiny_moe_dir, dtype=torch.float32, progress=False)
    prompt = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(3))
    tokens = greedy(q, prompt, 8)
    assert tokens.shape == (1, 8) and int(tokens.min()) >= 0 and int(tokens.max()) < 256
    # cached decoding agrees with one full pass over prompt + generated tokens
    full = torch.cat([prompt, tokens[:, :-1]], dim=1)
    with torch.no_grad():
        recomputed = q(full, start=0)[0, prompt.shape[1] - 1 :].argmax(-1)
        assert torch.equal(recomputed, tokens[0])
        ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
        ref, got = plain(ids), q(ids)
    err = rel_norm(got, ref)
    top1 = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    with capsys.disabled():
        print(f"\n[nvfp4] tiny MoE end-to-end logits, NVFP4 vs unquantized (fp32): rel L2 error {err:.3f}, top-1 agreement {top1:.2f}")
    assert 0.0 < err < 5.0  # quantization changed something, nothing blew up (context: see bench/nvfp4.py)


def _write_modelopt_layout(src_dir, out_dir, NVFP4QTensor, variants: bool = False) -> None:
    """Quantize with ModelOpt itself and lay the files out as its HF export does (scalars as 0-d).

    variants: store scalars as [1], block scales as raw uint8 and codes as int8 (other converters).
    """
    out_dir.mkdir()
    tensors = {}
    with safe_open(str(src_dir / "model.safetensors"), framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            module = name[: -len(".weight")]
            if t.dim() == 2 and name.endswith(".weight") and not is_excluded(module, EXCLUDE_PRESETS["all-linears"]):
                qt, scale, global_scale = NVFP4QTensor.quantize(t.clone(), 16)
                tensors[name] = qt._quantized_data.view(torch.int8) if variants else qt._quantized_data
                tensors[f"{module}.weight_scale"] = scale.view(torch.uint8) if variants else scale
                tensors[f"{module}.weight_scale_2"] = global_scale.reshape((1,) if variants else ())
                tensors[f"{module}.input_scale"] = torch.tensor([0.05] if variants else 0.05)
            else:
                tensors[name] = t
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((src_dir / "config.json").read_text())
    hf = {
        "producer": {"name": "modelopt", "version": "0.42.0"},
        "quantization": {
            "quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
            "exclude_modules": ["lm_head", "model.language_model.layers.*.mlp.gate", "model.visual*"],
        },
    }
    (out_dir / "hf_quant_config.json").write_text(json.dumps(hf, indent=4))
    (out_dir / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("variants", [False, True])
def test_modelopt_layout_checkpoint_runs_identically(modelopt_nvfp4, tiny_moe_dir, nvfp4_dir, tmp_path, variants):
    _write_modelopt_layout(tiny_moe_dir, tmp_path / "modelopt", modelopt_nvfp4, variants)
    theirs = load_model_auto(tmp_path / "modelopt", dtype=torch.float32, progress=False)
    ours = load_model_auto(nvfp4_dir, dtype=torch.float32, progress=False)
    assert isinstance(theirs.text.layers[1].mlp.experts, NVFP4Experts)
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(theirs(ids), ours(ids))  # bit-exact quantizer -> identical logits


def test_mlp_only_checkpoint_runs(tiny_moe_dir, tmp_path):
    quantize_checkpoint(tiny_moe_dir, tmp_path / "q", EXCLUDE_PRESETS["mlp-only"], measure_error=False)
    model = load_model_auto(tmp_path / "q", dtype=torch.float32, progress=False)
    assert isinstance(model.text.layers[0].mlp.experts, NVFP4Experts)
    assert isinstance(model.text.layers[0].mlp.shared_expert.up_proj, NVFP4Linear)
    assert type(model.text.layers[0].linear_attn.in_proj_qkv) is Linear      # the plain (unquantized) one
    fake = fake_quant_copy(load_model(tiny_moe_dir, dtype=torch.float32, progress=False), model)
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert rel_max(model(ids), fake(ids)) <= 1e-4


def test_dense_text_only_checkpoint(tmp_path):
    """Qwen3_5ForCausalLM (dense MLP, "model." prefix, no vision): NVFP4 dense MLP and attention."""
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    from .conftest import TINY_TEXT

    text = {k: v for k, v in TINY_TEXT.items() if "expert" not in k}
    torch.manual_seed(1)
    Qwen3_5ForCausalLM(Qwen3_5TextConfig(**text, intermediate_size=96)).to(torch.bfloat16).save_pretrained(str(tmp_path / "src"))
    quantize_checkpoint(tmp_path / "src", tmp_path / "q", measure_error=False)
    model = load_model_auto(tmp_path / "q", dtype=torch.float32, progress=False)
    assert isinstance(model.text.layers[0].mlp.down_proj, NVFP4Linear)
    assert isinstance(model.text.layers[3].self_attn.o_proj, NVFP4Linear)
    fake = fake_quant_copy(load_model(tmp_path / "src", dtype=torch.float32, progress=False), model)
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert rel_max(model(ids), fake(ids)) <= 1e-4


def test_engine_entry_points_load_nvfp4_folders_packed(nvfp4_dir):
    """Engine.from_pretrained (used by `generate`, `serve` and the agent's local backend) detects NVFP4."""
    from qwen_stack.qwen_node.engine.engine import Engine

    engine = Engine.from_pretrained(nvfp4_dir, dtype=torch.float32, progress=False)
    assert any(isinstance(m, NVFP4Linear) for m in engine.model.modules())
    assert any(isinstance(m, NVFP4Experts) for m in engine.model.modules())
    reference = load_model_auto(nvfp4_dir, dtype=torch.float32, progress=False)
    ids = torch.tensor([[3, 17, 42, 5, 9]])
    with torch.no_grad():
        assert torch.equal(engine.model(ids), reference(ids))


def test_local_chat_engine_refuses_unknown_layer_backend_and_logs_tensorrt_fallback(nvfp4_dir, caplog):
    from qwen_stack.qwen_node.agent.backends.local import LocalChatEngine

    with pytest.raises(ValueError, match="backend"):
        LocalChatEngine(str(nvfp4_dir), "cpu", layer_backend="cuda-magic")
    # No TensorRT here: the engine stays on PyTorch layers and says so (never silently).
    with caplog.at_level("WARNING"):
        chat = LocalChatEngine(str(nvfp4_dir), "cpu", layer_backend="tensorrt", trt_engine_dir=str(nvfp4_dir))
    assert any(isinstance(m, NVFP4Linear) for m in chat.engine.model.modules())
    assert any("tensorrt" in r.getMessage().lower() for r in caplog.records)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "fallback"])
def test_compiled_decode_on_nvfp4_checkpoint_matches_eager(nvfp4_dir, kernel, monkeypatch):
    """The local backend compiles the decode step for every PyTorch-layer checkpoint, NVFP4 ones included: with the
    kernel the graph calls its C++ operator, without it (QWEN_STACK_NATIVE=0) the tiled path's custom op; either
    way the same greedy tokens as eager decoding, and no recompile as positions grow."""
    from qwen_stack.qwen_node.engine import compiled_decode
    from qwen_stack.qwen_node.engine.generate import SamplingParams, generate

    if not kernel:
        monkeypatch.setenv("QWEN_STACK_NATIVE", "0")
    torch._dynamo.reset()                                  # the kernel's availability is fixed when a graph is traced
    model = load_model_auto(nvfp4_dir, dtype=torch.float32, progress=False)
    ids = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()))))
    want = greedy(model, ids, 12)
    logs = []
    assert compiled_decode.enable_with_warm_up(model, log=logs.append), logs
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch._dynamo.config.patch(error_on_recompile=True):
            res = generate(model, ids[0].tolist(), SamplingParams(max_new_tokens=12))
    calls = {e.key: e.count for e in prof.key_averages()}
    used, unused = ("qwen_stack_nvfp4::matvec", "qwen_stack::nvfp4_matvec_tiled")[::1 if kernel else -1]
    assert calls.get(used, 0) >= 11 * 4 and unused not in calls, calls
    assert res.token_ids == want[0].tolist()
    assert torch.equal(greedy(model, ids, 12), want)
    torch._dynamo.reset()
