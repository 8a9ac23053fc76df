"""Training forward of the engine's model (engine/model.py) for a batch of conversations that share a prefix.

Every conversation the planner writes starts with the same system prompt and tool list (~1,500 tokens,
half of a typical mission). The prefix runs once (batch 1), and its per-layer states -- keys and values
of the attention layers, the last conv inputs and the recurrent state of the Gated DeltaNet layers --
are broadcast to the batch of suffixes. Gradients flow through the broadcast (autograd sums them over
the batch), so the result is exactly the loss of the full conversations one by one (a test compares
them), at a fraction of the cost. Transformers cannot do this: its DeltaNet prefill starts from a zero
state. The engine's own modules hold caches for inference; here their cache-free parts (projections,
norms, gates: GatedAttention.project, GatedDeltaNet.project/heads/output) run without any cache, so the
layer's math is written once.

Suffixes are right-padded: padding comes after every real token, so causality keeps it from
changing them; its positions are never scored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine.gated_delta_rule import gated_delta_rule_chunked
from ..engine.model import rotary_tables


def _attention(m, x, cos, sin, past):
    """GatedAttention.forward without a cache. past: (k, v) [1, Hkv, P, Dh] of the prefix, or None."""
    B, T, _ = x.shape
    q, gate, k, v = m.project(x, cos, sin)
    if past is None:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    else:
        pk, pv = past
        P = pk.shape[2]
        keys = torch.cat([pk.expand(B, -1, -1, -1), k], dim=2)
        values = torch.cat([pv.expand(B, -1, -1, -1), v], dim=2)
        allowed = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(P)    # all of the prefix, causal after
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, enable_gqa=True)
    return m._output(o, gate), (k, v)


def _delta_net(m, x, past):
    """GatedDeltaNet.forward without a cache. past: (conv inputs [1, conv_dim, kernel-1], state [1, H, K, V])."""
    B = x.shape[0]
    qkv, z, beta, g = m.project(x)
    before = qkv.new_zeros(B, m.conv_dim, m.kernel - 1) if past is None else past[0].expand(B, -1, -1)
    full = torch.cat([before, qkv], dim=-1)
    q, k, v = m.heads(F.silu(F.conv1d(full, m.conv1d.weight, groups=m.conv_dim)))
    state = None if past is None else past[1].expand(B, -1, -1, -1)
    o, final = gated_delta_rule_chunked(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), g, beta,
                                        m.dk ** -0.5, initial_state=state)
    return m.output(o.transpose(1, 2), z, x.dtype), (full[:, :, -(m.kernel - 1):], final)


def hidden_states(model, ids: torch.Tensor, start: int = 0, past: list | None = None):
    """ids [B, T] at positions start.. (after a prefix whose states are `past`, from a call with B = 1).
    -> (final hidden states [B, T, D] after the last norm, the states after these tokens per layer)."""
    text = model.text
    B, T = ids.shape
    x = text.embed_tokens(ids)
    pos = torch.arange(start, start + T).view(1, 1, T).expand(3, B, T)
    cos, sin = rotary_tables(text.cfg, pos, x.dtype)
    states = []
    for i, layer in enumerate(text.layers):
        h = layer.input_layernorm(x)
        p = None if past is None else past[i]
        if layer.layer_type == "linear_attention":
            y, st = _delta_net(layer.linear_attn, h, p)
        else:
            y, st = _attention(layer.self_attn, h, cos, sin, p)
        states.append(st)
        x = x + y
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return text.norm(x), states


def batch_loss(model, prefix: list[int], suffixes: list[tuple[list[int], list[float]]], prefix_states=None):
    """Summed weighted cross-entropy of a batch of conversations prefix + suffix, and the weight sum.

    suffixes: (suffix ids, weight of each suffix token as a target: 0 for the tokens not trained).
    A conversation's first suffix token is predicted from the prefix's last position, which is never a
    trained target in the planner's format (a user turn follows the prompt): its weight must be 0.
    prefix: may be empty (the suffixes start at position 0).
    prefix_states: the states returned by an earlier call, to score several batches on one prefix run.
    Returns (loss sum, weight sum, per-token cross-entropy [B, T], prefix_states)."""
    if prefix_states is None and prefix:
        _, prefix_states = hidden_states(model, torch.tensor([prefix]))
    if any(w[0] for _, w in suffixes):
        raise ValueError("a suffix's first token is a trained target: the shared prefix must end before any")
    T = max(len(s) for s, _ in suffixes)
    ids = torch.zeros(len(suffixes), T, dtype=torch.long)
    weight = torch.zeros(len(suffixes), T)
    for b, (s, w) in enumerate(suffixes):
        ids[b, :len(s)] = torch.tensor(s)
        weight[b, :len(s)] = torch.tensor(w, dtype=torch.float32)
    h, _ = hidden_states(model, ids, start=len(prefix), past=prefix_states)
    # position t predicts token t+1: score only where that target is trained
    tw = weight[:, 1:]
    where = tw > 0
    logits = model.lm_head(h[:, :-1][where])
    ce = F.cross_entropy(logits.float(), ids[:, 1:][where], reduction="none")
    return (ce * tw[where]).sum(), tw[where].sum(), (ce, where), prefix_states
