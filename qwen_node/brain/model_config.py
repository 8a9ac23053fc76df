"""The brain's architecture: Qwen3.5-MoE (transformers' Qwen3_5MoeTextConfig), scaled down.

Kept from the real model: the 3:1 pattern of Gated DeltaNet and gated full-attention layers,
sparse MoE with top-k routing plus a shared expert in every layer, partial rotary (25%) with the
interleaved M-RoPE sections, RMSNorm. Scaled down: width, depth, heads, experts and the pruned
vocabulary (engine/vocab_map.py), so that training fits about an hour on one CPU thread.
"""
from __future__ import annotations

PRESETS = {
    # hidden, layers, attention heads / kv heads / head dim, DeltaNet k heads / v heads / head dim, experts, top-k,
    # expert width, shared-expert width
    "small": dict(hidden=128, layers=4, heads=4, kv_heads=2, head_dim=32, lin_k_heads=2, lin_v_heads=4, lin_dim=32,
                  experts=8, top_k=2, expert_width=128, shared_width=256),
    # two full-attention layers (layers 3 and 7): one reads the instruction, one the tool results
    "medium": dict(hidden=128, layers=8, heads=4, kv_heads=2, head_dim=32, lin_k_heads=2, lin_v_heads=4, lin_dim=32,
                   experts=8, top_k=2, expert_width=128, shared_width=256),
    "tiny": dict(hidden=64, layers=4, heads=2, kv_heads=1, head_dim=32, lin_k_heads=1, lin_v_heads=2, lin_dim=32,
                 experts=4, top_k=2, expert_width=64, shared_width=128),   # for tests
}


def brain_config(vocab_size: int, preset: str = "small"):
    import transformers as tf

    if preset not in PRESETS:
        raise ValueError(f"model preset {preset!r} unknown; one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    if p["layers"] % 4:
        raise ValueError("layers must be a multiple of 4 (3 DeltaNet : 1 attention)")
    layer_types = (["linear_attention"] * 3 + ["full_attention"]) * (p["layers"] // 4)
    rotary = int(p["head_dim"] * 0.25)
    section = [rotary // 2 - 2 * (rotary // 6), rotary // 6, rotary // 6]
    return tf.Qwen3_5MoeTextConfig(
        vocab_size=vocab_size, hidden_size=p["hidden"], num_hidden_layers=p["layers"], layer_types=layer_types,
        num_attention_heads=p["heads"], num_key_value_heads=p["kv_heads"], head_dim=p["head_dim"],
        linear_key_head_dim=p["lin_dim"], linear_value_head_dim=p["lin_dim"], linear_num_key_heads=p["lin_k_heads"],
        linear_num_value_heads=p["lin_v_heads"], linear_conv_kernel_dim=4, rms_norm_eps=1e-6,
        num_experts=p["experts"], num_experts_per_tok=p["top_k"], moe_intermediate_size=p["expert_width"],
        shared_expert_intermediate_size=p["shared_width"], router_aux_loss_coef=0.001,
        max_position_embeddings=32768, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.25,
                             mrope_section=section, mrope_interleaved=True))
