"""`qwen-stack plan`: tensor inventory vs real checkpoints, hand-derived cache sizes, presets, errors."""
from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from qwen_stack.qwen_node.engine.memory_plan import (
    PRESETS,
    entry_bytes,
    entry_format,
    load_shape,
    main,
    memory_plan,
    shape_from_config,
    tensor_inventory,
)
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import DEFAULT_EXCLUDE, quantize_checkpoint


def _row(rows, item):
    return next(r for r in rows if r.item == item)


def test_inventory_matches_the_transformers_checkpoint(tiny_moe_dir):
    """Every tensor name and shape the planner derives from config.json is in the saved file, and vice versa."""
    shape = shape_from_config(json.loads((tiny_moe_dir / "config.json").read_text()))
    planned = {
        name: e.shape for e in tensor_inventory(shape) if e.part != "mtp" for name in e.names()
    }  # transformers does not save an MTP head
    with safe_open(str(tiny_moe_dir / "model.safetensors"), framework="pt") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert planned == saved


def test_nvfp4_weight_bytes_match_our_quantized_checkpoint(tiny_moe_dir, tmp_path):
    shape = shape_from_config(json.loads((tiny_moe_dir / "config.json").read_text()))
    quantize_checkpoint(tiny_moe_dir, tmp_path / "q", measure_error=False)
    with safe_open(str(tmp_path / "q" / "model.safetensors"), framework="pt") as f:
        on_disk = sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())
    planned = sum(entry_bytes(e, entry_format(e, "nvfp4", DEFAULT_EXCLUDE)) for e in tensor_inventory(shape) if e.part != "mtp")
    assert planned == on_disk


@pytest.mark.parametrize(
    "preset,total_b,active_b",
    # the names promise total / active parameters; the inventory must agree (text + vision, no MTP)
    [("397B-A17B", 397, 17), ("122B-A10B", 122, 10), ("35B-A3B", 35, 3), ("27B", 27, 27)],
)
def test_presets_have_the_advertised_sizes(preset, total_b, active_b):
    s = shape_from_config(PRESETS[preset])
    inv = [e for e in tensor_inventory(s) if e.part != "mtp"]
    total = sum(e.numel for e in inv)
    routed_inactive = sum(
        e.numel // e.count * (e.count - s.top_k) for e in inv if ".experts.{e}." in e.name
    )
    # active: text weights a token uses (not the embedding lookup, not the vision tower)
    active = sum(e.numel for e in inv if e.part == "text" and "embed_tokens" not in e.name) - routed_inactive
    assert abs(total / 1e9 - total_b) / total_b < 0.03, total
    assert abs(active / 1e9 - active_b) / active_b < 0.1, active


def test_35b_a3b_cache_sizes_hand_derived():
    rows = memory_plan(shape_from_config(PRESETS["35B-A3B"]), "nvfp4", 262144, 1)
    # 10 full-attention layers x 262144 tokens x (K, V) x 2 KV heads x 256 x 2 bytes
    assert _row(rows, "KV cache").bytes == 10 * 262144 * 2 * 2 * 256 * 2 == 5_368_709_120
    # 30 DeltaNet layers x (conv 8192 x 3 bf16 + recurrent 32 x 128 x 128 fp32)
    assert _row(rows, "DeltaNet states").bytes == 30 * (8192 * 3 * 2 + 32 * 128 * 128 * 4)
    # routed experts alone: 40 layers x 256 experts x 3 x 2048 x 512 weights
    s = shape_from_config(PRESETS["35B-A3B"])
    experts = sum(e.numel for e in tensor_inventory(s) if e.part == "text" and ".experts.{e}." in e.name)
    assert experts == 40 * 256 * 3 * 2048 * 512


def test_quantization_shrinks_weights_in_order():
    s = shape_from_config(PRESETS["35B-A3B"])

    def weights(quant):
        return sum(r.bytes for r in memory_plan(s, quant, 4096, 1) if r.resident and "weights" in r.item)

    bf16, fp8, nvfp4 = weights("bf16"), weights("fp8"), weights("nvfp4")
    assert nvfp4 < fp8 < bf16
    # KV cache and DeltaNet state do not depend on the weight format
    a, b = memory_plan(s, "bf16", 4096, 2), memory_plan(s, "nvfp4", 4096, 2)
    assert _row(a, "KV cache").bytes == _row(b, "KV cache").bytes
    assert _row(a, "DeltaNet states").bytes == _row(b, "DeltaNet states").bytes


def test_dense_27b_has_no_experts_and_kv_scales_with_batch():
    s = shape_from_config(PRESETS["27B"])
    assert not s.is_moe and s.n_full == 16 and s.n_linear == 48
    one, four = memory_plan(s, "bf16", 1000, 1), memory_plan(s, "bf16", 1000, 4)
    assert _row(four, "KV cache").bytes == 4 * _row(one, "KV cache").bytes


def test_cli_prints_a_table(capsys, tiny_moe_dir):
    assert main(["--model", "35B-A3B", "--quant", "nvfp4", "--context", "8192", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "Qwen3.5-35B-A3B: nvfp4" in out and "KV cache" in out and "total resident" in out
    assert main(["--model", str(tiny_moe_dir), "--quant", "bf16", "--context", "128"]) == 0
    assert "config.json: bf16" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "35B-A3B", "--quant", "int3", "--context", "8"], "--quant"),
        (["--model", "35B-A3B", "--quant", "nvfp4", "--context", "0"], "--context"),
        (["--model", "35B-A3B", "--quant", "nvfp4", "--context", "8", "--batch", "-1"], "--batch"),
        (["--model", "35B-A3B", "--quant", "nvfp4", "--context", "8", "--kv-dtype", "int2"], "--kv-dtype"),
        (["--model", "35B-A3B", "--quant", "nvfp4", "--context", "8", "--preset", "most"], "--preset"),
        (["--model", "70B", "--quant", "nvfp4", "--context", "8"], "not a preset"),
    ],
)
def test_cli_rejects_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_config_fields_are_named(tmp_path):
    raw = json.loads(json.dumps(PRESETS["35B-A3B"]))
    del raw["text_config"]["num_key_value_heads"]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="text_config.num_key_value_heads"):
        load_shape(str(tmp_path))
    raw["text_config"]["num_key_value_heads"] = -2
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="num_key_value_heads=-2"):
        load_shape(str(tmp_path))
