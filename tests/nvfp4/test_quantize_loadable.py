"""The NVFP4 quantizer never writes a checkpoint the loader refuses: routed experts of one layer stay in one
format (an expert down_proj whose input width is not a multiple of 16, or an exclusion naming one expert,
keeps the whole group, and the report says which and why); weights the engine always builds as plain layers
stay as they are whatever the exclusions; every written layout passes the loader and runs."""
from __future__ import annotations

import pytest
import torch

from qwen_stack.qwen_node.engine.nvfp4 import NVFP4Linear
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import (EXCLUDE_PRESETS, CheckpointError, check_loadable,
                                                          plan_quantization, quantize_checkpoint)
from qwen_stack.qwen_node.engine.nvfp4_cli import quantize_main
from qwen_stack.qwen_node.engine.nvfp4_loader import NVFP4Experts, load_model_auto

from .conftest import save_tiny_qwen35_moe

P = "model.language_model.layers"


@pytest.fixture(scope="module")
def odd_experts_dir(tmp_path_factory):
    """moe_intermediate_size 24: every expert's down_proj has an input width 24 (not a multiple of 16)."""
    path = tmp_path_factory.mktemp("odd_experts")
    save_tiny_qwen35_moe(path, seed=3, text_overrides=dict(moe_intermediate_size=24, shared_expert_intermediate_size=24))
    return path


def _run(model):
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        model.setup_caches(1, 8)
        return model(ids, position_ids=torch.arange(4).expand(3, 4).view(3, 1, 4), start=0)


def test_experts_with_an_odd_down_proj_are_kept_as_a_group_and_load(odd_experts_dir, tmp_path):
    said = []
    report = quantize_checkpoint(odd_experts_dir, tmp_path / "q", measure_error=False, progress=said.append)
    # 4 layers x 4 experts: each down_proj kept for its width, so gate and up are kept with it
    assert len([m for m in report.group_kept if ".mlp.experts." in m]) == 4 * 4 * 2
    assert len([m for m in report.not_divisible if ".mlp.experts." in m]) == 4 * 4
    assert report.group_kept[f"{P}.0.mlp.experts.2.gate_proj"].startswith(
        f"{P}.0.mlp.experts.0.down_proj is not divisible, so all 12 expert weights of {P}.0.mlp.experts stay")
    assert not [m for m in report.quantized if ".mlp.experts." in m]
    assert any("kept in source precision" in line and "experts" in line for line in said)
    # the shared expert is ordinary linears: gate/up in NVFP4 beside a bf16 down_proj is fine
    assert f"{P}.0.mlp.shared_expert.gate_proj" in report.quantized
    assert f"{P}.0.mlp.shared_expert.down_proj" in report.not_divisible
    model = load_model_auto(tmp_path / "q", dtype=torch.float32, progress=False)
    layer = model.text.layers[0].mlp
    assert not isinstance(layer.experts, NVFP4Experts) and isinstance(layer.shared_expert.gate_proj, NVFP4Linear)
    assert torch.isfinite(_run(model)).all()


def test_an_exclusion_naming_one_expert_keeps_its_group(tmp_path, tiny_moe_dir):
    report = quantize_checkpoint(tiny_moe_dir, tmp_path / "q", EXCLUDE_PRESETS["all-linears"] + ("*.experts.1.*",),
                                 measure_error=False)
    assert f"{P}.0.mlp.experts.3.down_proj" in report.group_kept
    assert "experts.1.down_proj is excluded" in report.group_kept[f"{P}.0.mlp.experts.3.down_proj"]
    assert torch.isfinite(_run(load_model_auto(tmp_path / "q", dtype=torch.float32, progress=False))).all()


def test_without_exclusions_the_engine_plain_layers_stay(tmp_path, tiny_moe_dir):
    report = quantize_checkpoint(tiny_moe_dir, tmp_path / "q", (), measure_error=False)
    plain = set(report.engine_plain)
    assert "model.language_model.embed_tokens" in plain
    assert "lm_head" in report.excluded               # the --lm-head option alone decides, default keep
    assert any(m.startswith("model.visual.") for m in plain)
    assert f"{P}.0.mlp.gate" in report.quantized      # the router is a builder-made linear: allowed
    assert torch.isfinite(_run(load_model_auto(tmp_path / "q", dtype=torch.float32, progress=False))).all()


@pytest.mark.parametrize("preset", ["all-linears", "mlp-only", "experts-only", "none"])
def test_every_preset_on_odd_widths_writes_a_loadable_checkpoint(odd_experts_dir, tmp_path, preset):
    exclude = () if preset == "none" else EXCLUDE_PRESETS[preset]
    quantize_checkpoint(odd_experts_dir, tmp_path / "q", exclude, measure_error=False)
    check_loadable(tmp_path / "q")
    assert torch.isfinite(_run(load_model_auto(tmp_path / "q", dtype=torch.float32, progress=False))).all()


def test_plan_keeps_groups_whole_and_leaves_other_tensors_alone():
    t = {f"m.experts.{e}.{p}.weight": ((32, 24 if p == "down_proj" else 64), "BF16")
         for e in range(2) for p in ("gate_proj", "up_proj", "down_proj")}
    t.update({"m.q.weight": ((32, 64), "BF16"), "m.norm.weight": ((64,), "BF16"), "m.codes.weight": ((32, 64), "U8"),
              "n.experts.0.gate_proj.weight": ((32, 64), "F32"), "n.experts.0.up_proj.weight": ((32, 64), "F32"),
              "n.experts.0.down_proj.weight": ((64, 32), "F32")})
    plan = plan_quantization(t, ())
    assert {plan[f"m.experts.{e}.{p}"].split(":")[0] for e in range(2) for p in ("gate_proj", "up_proj")} == {"group"}
    assert plan["m.experts.0.down_proj"] == "not_divisible" and plan["m.q"] == "nvfp4"
    assert {plan[f"n.experts.0.{p}"] for p in ("gate_proj", "up_proj", "down_proj")} == {"nvfp4"}
    assert "m.norm" not in plan and "m.codes" not in plan


def test_a_written_checkpoint_the_loader_would_refuse_is_an_error(tmp_path, tiny_moe_dir):
    quantize_checkpoint(tiny_moe_dir, tmp_path / "q", measure_error=False)
    from safetensors.torch import load_file, save_file

    f = tmp_path / "q" / "model.safetensors"
    tensors = load_file(str(f))
    name = f"{P}.1.mlp.experts.2.down_proj.weight_scale_2"
    for leaf in ("weight_scale_2", "weight_scale", "input_scale"):     # one expert back in bf16: mixed
        tensors.pop(name.replace("weight_scale_2", leaf))
    tensors[f"{P}.1.mlp.experts.2.down_proj.weight"] = torch.zeros(64, 32, dtype=torch.bfloat16)
    save_file(tensors, str(f))
    with pytest.raises(CheckpointError, match="would not load.*mixed experts"):
        check_loadable(tmp_path / "q")


def test_a_truncated_source_is_named_by_quantize(tmp_path, tiny_moe_dir, capsys):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(tiny_moe_dir, src)
    f = src / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    assert quantize_main(["--model", str(src), "--out", str(tmp_path / "q"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "cannot be read as safetensors" in err and "Traceback" not in err


@pytest.mark.parametrize("quantization,match", [
    ({"quant_algo": "NVFP4", "group_size": "16"}, "group_size must be an integer"),
    ({"quant_algo": "NVFP4", "exclude_modules": "lm_head"}, "exclude_modules / ignore must be a list"),
])
def test_hf_quant_config_fields_are_typed(tmp_path, quantization, match):
    import json

    from qwen_stack.qwen_node.engine.nvfp4_checkpoint import read_quant_config

    (tmp_path / "hf_quant_config.json").write_text(json.dumps({"quantization": quantization}))
    with pytest.raises(CheckpointError, match=f"hf_quant_config.json: {match}"):
        read_quant_config(tmp_path)
