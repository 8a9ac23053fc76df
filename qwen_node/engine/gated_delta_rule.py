"""The gated delta rule three ways: the per-timestep fp32 reference (the spec), chunked (prefill), one step (decode).

Index legend: B batch, H value heads (q/k already expanded to H), T time, C chunk length, N chunks,
K key head dim, V value head dim. State S: [B, H, K, V].

The recurrence, per head and timestep t (q, k L2-normalised by the caller; q scaled by `scale` here):
    S_t = exp(g_t) * S_{t-1}                        # gated decay, g_t <= 0 (log space)
    S_t = S_t + k_t (beta_t * (v_t - S_t^T k_t))^T  # delta rule: write the correction, learning rate beta_t
    o_t = S_t^T (scale * q_t)
"""
from __future__ import annotations

import torch


def gated_delta_rule_reference(q, k, v, g, beta, scale: float, initial_state=None):
    """The spec. q, k: [B, H, T, K]; v: [B, H, T, V]; g, beta: [B, H, T]; initial_state: [B, H, K, V] or None.

    Returns (o [B, H, T, V] in v's dtype, final state [B, H, K, V] fp32)."""
    B, H, T, K = k.shape
    V = v.shape[-1]
    q, k, v, g, beta = (x.float() for x in (q, k, v, g, beta))
    S = torch.zeros(B, H, K, V, dtype=torch.float32, device=q.device) if initial_state is None \
        else initial_state.float().clone()
    o = torch.empty(B, H, T, V, dtype=torch.float32, device=q.device)
    for t in range(T):
        S = S * g[:, :, t].exp()[..., None, None]
        kv_mem = torch.einsum("bhkv,bhk->bhv", S, k[:, :, t])
        delta = (v[:, :, t] - kv_mem) * beta[:, :, t, None]
        S = S + k[:, :, t, :, None] * delta[:, :, None, :]
        o[:, :, t] = torch.einsum("bhkv,bhk->bhv", S, q[:, :, t] * scale)
    return o.to(v.dtype), S


def gated_delta_rule_chunked(q, k, v, g, beta, scale: float, initial_state=None, chunk_size: int = 64):
    """Chunked form (prefill): same arguments and results as the reference, O(T/C) sequential steps.

    Within a chunk with cumulative log decay c_i (gamma_i = exp(c_i)) and state S0 at its start:
        (I + A) U = beta * (V - gamma * K S0),  A_ij = beta_i (gamma_i/gamma_j) k_i.k_j for j < i
        O = gamma * Q S0 + tril((gamma_i/gamma_j) q_i.k_j) U
        S_end = gamma_C S0 + sum_j (gamma_C/gamma_j) k_j U_j^T
    """
    B, H, T, K = k.shape
    V = v.shape[-1]
    out_dtype = v.dtype
    q, k, v, g, beta = (x.float() for x in (q, k, v, g, beta))
    q = q * scale
    C = chunk_size
    pad = (C - T % C) % C
    if pad:
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        g, beta = (torch.nn.functional.pad(x, (0, pad)) for x in (g, beta))
    N = (T + pad) // C
    q, k, v = (x.reshape(B, H, N, C, -1) for x in (q, k, v))      # [B, H, N, C, *]
    g, beta = g.reshape(B, H, N, C), beta.reshape(B, H, N, C)
    c = g.cumsum(-1)                                                 # [B, H, N, C] cumulative log decay
    strictly_upper = torch.ones(C, C, dtype=torch.bool, device=q.device).triu(1)
    rel = (c[..., :, None] - c[..., None, :]).masked_fill(strictly_upper, float("-inf")).exp()  # [B,H,N,C,C]
    k_beta = k * beta[..., None]
    A = ((k_beta @ k.transpose(-1, -2)) * rel).tril(-1)              # strictly lower: I + A is unit lower
    I = torch.eye(C, dtype=A.dtype, device=A.device)
    # U = (I + A)^-1 beta V  -  (I + A)^-1 (beta gamma K) S0
    rhs = torch.cat([v * beta[..., None], k_beta * c.exp()[..., None]], dim=-1)   # one solve for both
    u_v, w_k = torch.linalg.solve_triangular(I + A, rhs, upper=False, unitriangular=True).split([V, K], dim=-1)
    attn = (q @ k.transpose(-1, -2)) * rel                           # [B, H, N, C, C], zero above diagonal
    q_decayed = q * c.exp()[..., None]
    k_to_end = k * (c[..., -1:] - c).exp()[..., None]                # decay from position j to chunk end
    chunk_decay = c[..., -1].exp()[..., None, None]                  # [B, H, N, 1, 1]
    S = torch.zeros(B, H, K, V, dtype=torch.float32, device=q.device) if initial_state is None \
        else initial_state.float().clone()
    o = torch.empty(B, H, N, C, V, dtype=torch.float32, device=q.device)
    for n in range(N):
        u = u_v[:, :, n] - w_k[:, :, n] @ S                          # [B, H, C, V]
        o[:, :, n] = q_decayed[:, :, n] @ S + attn[:, :, n] @ u
        S = S * chunk_decay[:, :, n] + k_to_end[:, :, n].transpose(-1, -2) @ u
    o = o.reshape(B, H, N * C, V)[:, :, :T]
    return o.to(out_dtype), S


def gated_delta_rule_step(q, k, v, g, beta, scale: float, state):
    """One decode step, updating `state` in place. q, k: [B, H, K]; v: [B, H, V]; g, beta: [B, H];
    state: [B, H, K, V] fp32. Returns o: [B, H, V] in v's dtype."""
    out_dtype = v.dtype
    q, k, v, g, beta = (x.float() for x in (q, k, v, g, beta))
    state.mul_(g.exp()[..., None, None])
    kv_mem = (k.unsqueeze(-2) @ state).squeeze(-2)                   # [B, H, V]
    delta = (v - kv_mem) * beta[..., None]
    state.add_(k.unsqueeze(-1) * delta.unsqueeze(-2))
    o = ((q * scale).unsqueeze(-2) @ state).squeeze(-2)
    return o.to(out_dtype)
