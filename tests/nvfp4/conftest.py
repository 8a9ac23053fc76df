"""Shared fixtures for the NVFP4 tests: ModelOpt's quantizer as the bit-exact reference."""
from __future__ import annotations

import warnings

import pytest


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
    vocab_size=256, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
    moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
)
TINY_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)


def save_tiny_qwen35_moe(path, seed: int = 0) -> None:
    import torch
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen3_5MoeForConditionalGeneration(Qwen3_5MoeConfig(text_config=TINY_TEXT, vision_config=TINY_VISION))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.1 if p.dim() > 1 else 0.05
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    model.to(torch.bfloat16).save_pretrained(str(path))


@pytest.fixture(scope="session")
def tiny_moe_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_qwen35_moe")
    save_tiny_qwen35_moe(path)
    return path
