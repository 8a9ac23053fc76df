"""Checkpoint loading: sharded checkpoints, fused experts, and clear errors naming the tensor or field."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from qwen_stack.qwen_node.engine.config import ConfigError
from qwen_stack.qwen_node.engine.loader import (CheckpointError, FusedExpertsSource, SafetensorsSource,
                                                load_model)

PREFIX = "model.language_model."


def copy_ckpt(checkpoints, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(checkpoints[name][0], dst)
    return dst


def rewrite_tensors(folder, edit):
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_sharded_checkpoint_loads_like_single_file(checkpoints, tmp_path):
    folder, ref = checkpoints["moe_vl"]
    ref.save_pretrained(str(tmp_path / "sharded"), max_shard_size="60KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    a = load_model(folder, dtype=torch.float32, progress=False)
    b = load_model(tmp_path / "sharded", dtype=torch.float32, progress=False)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), na


def test_experts_are_fused_in_order(checkpoints):
    folder, _ = checkpoints["moe_vl"]
    src = FusedExpertsSource(SafetensorsSource(folder))
    p = PREFIX + "layers.1.mlp.experts"
    fused = src.get(p + ".gate_up_proj")
    assert src.shape(p + ".gate_up_proj") == tuple(fused.shape) == (8, 64, 64)
    assert torch.equal(fused[3, :32], src.get(p + ".3.gate_proj.weight"))
    assert torch.equal(fused[3, 32:], src.get(p + ".3.up_proj.weight"))
    assert torch.equal(src.get(p + ".down_proj")[5], src.get(p + ".5.down_proj.weight"))


def test_bf16_load_casts_weights(checkpoints):
    model = load_model(checkpoints["dense_text"][0], dtype=torch.bfloat16, progress=False)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.text.layers[0].linear_attn.A_log.dtype == torch.bfloat16


def test_missing_tensor_is_named(checkpoints, tmp_path):
    folder = copy_ckpt(checkpoints, "moe_vl", tmp_path)
    name = PREFIX + "layers.3.self_attn.k_norm.weight"
    rewrite_tensors(folder, lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match="layers.3.self_attn.k_norm.weight"):
        load_model(folder, dtype=torch.float32, progress=False)


def test_missing_expert_is_named(checkpoints, tmp_path):
    folder = copy_ckpt(checkpoints, "moe_vl", tmp_path)
    rewrite_tensors(folder, lambda t: t.pop(PREFIX + "layers.2.mlp.experts.5.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"layers\.2\.mlp\.experts\.5\.up_proj\.weight"):
        load_model(folder, dtype=torch.float32, progress=False)


def test_shape_mismatch_is_named(checkpoints, tmp_path):
    folder = copy_ckpt(checkpoints, "dense_text", tmp_path)
    name = "model.layers.1.self_attn.v_proj.weight"
    rewrite_tensors(folder, lambda t: t.__setitem__(name, t[name][:-1].clone()))
    with pytest.raises(CheckpointError, match=r"self_attn\.v_proj\.weight.*\(31, 64\)"):
        load_model(folder, dtype=torch.float32, progress=False)


def edit_config(folder, edit):
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_unsupported_architecture_is_named(checkpoints, tmp_path):
    folder = copy_ckpt(checkpoints, "dense_text", tmp_path)
    edit_config(folder, lambda c: c.__setitem__("architectures", ["LlamaForCausalLM"]))
    with pytest.raises(ConfigError, match="architectures.*LlamaForCausalLM"):
        load_model(folder, progress=False)


def test_missing_config_field_is_named(checkpoints, tmp_path):
    folder = copy_ckpt(checkpoints, "moe_vl", tmp_path)
    edit_config(folder, lambda c: c["text_config"].pop("linear_num_value_heads"))
    with pytest.raises(ConfigError, match="text_config.linear_num_value_heads"):
        load_model(folder, progress=False)


def test_no_weights_file(tmp_path, checkpoints):
    shutil.copy(checkpoints["dense_text"][0] / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(tmp_path, progress=False)
