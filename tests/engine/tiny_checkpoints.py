"""Tiny random Qwen3.5 checkpoints written by transformers (the reference implementation), for tests and benches.

Every tensor is randomised before saving (norms, A_log, dt_bias and the router included): the default
initialisation leaves some at exactly zero or one, which would hide bugs.
"""
from __future__ import annotations

from pathlib import Path

import torch


def text_config_dict(moe: bool = True, hidden: int = 64, layer_types=("linear_attention", "linear_attention",
                     "linear_attention", "full_attention"), heads: int = 4, kv_heads: int = 2, head_dim: int = 16,
                     lin_k_heads: int = 2, lin_v_heads: int = 4, lin_k_dim: int = 8, lin_v_dim: int = 8,
                     experts: int = 8, top_k: int = 2, vocab: int = 320, mrope_section=None) -> dict:
    rotary = int(head_dim * 0.25)
    section = mrope_section or [rotary // 2 - 2 * (rotary // 6), rotary // 6, rotary // 6]
    d = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=len(layer_types), layer_types=list(layer_types),
             num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
             linear_key_head_dim=lin_k_dim, linear_value_head_dim=lin_v_dim, linear_num_key_heads=lin_k_heads,
             linear_num_value_heads=lin_v_heads, linear_conv_kernel_dim=4, rms_norm_eps=1e-6,
             rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.25,
                                  mrope_section=section, mrope_interleaved=True))
    if moe:
        d.update(num_experts=experts, num_experts_per_tok=top_k, moe_intermediate_size=32,
                 shared_expert_intermediate_size=48)
    else:
        d.update(intermediate_size=96)
    return d


def vision_config_dict(out_hidden: int = 64) -> dict:
    return dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=out_hidden,
                num_position_embeddings=16, patch_size=16, temporal_patch_size=2, spatial_merge_size=2)


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            fan_in = p[0].numel() if p.dim() > 2 and "experts" not in name else p.shape[-1]
            std = 1.0 if name.endswith("mlp.gate.weight") else fan_in ** -0.5
            p.copy_(torch.randn(p.shape, generator=g) * std)
        elif name.endswith("A_log"):
            p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
        elif name.endswith("linear_attn.norm.weight"):
            p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


def make_checkpoint(out_dir: str | Path, arch: str = "Qwen3_5MoeForConditionalGeneration", seed: int = 0,
                    **text_kwargs):
    """Write a tiny random checkpoint of `arch` into out_dir; returns the transformers model (fp32, eval)."""
    import transformers as tf
    moe = "Moe" in arch
    text = text_config_dict(moe=moe, **text_kwargs)
    vocab = text["vocab_size"]
    # placeholder ids must be inside the vocabulary: keep Qwen's ids when it is full size, else the last ones
    ids = {} if vocab > 248057 else dict(image_token_id=vocab - 20, video_token_id=vocab - 19,
                                         vision_start_token_id=vocab - 18, vision_end_token_id=vocab - 17)
    if arch == "Qwen3_5MoeForConditionalGeneration":
        cfg = tf.Qwen3_5MoeConfig(text_config=text, vision_config=vision_config_dict(text["hidden_size"]), **ids)
        model = tf.Qwen3_5MoeForConditionalGeneration(cfg)
    elif arch == "Qwen3_5ForConditionalGeneration":
        cfg = tf.Qwen3_5Config(text_config=text, vision_config=vision_config_dict(text["hidden_size"]), **ids)
        model = tf.Qwen3_5ForConditionalGeneration(cfg)
    elif arch == "Qwen3_5MoeForCausalLM":
        model = tf.Qwen3_5MoeForCausalLM(tf.Qwen3_5MoeTextConfig(**text))
    elif arch == "Qwen3_5ForCausalLM":
        model = tf.Qwen3_5ForCausalLM(tf.Qwen3_5TextConfig(**text))
    else:
        raise ValueError(f"unknown arch {arch}")
    randomise(model, seed)
    model.eval()
    model.save_pretrained(str(out_dir))
    return model
