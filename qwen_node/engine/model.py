"""Qwen3.5 / Qwen3.5-MoE text decoder, gpt-fast style: flat, one module per layer type, caches inside the layers.

Index legend: B batch, T new tokens, S cache length, D hidden, H heads (Hq query, Hkv key/value,
Hk / Hv DeltaNet key / value heads), Dh head dim, E experts, K top-k, I expert width, V vocab.

Layer types are built through `LayerBuilders` so each can be replaced (NVFP4 linears and fused
experts at load time, TensorRT engines per layer type later): every linear layer of the decoder is
created by `builders.linear(name, in_features, out_features, bias)` and the routed experts by
`builders.experts(name, num_experts, hidden, intermediate)`, where `name` is the checkpoint-relative
module name (e.g. "layers.3.mlp.experts"), and the output layer by `builders.lm_head(hidden, vocab)`. See
loader.py for how the names map to tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import native
from .config import TextConfig
from .gated_delta_rule import gated_delta_rule_chunked, gated_delta_rule_step


# ----------------------------------------------------------------------------------------- building blocks
class RMSNorm(nn.Module):
    """Zero-centred RMSNorm: y = x / rms(x) * (1 + w), computed in fp32 (w = 0 is the identity scale)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).type_as(x)


class GatedRMSNorm(nn.Module):
    """DeltaNet output norm: y = x / rms(x) * w * silu(z) (plain weight, not zero-centred)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, z):
        dtype = x.dtype
        xf = x.float()
        y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(dtype)
        return (self.weight * y * F.silu(z.float())).to(dtype)


def matvec(x, weight, bias=None):
    """x [..., 1 row, D] @ weight[O, D]^T as a multiply-and-sum in fp32. Under torch.compile inductor turns this
    into one fused, vectorised loop over both cores that streams the weight at memory bandwidth; MKL's sgemv
    on this CI's AMD CPUs runs single-threaded at about half of it. Eager code keeps F.linear (the reference):
    outside a compiled graph this form would materialise the whole product."""
    y = (x.float().unsqueeze(-2) * weight.float()).sum(-1)
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


class Linear(nn.Linear):
    """nn.Linear that computes a single row with `matvec` inside a compiled decode step (see compiled_decode.py)."""

    def forward(self, x):
        if torch.compiler.is_compiling() and x.numel() == x.shape[-1]:
            return matvec(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class FusedExperts(nn.Module):
    """Routed experts with fused weights: gate_up_proj [E, 2I, D] (gate rows first), down_proj [E, D, I]."""

    def __init__(self, num_experts: int, hidden: int, intermediate: int):
        super().__init__()
        self.num_experts = num_experts
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * intermediate, hidden))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden, intermediate))

    def forward(self, x, top_idx, top_w):
        # x: [N, D]; top_idx, top_w: [N, K] -> [N, D]
        N, K = top_idx.shape
        if N == 1 and torch.compiler.is_compiling():                 # compiled decode: gather fused into the loads
            idx = top_idx[0]
            gate, up = matvec(x, self.gate_up_proj[idx]).chunk(2, dim=-1)         # [K, I] each
            ye = matvec(F.silu(gate) * up, self.down_proj[idx])                  # [K, D]: row k by expert k
            return (ye.float() * top_w[0, :, None].float()).sum(0, keepdim=True).to(x.dtype)
        if N == 1:                                                   # decode: K small matmuls on weight views
            out = None
            for e, w in zip(top_idx[0].tolist(), top_w[0]):
                gate, up = F.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)
                ye = F.linear(F.silu(gate) * up, self.down_proj[e]) * w
                out = ye if out is None else out + ye
            return out
        return grouped_experts(x, top_idx, top_w, self.num_experts,
                               lambda e: (self.gate_up_proj[e], self.down_proj[e]))


def grouped_experts(x, top_idx, top_w, num_experts: int, weights_of) -> torch.Tensor:
    """Prefill of routed experts: the (token, slot) rows grouped by expert, two GEMMs per active expert with
    weights_of(e) -> (gate_up [2I, D], down [D, I]), weighted and summed back per token. x: [N, D]; top_idx,
    top_w: [N, K] -> [N, D]. One loop for the bf16/fp32 experts and the NVFP4 ones (tiles dequantized per expert)."""
    N, K = top_idx.shape
    flat = top_idx.reshape(-1)                                   # [N*K] expert of each (token, slot)
    order = flat.argsort()                                       # slots grouped by expert
    counts = torch.bincount(flat, minlength=num_experts).tolist()
    xs = x[order // K]                                           # [N*K, D] token rows in expert order
    ys = torch.empty_like(xs)
    start = 0
    for e, n in enumerate(counts):
        if n:
            gate_up, down = weights_of(e)
            gate, up = F.linear(xs[start:start + n], gate_up).chunk(2, dim=-1)
            ys[start:start + n] = F.linear(F.silu(gate) * up, down)
            start += n
    ys = ys * top_w.reshape(-1)[order, None].to(ys.dtype)
    return ys[order.argsort()].view(N, K, -1).sum(1)             # back to (token, slot), sum the K slots


LinearBuilder = Callable[[str, int, int, bool], nn.Module]        # (name, in_features, out_features, bias)
ExpertsBuilder = Callable[[str, int, int, int], nn.Module]        # (name, num_experts, hidden, intermediate)


def plain_linear(name: str, in_features: int, out_features: int, bias: bool) -> nn.Module:
    return Linear(in_features, out_features, bias=bias)


def plain_experts(name: str, num_experts: int, hidden: int, intermediate: int) -> nn.Module:
    return FusedExperts(num_experts, hidden, intermediate)


def plain_lm_head(in_features: int, out_features: int) -> nn.Module:
    return Linear(in_features, out_features, bias=False)


# ----------------------------------------------------------------------------------------- rotary
def mrope_axis_of_frequency(rotary_dim: int, mrope_section: list[int]) -> torch.Tensor:
    """Interleaved multimodal rotary: frequency j rotates with the T (0), H (1) or W (2) position.
    j % 3 == 1 and j < 3*sec[1] -> H; j % 3 == 2 and j < 3*sec[2] -> W; otherwise T."""
    j = torch.arange(rotary_dim // 2)
    axis = torch.zeros_like(j)
    axis[(j % 3 == 1) & (j < 3 * mrope_section[1])] = 1
    axis[(j % 3 == 2) & (j < 3 * mrope_section[2])] = 2
    return axis


def rotary_tables(cfg: TextConfig, position_ids: torch.Tensor, dtype):
    """position_ids: [3, B, T] (T/H/W positions) -> cos, sin: [B, T, rotary_dim]."""
    rot = cfg.rotary_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, rot, 2, dtype=torch.float32, device=position_ids.device) / rot))
    axis = mrope_axis_of_frequency(rot, cfg.mrope_section).to(position_ids.device)
    pos = position_ids.float()[axis]                                 # [rot/2, B, T]
    freqs = pos.permute(1, 2, 0) * inv_freq                          # [B, T, rot/2]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_partial_rotary(x, cos, sin):
    # x: [B, T, H, Dh]; cos, sin: [B, T, R] rotate the first R dims, pass the rest
    R = cos.shape[-1]
    cos, sin = cos[:, :, None], sin[:, :, None]
    xr, xp = x[..., :R], x[..., R:]
    return torch.cat([xr * cos + rotate_half(xr) * sin, xp], dim=-1)


# ----------------------------------------------------------------------------------------- decode attention
@torch.library.custom_op("qwen_stack::decode_attention", mutates_args=("k_cache", "v_cache"))
def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                     v_cache: torch.Tensor, start: int) -> torch.Tensor:
    """One new token: write k, v [B, Hkv, 1, Dh] at `start`, attend q [B, Hq, 1, Dh] over positions 0..start
    with the C kernel (native.py; it streams a long cache ~1.5-2x faster than MKL here) or the reference.
    A custom op so a compiled decode step calls it as is: dynamo would otherwise decompose the matmuls on
    the growing cache slice and recompile as the slice's strides change."""
    B = q.shape[0]
    end = start + 1
    k_cache[:B, :, start:end] = k
    v_cache[:B, :, start:end] = v
    out = native.decode_attention(q, k_cache[:B], v_cache[:B], end)
    if out is None:
        out = decode_attention_reference(q, k_cache[:B, :, :end], v_cache[:B, :, :end])
    return out


def decode_attention_reference(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """q [B, Hq, 1, Dh] over keys, values [B, Hkv, T, Dh] -> [B, Hq, 1, Dh]."""
    B, Hq, _, Dh = q.shape
    Hkv = keys.shape[1]
    qg = q.reshape(B, Hkv, Hq // Hkv, Dh)                                        # grouped: no K/V repeat
    # keys @ q^T (a tall gemm) is far faster on CPU than q @ keys^T, in bf16 especially
    scores = (keys @ qg.transpose(-1, -2)).transpose(-1, -2).float() * Dh ** -0.5   # [B, Hkv, G, end]
    return (scores.softmax(-1).to(values.dtype) @ values).view(B, Hq, 1, Dh)


@decode_attention.register_fake
def _(q, k, v, k_cache, v_cache, start):
    return q.new_empty(q.shape)


# ----------------------------------------------------------------------------------------- layers
@dataclass
class StepInputs:
    """What every token mixer gets besides x: where the new tokens start in the cache and the rotary tables."""
    start: int                      # cache position of the first new token
    cos: torch.Tensor               # [B, T, rotary_dim]
    sin: torch.Tensor


class GatedAttention(nn.Module):
    """Full attention with an output gate: q_proj yields query and gate per head; q/k RMSNorm; GQA; partial mrope."""

    def __init__(self, cfg: TextConfig, name: str, linear: LinearBuilder):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        D, Dh, bias = cfg.hidden_size, cfg.head_dim, cfg.attention_bias
        self.q_proj = linear(f"{name}.q_proj", D, self.n_heads * Dh * 2, bias)
        self.k_proj = linear(f"{name}.k_proj", D, self.n_kv * Dh, bias)
        self.v_proj = linear(f"{name}.v_proj", D, self.n_kv * Dh, bias)
        self.o_proj = linear(f"{name}.o_proj", self.n_heads * Dh, D, bias)
        self.q_norm = RMSNorm(Dh, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(Dh, cfg.rms_norm_eps)
        self.k_cache: torch.Tensor | None = None                     # [B, Hkv, S, Dh]
        self.v_cache: torch.Tensor | None = None

    def setup_cache(self, batch: int, max_len: int, dtype, device):
        """Allocate [B, Hkv, S, Dh] caches; content of a previous (smaller) cache is kept."""
        shape = (batch, self.n_kv, max_len, self.head_dim)
        old_k, old_v = self.k_cache, self.v_cache
        self.k_cache = torch.zeros(shape, dtype=dtype, device=device)
        self.v_cache = torch.zeros(shape, dtype=dtype, device=device)
        if old_k is not None:
            b, s = min(batch, old_k.shape[0]), min(max_len, old_k.shape[2])
            self.k_cache[:b, :, :s] = old_k[:b, :, :s]
            self.v_cache[:b, :, :s] = old_v[:b, :, :s]

    def reset_cache(self):
        pass  # positions beyond the current length are never read

    def project(self, x, cos, sin):
        """x [B, T, D] -> q [B, Hq, T, Dh], output gate [B, T, Hq, Dh], k and v [B, Hkv, T, Dh] (normed, rotated).
        The cache-free part of the layer, shared with the trainer (brain/shared_prefix.py)."""
        B, T, _ = x.shape
        Dh = self.head_dim
        q, gate = self.q_proj(x).view(B, T, self.n_heads, 2 * Dh).chunk(2, dim=-1)   # [B, T, Hq, Dh] each
        q = apply_partial_rotary(self.q_norm(q), cos, sin).transpose(1, 2)
        k = apply_partial_rotary(self.k_norm(self.k_proj(x).view(B, T, self.n_kv, Dh)), cos, sin).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, Dh).transpose(1, 2)
        return q, gate, k, v

    def forward(self, x, step: StepInputs):
        B, T, _ = x.shape
        q, gate, k, v = self.project(x, step.cos, step.sin)
        end = step.start + T
        if end > self.k_cache.shape[2]:
            raise ValueError(f"sequence length {end} exceeds the cache ({self.k_cache.shape[2]}); "
                             f"set max_seq_len larger")
        if T == 1:
            o = decode_attention(q, k, v, self.k_cache, self.v_cache, step.start)
            return self._output(o, gate)
        self.k_cache[:B, :, step.start:end] = k
        self.v_cache[:B, :, step.start:end] = v
        keys, values = self.k_cache[:B, :, :end], self.v_cache[:B, :, :end]          # [B, Hkv, end, Dh]
        if step.start == 0:
            o = F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=True)
        else:
            allowed = torch.arange(end, device=x.device)[None, :] <= \
                (step.start + torch.arange(T, device=x.device))[:, None]              # [T, end]
            o = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, enable_gqa=True)
        return self._output(o, gate)

    def _output(self, o, gate):
        # o: [B, Hq, T, Dh] attention output; gate: [B, T, Hq, Dh]
        B, _, T, _ = o.shape
        o = o.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        o = o * torch.sigmoid(gate.reshape(B, T, self.n_heads * self.head_dim))
        return self.o_proj(o)


class GatedDeltaNet(nn.Module):
    """Linear attention with the gated delta rule (projections fused as on disk: qkv, z, b, a)."""

    def __init__(self, cfg: TextConfig, name: str, linear: LinearBuilder):
        super().__init__()
        self.n_k, self.n_v = cfg.linear_num_key_heads, cfg.linear_num_value_heads
        self.dk, self.dv = cfg.linear_key_head_dim, cfg.linear_value_head_dim
        self.key_dim, self.value_dim = self.n_k * self.dk, self.n_v * self.dv
        self.conv_dim = 2 * self.key_dim + self.value_dim
        self.kernel = cfg.linear_conv_kernel_dim
        D = cfg.hidden_size
        self.in_proj_qkv = linear(f"{name}.in_proj_qkv", D, self.conv_dim, False)
        self.in_proj_z = linear(f"{name}.in_proj_z", D, self.value_dim, False)
        self.in_proj_b = linear(f"{name}.in_proj_b", D, self.n_v, False)
        self.in_proj_a = linear(f"{name}.in_proj_a", D, self.n_v, False)
        self.conv1d = nn.Module()
        self.conv1d.weight = nn.Parameter(torch.empty(self.conv_dim, 1, self.kernel))    # depthwise, no bias
        self.dt_bias = nn.Parameter(torch.ones(self.n_v))
        self.A_log = nn.Parameter(torch.zeros(self.n_v))
        self.norm = GatedRMSNorm(self.dv, cfg.rms_norm_eps)
        self.out_proj = linear(f"{name}.out_proj", self.value_dim, D, False)
        self.conv_state: torch.Tensor | None = None                 # [B, conv_dim, kernel-1]: last inputs
        self.rec_state: torch.Tensor | None = None                  # [B, Hv, Dk, Dv] fp32

    def setup_cache(self, batch: int, max_len: int, dtype, device):
        """Allocate conv and recurrent states (independent of max_len); previous states are kept."""
        old_conv, old_rec = self.conv_state, self.rec_state
        self.conv_state = torch.zeros(batch, self.conv_dim, self.kernel - 1, dtype=dtype, device=device)
        self.rec_state = torch.zeros(batch, self.n_v, self.dk, self.dv, dtype=torch.float32, device=device)
        if old_conv is not None:
            b = min(batch, old_conv.shape[0])
            self.conv_state[:b] = old_conv[:b]
            self.rec_state[:b] = old_rec[:b]

    def reset_cache(self):
        self.conv_state.zero_()
        self.rec_state.zero_()

    def forward(self, x, step: StepInputs):
        B, T, _ = x.shape
        if step.start == 0:
            self.reset_cache()
        conv_state, rec_state = self.conv_state[:B], self.rec_state[:B]
        qkv, z, beta, g = self.project(x)
        # causal depthwise conv over [previous kernel-1 inputs, new inputs], then SiLU
        full = torch.cat([conv_state.to(qkv.dtype), qkv], dim=-1)        # [B, conv_dim, kernel-1+T]
        conv_state.copy_(full[:, :, -(self.kernel - 1):])
        w = self.conv1d.weight                                           # [conv_dim, 1, kernel]
        if T == 1:                                                       # decode: one dot product per channel
            conv = (full.to(w.dtype) * w[:, 0]).sum(-1, keepdim=True)    # [B, conv_dim, 1]
        else:
            conv = F.conv1d(full.to(w.dtype), w, groups=self.conv_dim)   # [B, conv_dim, T]
        q, k, v = self.heads(F.silu(conv).to(x.dtype))
        scale = self.dk ** -0.5
        if T == 1:
            o = gated_delta_rule_step(q[:, 0], k[:, 0], v[:, 0], g[:, :, 0], beta[:, :, 0], scale, rec_state)
            o = o[:, None]                                               # [B, 1, Hv, Dv]
        else:
            o, final = gated_delta_rule_chunked(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                g, beta, scale, initial_state=rec_state)
            rec_state.copy_(final)
            o = o.transpose(1, 2)                                        # [B, T, Hv, Dv]
        return self.output(o, z, x.dtype)

    # The cache-free parts of the layer, shared with the trainer (brain/shared_prefix.py).
    def project(self, x):
        """x [B, T, D] -> conv input [B, conv_dim, T], output gate z [B, T, Hv, Dv], beta and decay g [B, Hv, T]."""
        B, T, _ = x.shape
        qkv = self.in_proj_qkv(x).transpose(1, 2)
        z = self.in_proj_z(x).view(B, T, self.n_v, self.dv)
        beta = torch.sigmoid(self.in_proj_b(x)).transpose(1, 2)
        a = self.in_proj_a(x)
        g = (-self.A_log.float().exp() * F.softplus(a.float() + self.dt_bias.float())).transpose(1, 2)
        return qkv, z, beta, g

    def heads(self, mixed):
        """The conv's SiLU output [B, conv_dim, T] -> q, k [B, T, Hv, Dk] (L2-normalised, fp32; each k head
        serves n_v/n_k v heads) and v [B, T, Hv, Dv]."""
        B, _, T = mixed.shape
        q, k, v = mixed.transpose(1, 2).split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q = q.reshape(B, T, self.n_k, self.dk).float()
        k = k.reshape(B, T, self.n_k, self.dk).float()
        v = v.reshape(B, T, self.n_v, self.dv)
        q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k * torch.rsqrt((k * k).sum(-1, keepdim=True) + 1e-6)
        if self.n_v != self.n_k:
            q = q.repeat_interleave(self.n_v // self.n_k, dim=2)
            k = k.repeat_interleave(self.n_v // self.n_k, dim=2)
        return q, k, v

    def output(self, o, z, dtype):
        """The rule's output [B, T, Hv, Dv] -> gated norm in the activations' dtype, out_proj [B, T, D]."""
        B, T = o.shape[:2]
        return self.out_proj(self.norm(o.to(dtype), z).reshape(B, T, self.value_dim))


class DenseMLP(nn.Module):
    """SwiGLU feed-forward (dense Qwen3.5 and the MoE shared expert)."""

    def __init__(self, name: str, hidden: int, intermediate: int, linear: LinearBuilder):
        super().__init__()
        self.gate_proj = linear(f"{name}.gate_proj", hidden, intermediate, False)
        self.up_proj = linear(f"{name}.up_proj", hidden, intermediate, False)
        self.down_proj = linear(f"{name}.down_proj", intermediate, hidden, False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseMoE(nn.Module):
    """Softmax router, top-k renormalised, routed experts plus a sigmoid-gated shared expert."""

    def __init__(self, cfg: TextConfig, name: str, linear: LinearBuilder, experts: ExpertsBuilder):
        super().__init__()
        D = cfg.hidden_size
        self.top_k = cfg.num_experts_per_tok
        self.gate = linear(f"{name}.gate", D, cfg.num_experts, False)
        self.experts = experts(f"{name}.experts", cfg.num_experts, D, cfg.moe_intermediate_size)
        self.shared_expert = DenseMLP(f"{name}.shared_expert", D, cfg.shared_expert_intermediate_size, linear)
        self.shared_expert_gate = linear(f"{name}.shared_expert_gate", D, 1, False)

    def forward(self, x):
        B, T, D = x.shape
        x2 = x.reshape(-1, D)                                             # [N, D]
        probs = F.softmax(self.gate(x2).float(), dim=-1)                  # [N, E]
        top_w, top_idx = probs.topk(self.top_k, dim=-1)                   # [N, K]
        top_w = (top_w / top_w.sum(-1, keepdim=True)).to(x.dtype)
        routed = self.experts(x2, top_idx, top_w)
        shared = self.shared_expert(x2) * torch.sigmoid(self.shared_expert_gate(x2))
        return (routed + shared).view(B, T, D)


@dataclass
class LayerBuilders:
    """How each replaceable piece is made. Swap `linear`/`experts` for quantized ones at load time, or a
    whole layer type (e.g. a TensorRT-backed attention) with the same constructor signature and forward."""
    linear: LinearBuilder = plain_linear
    experts: ExpertsBuilder = plain_experts
    attention: Callable = GatedAttention          # (cfg, name, linear) -> module(x, StepInputs)
    delta_net: Callable = GatedDeltaNet           # (cfg, name, linear) -> module(x, StepInputs)
    moe: Callable = SparseMoE                     # (cfg, name, linear, experts) -> module(x)
    dense_mlp: Callable = DenseMLP                # (name, hidden, intermediate, linear) -> module(x)
    lm_head: Callable = plain_lm_head             # (hidden, vocab) -> module(h [N, D]) -> logits [N, V]


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, i: int, b: LayerBuilders):
        super().__init__()
        self.layer_type = cfg.layer_types[i]
        name = f"layers.{i}"
        if self.layer_type == "linear_attention":
            self.linear_attn = b.delta_net(cfg, f"{name}.linear_attn", b.linear)
        else:
            self.self_attn = b.attention(cfg, f"{name}.self_attn", b.linear)
        if cfg.is_moe:
            self.mlp = b.moe(cfg, f"{name}.mlp", b.linear, b.experts)
        else:
            self.mlp = b.dense_mlp(f"{name}.mlp", cfg.hidden_size, cfg.intermediate_size, b.linear)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    @property
    def mixer(self) -> nn.Module:
        return self.linear_attn if self.layer_type == "linear_attention" else self.self_attn

    def forward(self, x, step: StepInputs):
        x = x + self.mixer(self.input_layernorm(x), step)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextModel(nn.Module):
    """Embedding, decoder layers, final norm (checkpoint names relative to the text prefix)."""

    def __init__(self, cfg: TextConfig, builders: LayerBuilders | None = None):
        super().__init__()
        b = builders or LayerBuilders()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg, i, b) for i in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, position_ids, start: int):
        # x: [B, T, D] input embeddings; position_ids: [3, B, T]
        cos, sin = rotary_tables(self.cfg, position_ids, x.dtype)
        step = StepInputs(start=start, cos=cos, sin=sin)
        for layer in self.layers:
            x = layer(x, step)
        return self.norm(x)


@dataclass
class CacheInfo:
    batch: int = 0
    max_len: int = 0
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Qwen35ForGeneration(nn.Module):
    """Text decoder + LM head (+ vision tower when the checkpoint has one)."""

    def __init__(self, cfg, builders: LayerBuilders | None = None):
        super().__init__()
        self.config = cfg
        self.text = TextModel(cfg.text, builders)
        self.lm_head = (builders or LayerBuilders()).lm_head(cfg.text.hidden_size, cfg.text.vocab_size)
        self.visual = None
        if cfg.vision is not None:
            from .vision import VisionTower
            self.visual = VisionTower(cfg.vision)
        self.cache = CacheInfo()
        self.decode_step: Callable | None = None     # compiled single-token step (compiled_decode.enable)

    def setup_caches(self, batch: int, max_len: int):
        """Allocate KV caches (full-attention layers) and conv/recurrent states (DeltaNet layers) once.
        Growing them later (a longer sequence than planned) keeps their content."""
        # the embedding's dtype: the activations' (an NVFP4 lm_head holds uint8 codes)
        dtype, device = self.text.embed_tokens.weight.dtype, self.text.embed_tokens.weight.device
        if (batch, max_len, dtype, device) == (self.cache.batch, self.cache.max_len, self.cache.dtype, self.cache.device):
            return
        for layer in self.text.layers:
            layer.mixer.setup_cache(batch, max_len, dtype, device)
        self.cache = CacheInfo(batch, max_len, dtype, device)

    def embed(self, input_ids):
        return self.text.embed_tokens(input_ids)

    def prepare_multimodal(self, input_ids, images=(), videos=()):
        """Prompt ids [T] with placeholder runs + preprocessed images/videos (preprocess.VisionInput, in prompt
        order) -> (inputs_embeds [1, T, D], position_ids [3, T], next position after the prompt)."""
        from .vision import multimodal_position_ids
        cfg = self.config
        ids = torch.as_tensor(input_ids, dtype=torch.long).view(-1).to(self.text.embed_tokens.weight.device)
        x = self.embed(ids)                                                  # [T, D]
        if (images or videos) and self.visual is None:
            raise ValueError(f"{cfg.architecture} has no vision tower; images/videos cannot be used")
        for items, token in ((images, cfg.image_token_id), (videos, cfg.video_token_id)):
            if not items:
                continue
            feats = self.visual(torch.cat([v.patches for v in items]).to(x.device), [v.grid for v in items])
            where = (ids == token).nonzero().view(-1)
            if where.numel() != feats.shape[0]:
                raise ValueError(f"prompt has {where.numel()} placeholder tokens {token} but the "
                                 f"{len(items)} inputs give {feats.shape[0]} features")
            x = x.index_copy(0, where, feats.to(x.dtype))
        merge = cfg.vision.spatial_merge_size if cfg.vision is not None else 2
        pos, next_pos = multimodal_position_ids(ids.cpu(), [v.grid for v in images], [v.grid for v in videos],
                                                cfg.image_token_id, cfg.video_token_id, merge)
        return x[None], pos.to(x.device), next_pos

    def forward(self, input_ids=None, position_ids=None, start: int = 0, inputs_embeds=None, last_only=False):
        """input_ids: [B, T] (or inputs_embeds [B, T, D]); position_ids: [3, B, T] (default: start + arange).
        Uses and advances the caches from position `start`. Returns logits [B, T, V] ([B, 1, V] if last_only)."""
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        if self.cache.batch < B or self.cache.max_len < start + T:
            self.setup_caches(max(B, self.cache.batch), max(start + T, self.cache.max_len))
        if position_ids is None:
            position_ids = torch.arange(start, start + T, device=x.device).view(1, 1, T).expand(3, B, T)
        if self.decode_step is not None and B == T == 1 and inputs_embeds is None:
            return self.decode_step(input_ids, position_ids, start)
        h = self.text(x, position_ids, start)
        if last_only:
            h = h[:, -1:]
        # 2D input keeps F.linear on a plain gemm (a strided 3D slice would copy the whole weight)
        return self.lm_head(h.reshape(-1, h.shape[-1])).view(B, h.shape[1], -1)
