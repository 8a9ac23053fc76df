"""NVFP4 checkpoints: `qwen-stack quantize` round trip, ModelOpt-layout files, exclusions, errors."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from qwen_stack.qwen_node.engine.nvfp4 import dequantize_nvfp4, quantize_nvfp4
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import (
    CheckpointError,
    NVFP4CheckpointReader,
    is_excluded,
    quantize_checkpoint,
    read_quant_config,
)
from qwen_stack.qwen_node.engine.nvfp4_cli import quantize_main

PREFIX = "model.language_model.layers"


def _source_tensors(model_dir) -> dict[str, torch.Tensor]:
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module")
def quantized_dir(tiny_moe_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_nvfp4") / "ckpt"
    assert quantize_main(["--model", str(tiny_moe_dir), "--out", str(out), "--quiet"]) == 0
    return out


def test_quantize_cli_prints_progress_and_error_report(tiny_moe_dir, tmp_path, capsys):
    assert quantize_main(["--model", str(tiny_moe_dir), "--out", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out
    assert f"{PREFIX}.0.mlp.experts.3.down_proj.weight [64, 32] -> nvfp4  rel_err" in out
    assert "per-layer relative error: mean" in out
    assert "quantized " in out and "linears" in out


def test_round_trip_is_exact(tiny_moe_dir, quantized_dir):
    src = _source_tensors(tiny_moe_dir)
    reader = NVFP4CheckpointReader(quantized_dir)
    assert reader.quantized_modules, "nothing was quantized"
    for module in reader.quantized_modules:
        expected = quantize_nvfp4(src[f"{module}.weight"])
        got = reader.nvfp4(module)
        assert torch.equal(got.packed, expected.packed), module
        assert torch.equal(got.block_scale.view(torch.uint8), expected.block_scale.view(torch.uint8)), module
        assert torch.equal(got.global_scale, expected.global_scale), module
        assert torch.equal(reader.dense(f"{module}.weight"), dequantize_nvfp4(expected)), module
        assert float(reader.tensor(f"{module}.input_scale")) == 1.0
    quantized_weights = {f"{m}.weight" for m in reader.quantized_modules}
    for name, t in src.items():
        if name not in quantized_weights:  # everything else copied bit for bit
            assert torch.equal(reader.tensor(name), t), name


def test_default_exclusions_follow_the_published_layout(quantized_dir):
    reader = NVFP4CheckpointReader(quantized_dir)
    q = set(reader.quantized_modules)
    # all-linears: routed + shared experts, attention and the large DeltaNet projections in NVFP4
    for e in range(4):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            assert f"{PREFIX}.0.mlp.experts.{e}.{proj}" in q
            assert f"{PREFIX}.0.mlp.shared_expert.{proj}" in q
    for name in ("linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.out_proj"):
        assert f"{PREFIX}.0.{name}" in q
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"):
        assert f"{PREFIX}.3.{name}" in q
    # kept: router, shared-expert gate, DeltaNet a/b, lm_head, embeddings, vision tower
    for name in ("mlp.gate", "mlp.shared_expert_gate", "linear_attn.in_proj_a", "linear_attn.in_proj_b"):
        assert f"{PREFIX}.0.{name}" not in q
        assert reader.tensor(f"{PREFIX}.0.{name}.weight").dtype == torch.bfloat16
    assert "lm_head" not in q and not any("visual" in m or "embed" in m for m in q)
    cfg = json.loads((quantized_dir / "hf_quant_config.json").read_text())
    assert cfg["quantization"]["quant_algo"] == "NVFP4"
    assert cfg["quantization"]["group_size"] == 16
    assert cfg["quantization"]["kv_cache_quant_algo"] is None
    excluded = cfg["quantization"]["exclude_modules"]
    assert "lm_head" in excluded and f"{PREFIX}.0.mlp.gate" in excluded
    assert "model.visual.blocks.0.attn.qkv" in excluded
    assert not set(excluded) & q
    qc = json.loads((quantized_dir / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "modelopt" and qc["quant_algo"] == "NVFP4"
    assert qc["ignore"] == excluded
    assert qc["config_groups"]["group_0"]["weights"] == {"dynamic": False, "num_bits": 4, "type": "float", "group_size": 16}
    # on-disk dtypes and shapes
    m = f"{PREFIX}.1.mlp.experts.2.down_proj"  # [D, I] = [64, 32]
    assert reader.tensor(f"{m}.weight").dtype == torch.uint8 and reader.shape(f"{m}.weight") == (64, 16)
    assert reader.tensor(f"{m}.weight_scale").dtype == torch.float8_e4m3fn and reader.shape(f"{m}.weight_scale") == (64, 2)
    assert reader.tensor(f"{m}.weight_scale_2").dtype == torch.float32 and reader.shape(f"{m}.weight_scale_2") == ()


@pytest.mark.parametrize(
    "preset,quantized,kept",
    [
        ("mlp-only", ["0.mlp.experts.0.up_proj", "0.mlp.shared_expert.up_proj"],
         ["0.linear_attn.in_proj_qkv", "0.linear_attn.out_proj", "3.self_attn.q_proj", "0.mlp.gate"]),
        ("experts-only", ["0.mlp.experts.1.down_proj"], ["0.mlp.shared_expert.up_proj", "3.self_attn.o_proj"]),
    ],
)
def test_presets(tiny_moe_dir, tmp_path, preset, quantized, kept):
    assert quantize_main(["--model", str(tiny_moe_dir), "--out", str(tmp_path / "q"), "--preset", preset, "--quiet", "--no-error"]) == 0
    q = set(NVFP4CheckpointReader(tmp_path / "q").quantized_modules)
    assert {f"{PREFIX}.{m}" for m in quantized} <= q
    assert not {f"{PREFIX}.{m}" for m in kept} & q


def test_custom_exclusions_and_sharded_output(tiny_moe_dir, tmp_path):
    out = tmp_path / "q"
    report = quantize_checkpoint(tiny_moe_dir, out, exclude=["*.self_attn.*", "*visual*"], shard_bytes=20_000, measure_error=False)
    assert (out / "model.safetensors.index.json").exists()
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1
    reader = NVFP4CheckpointReader(out)
    assert set(reader.quantized_modules) == set(report.quantized)
    assert f"{PREFIX}.0.mlp.gate" in report.quantized  # defaults dropped: the router is quantized now
    assert f"{PREFIX}.3.self_attn.q_proj" in report.excluded
    assert not report.rel_error


def test_handmade_modelopt_layout_checkpoint_loads(modelopt_nvfp4, tmp_path):
    """Files written directly with safetensors the way ModelOpt's HF export lays them out."""
    gen = torch.Generator().manual_seed(7)
    tensors, expected = {}, {}
    for i, (module, shape) in enumerate(
        [("model.layers.0.mlp.experts.0.gate_proj", (32, 64)), ("model.layers.0.self_attn.o_proj", (64, 32))]
    ):
        w = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
        qt, scale, global_scale = modelopt_nvfp4.quantize(w.clone(), 16)
        tensors[f"{module}.weight"] = qt._quantized_data
        tensors[f"{module}.weight_scale"] = scale
        # ModelOpt writes a 0-d tensor; accept the [1] shape some converters produce as well
        tensors[f"{module}.weight_scale_2"] = global_scale.reshape(()) if i == 0 else global_scale.reshape(1)
        tensors[f"{module}.input_scale"] = torch.tensor(0.0123)
        expected[module] = qt.dequantize(dtype=torch.float32, scale=scale, double_scale=global_scale, block_sizes={-1: 16})
    tensors["lm_head.weight"] = torch.randn(8, 64, generator=gen).to(torch.bfloat16)
    tensors["model.norm.weight"] = torch.ones(64, dtype=torch.bfloat16)
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    hf = {
        "producer": {"name": "modelopt", "version": "0.42.0"},
        "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16, "exclude_modules": ["lm_head", "model.visual*"]},
    }
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(hf, indent=4))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_5_moe"}))
    reader = NVFP4CheckpointReader(tmp_path)
    assert reader.quant_config.exclude_modules == ("lm_head", "model.visual*")
    assert reader.quant_config.producer["name"] == "modelopt"
    assert reader.quantized_modules == sorted(expected)
    for module, deq in expected.items():
        assert torch.equal(dequantize_nvfp4(reader.nvfp4(module)), deq)
    assert is_excluded("model.visual.blocks.0.attn.qkv", reader.quant_config.exclude_modules)
    assert not is_excluded("model.layers.0.self_attn.o_proj", reader.quant_config.exclude_modules)


def test_quant_config_from_config_json_only(tmp_path):
    qc = {
        "quant_method": "modelopt", "quant_algo": "NVFP4", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
    }
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": qc}))
    cfg = read_quant_config(tmp_path)
    assert cfg.quant_algo == "NVFP4" and cfg.exclude_modules == ("lm_head",)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x"}))
    assert read_quant_config(tmp_path) is None


def test_other_quant_formats_are_refused(tmp_path):
    (tmp_path / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": "FP8"}}))
    with pytest.raises(CheckpointError, match="only 'NVFP4'"):
        read_quant_config(tmp_path)
    (tmp_path / "hf_quant_config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "gptq"}}))
    with pytest.raises(CheckpointError, match="only ModelOpt NVFP4"):
        read_quant_config(tmp_path)


def test_bad_layout_is_reported(tmp_path):
    save_file(
        {
            "a.weight": torch.zeros(4, 8, dtype=torch.uint8),
            "a.weight_scale": torch.ones(4, 2).to(torch.float8_e4m3fn),  # should be [4, 1]
            "a.weight_scale_2": torch.tensor(1.0),
        },
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="weight_scale shape"):
        NVFP4CheckpointReader(tmp_path).nvfp4("a")


def test_cli_errors(tiny_moe_dir, quantized_dir, tmp_path, capsys):
    assert quantize_main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert quantize_main(["--model", str(quantized_dir), "--out", str(tmp_path / "o2")]) == 2
    assert "already quantized" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert quantize_main(["--model", str(tiny_moe_dir), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert quantize_main(["--model", str(tiny_moe_dir), "--out", str(tmp_path / "o3"), "--shard-size-gb", "0"]) == 2
    assert "--shard-size-gb" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert quantize_main(["--model", str(tmp_path / "empty"), "--out", str(tmp_path / "o4")]) == 2
    assert "no *.safetensors" in capsys.readouterr().err
