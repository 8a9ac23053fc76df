"""The tiny checkpoints the TensorRT-path tests export (kept out of conftest so tests can import them)."""

# name -> (architecture, text config overrides, NVFP4 preset written by quantize_checkpoint or None = quantize at export)
CHECKPOINTS = {
    "moe": ("Qwen3_5MoeForCausalLM", dict(layer_types=("linear_attention", "full_attention")), "all-linears"),
    "dense": ("Qwen3_5ForCausalLM", dict(layer_types=("full_attention", "linear_attention"), heads=6, kv_heads=2,
                                         head_dim=32, lin_k_heads=1, lin_v_heads=3, lin_k_dim=16, lin_v_dim=16),
              "all-linears"),
    "moe_bf16": ("Qwen3_5MoeForCausalLM", dict(layer_types=("linear_attention", "full_attention"), heads=4, kv_heads=4,
                                               lin_k_heads=2, lin_v_heads=2, experts=6, top_k=3), None),
}
