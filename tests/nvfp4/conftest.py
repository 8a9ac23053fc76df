"""Shared fixtures for the NVFP4 tests: ModelOpt's quantizer as the bit-exact reference."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))  # tiny_checkpoints: one randomiser for all tests


@pytest.fixture(scope="session")
def modelopt_nvfp4():
    """ModelOpt's NVFP4QTensor, usable on a CPU-only torch.

    ModelOpt 0.42 asks torch.cuda for the device capability before its pure-torch path, which
    raises without CUDA; we replace that probe with one answering "no FP4 hardware" (a test double
    for the probe only, the quantization code itself is ModelOpt's).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import modelopt.torch.quantization.qtensor.nvfp4_tensor as nvfp4_tensor
    nvfp4_tensor.fp4_compatible = lambda: False
    return nvfp4_tensor.NVFP4QTensor


# a tiny Qwen3.5-MoE (text + vision) with every tensor randomised, saved by transformers
TINY_TEXT = dict(
    vocab_size=256, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
    layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
    linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
    linear_conv_kernel_dim=4, moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4,
    num_experts_per_tok=2,
    rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.25, mrope_section=[2, 1, 1],
                         mrope_interleaved=True),
)
TINY_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                   num_position_embeddings=16, patch_size=16, temporal_patch_size=2, spatial_merge_size=2)


def save_tiny_qwen35_moe(path, seed: int = 0, dtype=None, text_overrides: dict | None = None):
    """Write a tiny random Qwen3_5MoeForConditionalGeneration checkpoint; returns the fp32 model.

    Weights ~ N(0, 1/fan_in) (router N(0, 1) so routing is decisive), A_log in [-1, 1], DeltaNet
    norm around 1, other 1-D tensors N(0, 0.3^2): no tensor left at its zero/one initialisation.
    """
    import torch
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    from tiny_checkpoints import randomise  # the engine tests' randomiser (tests/engine)

    torch.manual_seed(seed)
    text = {**TINY_TEXT, **(text_overrides or {})}
    vision = {**TINY_VISION, "out_hidden_size": text["hidden_size"]}
    model = Qwen3_5MoeForConditionalGeneration(Qwen3_5MoeConfig(text_config=text, vision_config=vision))
    randomise(model, seed)
    model.eval()
    model.to(dtype or torch.bfloat16).save_pretrained(str(path))
    return model.float()


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen35_moe")
    save_tiny_qwen35_moe(path)
    return path
