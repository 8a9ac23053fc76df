"""The PyTorch engine's answer for each exported graph: the reference every ONNX/TensorRT run is compared with.

`reference_outputs(model, spec, inputs)` runs the engine module that the graph replaces (SparseMoE,
DenseMLP, GatedDeltaNet with its caches set to the given states, GatedAttention with its KV cache holding
the given past) on the same inputs and returns the same named outputs. `random_inputs(spec, ...)` draws
seeded inputs and states for a graph at a chosen shape; the rotary tables are the model's real ones.
"""
from __future__ import annotations

import numpy as np
import torch

from qwen_stack.qwen_node.engine.model import Qwen35ForGeneration, StepInputs, rotary_tables

from .layer_graphs import GraphSpec


def random_inputs(model: Qwen35ForGeneration, spec: GraphSpec, batch: int, tokens: int, past: int,
                  seed: int) -> dict[str, np.ndarray]:
    """fp32 inputs for `spec`: `tokens` new tokens (ignored by decode graphs: 1), `past` cached positions."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config.text
    D = cfg.hidden_size

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).numpy()

    if spec.kind in ("moe", "dense_mlp"):
        return {"hidden": randn(batch * tokens, D)}
    if spec.kind.startswith("deltanet"):
        T = 1 if spec.kind == "deltanet_decode" else tokens
        mixer = model.text.layers[spec.layer].linear_attn
        return {"hidden": randn(batch, T, D),
                "conv_state": randn(batch, mixer.conv_dim, mixer.kernel - 1),
                "recurrent_state": randn(batch, mixer.n_v, mixer.dk, mixer.dv, scale=0.5)}
    if spec.kind == "attention":
        attn = model.text.layers[spec.layer].self_attn
        pos = torch.arange(past, past + tokens).view(1, 1, tokens).expand(3, batch, tokens)
        cos, sin = rotary_tables(cfg, pos, torch.float32)
        cache = (batch, attn.n_kv, past, attn.head_dim)
        return {"hidden": randn(batch, tokens, D), "cos": cos.numpy(), "sin": sin.numpy(),
                "past_key": randn(*cache), "past_value": randn(*cache)}
    raise ValueError(f"unknown graph kind {spec.kind!r}")


@torch.no_grad()
def reference_outputs(model: Qwen35ForGeneration, spec: GraphSpec, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The engine module's outputs for `inputs`, named like the graph's outputs (fp32 numpy)."""
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    layer = model.text.layers[spec.layer]
    if spec.kind in ("moe", "dense_mlp"):
        return {"out": layer.mlp(t["hidden"][None])[0].numpy()}
    x = t["hidden"]
    B, T, _ = x.shape
    if spec.kind.startswith("deltanet"):
        m = layer.linear_attn
        m.setup_cache(B, 1, torch.float32, x.device)
        m.conv_state.copy_(t["conv_state"])
        m.rec_state.copy_(t["recurrent_state"])
        # start=1: a continuing sequence (start=0 would reset the states the graph receives)
        out = m(x, StepInputs(start=1, cos=torch.zeros(B, T, 0), sin=torch.zeros(B, T, 0)))
        return {"out": out.numpy(), "conv_state_out": m.conv_state.numpy().copy(),
                "recurrent_state_out": m.rec_state.numpy().copy()}
    if spec.kind == "attention":
        m = layer.self_attn
        P = t["past_key"].shape[2]
        m.setup_cache(B, P + T, torch.float32, x.device)
        m.k_cache[:, :, :P] = t["past_key"]
        m.v_cache[:, :, :P] = t["past_value"]
        out = m(x, StepInputs(start=P, cos=t["cos"], sin=t["sin"]))
        return {"out": out.numpy(), "present_key": m.k_cache.numpy().copy(), "present_value": m.v_cache.numpy().copy()}
    raise ValueError(f"unknown graph kind {spec.kind!r}")


def max_relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (relative to the tensor's scale, so near-zero entries do not dominate)."""
    if got.shape != want.shape:
        raise ValueError(f"shape mismatch: got {got.shape}, want {want.shape}")
    return float(np.abs(got.astype(np.float64) - want).max() / max(float(np.abs(want).max()), 1e-30))
