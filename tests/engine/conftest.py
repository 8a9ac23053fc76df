"""Tiny random checkpoints (written once per session by transformers) shared by the engine tests."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_checkpoints import make_checkpoint  # noqa: E402

# name -> (architecture, text config overrides): MoE and dense, with and without vision, several layer
# patterns and head shapes (GQA ratios, DeltaNet key/value head ratios, head dims).
CHECKPOINTS = {
    "moe_vl": ("Qwen3_5MoeForConditionalGeneration", {}),
    "dense_vl": ("Qwen3_5ForConditionalGeneration", dict(heads=2, kv_heads=1, head_dim=32,
                                                          lin_k_heads=2, lin_v_heads=2, lin_k_dim=16, lin_v_dim=8)),
    "moe_text": ("Qwen3_5MoeForCausalLM", dict(layer_types=("full_attention", "linear_attention", "full_attention"),
                                                heads=4, kv_heads=4, head_dim=24, lin_k_heads=1, lin_v_heads=3,
                                                experts=6, top_k=3)),
    "dense_text": ("Qwen3_5ForCausalLM", dict(layer_types=("linear_attention", "full_attention",
                                                            "linear_attention", "linear_attention", "full_attention"),
                                               heads=6, kv_heads=2, head_dim=16, lin_k_dim=16, lin_v_dim=16)),
}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> (folder, transformers reference model in fp32 eval mode)."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("qwen35_tiny")
    out = {}
    for i, (name, (arch, kw)) in enumerate(CHECKPOINTS.items()):
        out[name] = (root / name, make_checkpoint(root / name, arch, seed=100 + i, **kw))
    return out
