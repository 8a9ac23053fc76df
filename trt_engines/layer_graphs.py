"""ONNX graphs of the decoder's layer types, one graph per layer instance, mirroring qwen_node/engine/model.py.

Index legend: B batch, T new tokens, N routed token rows (B*T), P past cache length, S = P + T, D hidden,
Hq / Hkv attention heads, Dh head dim, R rotary dims, E experts, K top-k, I expert width, C conv channels
(2*Hk*Dk + Hv*Dv), W conv kernel, Hk / Hv DeltaNet key / value heads, Dk / Dv their head dims, L chunk length,
M chunks.

Graph kinds (what the engine module they replace does per call):
  moe              SparseMoE:   hidden [N, D] -> out [N, D] (gathered experts for few tokens, every expert
                   for many: an If on N*K > E, see `build_moe`)
  dense_mlp        DenseMLP:    hidden [N, D] -> out [N, D]
  deltanet_decode  GatedDeltaNet, one token: hidden [B, 1, D], conv_state [B, C, W-1], recurrent_state
                   [B, Hv, Dk, Dv] -> out [B, 1, D], conv_state_out, recurrent_state_out
  deltanet_prefill GatedDeltaNet, T tokens, same states in and out; the gated delta rule in chunks of L
                   (an ONNX Loop over chunks carrying the fp32 state; the within-chunk triangular solve
                   as a product of log2(L) factors, see `unit_lower_inverse_product`)
  attention        GatedAttention with its KV cache as I/O: hidden [B, T, D], cos/sin [B, T, R], past_key /
                   past_value [B, Hkv, P, Dh] -> out [B, T, D], present_key / present_value [B, Hkv, S, Dh]
All activations are fp32 in the graph (TensorRT's builder flags choose lower precision).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from qwen_stack.qwen_node.engine.config import TextConfig

from .checkpoint_weights import CheckpointWeights
from .nvfp4_onnx import linear, select_experts, store_experts
from .onnx_graph import FLOAT, GraphBuilder

KINDS = ("moe", "dense_mlp", "deltanet_decode", "deltanet_prefill", "attention")
INT64_MAX = np.iinfo(np.int64).max


@dataclass
class IOSpec:
    name: str
    dtype: str                      # "float32"
    shape: list[int | str]          # ints are static, strings name a dynamic dim


@dataclass
class GraphSpec:
    """What the manifest records and what TensorRT's optimisation profile needs for one graph."""
    name: str                       # file stem, e.g. "layers.3.moe"
    kind: str                       # one of KINDS
    layer: int
    inputs: list[IOSpec]
    outputs: list[IOSpec]
    dims: dict[str, list[int]] = field(default_factory=dict)   # dynamic dim -> [min, opt, max]
    attrs: dict = field(default_factory=dict)                  # e.g. chunk length, top-k

    @classmethod
    def from_manifest(cls, entry: dict) -> "GraphSpec":
        """The spec of one manifest `graphs` entry."""
        return cls(entry["name"], entry["kind"], entry["layer"], [IOSpec(**i) for i in entry["inputs"]],
                   [IOSpec(**o) for o in entry["outputs"]], dict(entry["dims"]), dict(entry["attrs"]))


@dataclass
class ShapeLimits:
    """Largest shapes the TensorRT profiles must cover."""
    max_batch: int = 4
    max_tokens: int = 512           # tokens per prefill call
    max_seq: int = 4096             # KV cache length (past + new)
    chunk: int = 16                 # DeltaNet prefill chunk length L (power of two)

    def __post_init__(self):
        for n in ("max_batch", "max_tokens", "max_seq", "chunk"):
            if getattr(self, n) < 1:
                raise ValueError(f"ShapeLimits.{n} must be >= 1, got {getattr(self, n)}")
        if self.chunk & (self.chunk - 1):
            raise ValueError(f"ShapeLimits.chunk must be a power of two, got {self.chunk}")


def _vi(specs: list[IOSpec]) -> list[onnx.ValueInfoProto]:
    return [helper.make_tensor_value_info(s.name, FLOAT, s.shape) for s in specs]


def _finish(g: GraphBuilder, spec: GraphSpec, outs: list[str], opset: int) -> onnx.ModelProto:
    g.inputs = _vi(spec.inputs)
    for value, o in zip(outs, spec.outputs):
        g.output(value, o.name, FLOAT, o.shape)
    return g.model(opset, doc=f"qwen_stack {spec.kind} layer {spec.layer}")


# ------------------------------------------------------------------------------------------ shared pieces
def rms_norm(g: GraphBuilder, x: str, weight: np.ndarray, eps: float, zero_centred: bool) -> str:
    """x / rms(x) * (1 + w) (zero-centred, RMSNorm) or * w (GatedRMSNorm), over the last dim."""
    ms = g.op("ReduceMean", [g.mul(x, x), g.const([-1])], keepdims=1)
    y = g.div(x, g.op("Sqrt", [g.add(ms, g.scalar(eps))]))
    w = g.const(1.0 + weight if zero_centred else weight, np.float32)
    return g.mul(y, w)


def softplus(g: GraphBuilder, x: str) -> str:
    """log(1 + exp(x)) without losing the small values: relu(x) + log1p(exp(-|x|)), with log1p(e) written as
    log(u) * e / (u - 1), u = 1 + e (exact where u rounds; e itself when u == 1). A plain Softplus node is
    log(exp(x) + 1) in onnx.reference (and possibly elsewhere): ~1e-7 / softplus(x) relative error for x << 0,
    which the DeltaNet decay feeds into the state."""
    e = g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])                                  # (0, 1]
    u = g.add(g.scalar(1.0), e)
    d = g.sub(u, g.scalar(1.0))
    log1p = g.op("Where", [g.op("Equal", [d, g.scalar(0.0)]), e, g.div(g.mul(g.op("Log", [u]), e), d)])
    return g.add(g.op("Relu", [x]), log1p)


def l2_normalise(g: GraphBuilder, x: str) -> str:
    ss = g.op("ReduceSum", [g.mul(x, x), g.const([-1])], keepdims=1)
    return g.div(x, g.op("Sqrt", [g.add(ss, g.scalar(1e-6))]))


def swiglu_mlp(g: GraphBuilder, x: str, w: CheckpointWeights, name: str, variant: str) -> str:
    gate = linear(g, x, f"{name}.gate_proj", w.linear(f"{name}.gate_proj"), variant)
    up = linear(g, x, f"{name}.up_proj", w.linear(f"{name}.up_proj"), variant)
    return linear(g, g.mul(g.silu(gate), up), f"{name}.down_proj", w.linear(f"{name}.down_proj"), variant)


def repeat_heads(g: GraphBuilder, x: str, axis: int, times: int, rank: int) -> str:
    """repeat_interleave along `axis` (head h' uses head h'//times), via Unsqueeze/Expand/Reshape."""
    if times == 1:
        return x
    u = g.unsqueeze(x, [axis + 1])
    reps = [1] * (rank + 1)
    reps[axis + 1] = times
    e = g.op("Expand", [u, g.const(reps)])
    shape = g.op("Shape", [x])
    parts = ([g.slice(shape, [0], [axis], [0])] if axis else []) + [g.const([-1])]
    if axis < rank - 1:
        parts.append(g.slice(shape, [axis + 1], [rank], [0]))
    return g.reshape(e, g.concat(parts, axis=0))


# ------------------------------------------------------------------------------------------ MLPs
MOE_FORMS = ("if", "per_expert")


def _dense_routing(g: GraphBuilder, logits: str, top_idx: str, top_w: str) -> str:
    """[N, E] routing weights: top_w scattered into zeros (K nonzeros per row)."""
    zeros = g.op("ConstantOfShape", [g.op("Shape", [logits])], value=helper.make_tensor("zero", FLOAT, [1], [0.0]))
    return g.op("ScatterElements", [zeros, top_idx, top_w], axis=1)


def build_moe(w: CheckpointWeights, layer: int, variant: str, limits: ShapeLimits, opset: int, moe_form: str = "if"):
    """Router, top-k, routed experts, shared expert. Routed experts, `moe_form`:
    "if" (default): an If on N*K > E;
      then (many tokens): every expert on every token, weighted by the dense routing matrix (mostly zeros):
          E/K times the FLOPs of the gathered form but no per-token copies of expert weights;
      else (decode): gather the K selected experts' weights per token (reads K of E experts).
      Both branches read the one copy of the expert weights stored in the main graph (DequantizeLinear
      outputs feed Concat/Gather, not MatMul directly).
    "per_expert": every expert on every token as its own DequantizeLinear -> MatMul chain (the pattern
      TensorRT's weight-only GEMMs are documented for), weighted by the dense routing matrix; reads all
      E experts per call, also when decoding. The fallback if a TensorRT version rejects the "if" form."""
    if moe_form not in MOE_FORMS:
        raise ValueError(f"--moe-form {moe_form!r}: expected one of {MOE_FORMS}")
    cfg: TextConfig = w.config.text
    D, E, K, I = cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok, cfg.moe_intermediate_size
    name = f"layers.{layer}.mlp"
    spec = GraphSpec(f"layers.{layer}.moe", "moe", layer, [IOSpec("hidden", "float32", ["tokens", D])],
                     [IOSpec("out", "float32", ["tokens", D])],
                     {"tokens": [1, 1, limits.max_batch * limits.max_tokens]},
                     {"top_k": K, "experts": E, "moe_form": moe_form})
    g = GraphBuilder(spec.name)
    x = "hidden"                                                                       # [N, D]
    logits = linear(g, x, f"{name}.gate", w.linear(f"{name}.gate"), variant)         # [N, E]
    probs = g.op("Softmax", [logits], axis=-1)
    top_w, top_idx = g.op("TopK", [probs, g.const([K])], n_out=2, axis=-1, largest=1, sorted=1)  # [N, K]
    top_w = g.div(top_w, g.op("ReduceSum", [top_w, g.const([-1])], keepdims=1))
    if moe_form == "per_expert":
        dense_w = _dense_routing(g, logits, top_idx, top_w)                            # [N, E]
        parts = []
        for e in range(E):
            p = f"{name}.experts.{e}"
            gate = linear(g, x, f"{p}.gate_proj", w.linear(f"{p}.gate_proj"), variant)  # [N, I]
            up = linear(g, x, f"{p}.up_proj", w.linear(f"{p}.up_proj"), variant)
            y = linear(g, g.mul(g.silu(gate), up), f"{p}.down_proj", w.linear(f"{p}.down_proj"), variant)  # [N, D]
            parts.append(g.mul(y, g.slice(dense_w, [e], [e + 1], [1])))
        routed = g.op("Sum", parts)
        shared = swiglu_mlp(g, x, w, f"{name}.shared_expert", variant)
        sgate = g.op("Sigmoid", [linear(g, x, f"{name}.shared_expert_gate", w.linear(f"{name}.shared_expert_gate"),
                                        variant)])
        return _finish(g, spec, [g.add(routed, g.mul(shared, sgate))], opset), spec
    gate_up = store_experts(g, f"{name}.experts.gate_up", [[w.linear(f"{name}.experts.{e}.gate_proj"),
                                                            w.linear(f"{name}.experts.{e}.up_proj")] for e in range(E)],
                            variant)                                                   # [E, 2I, D]
    down = store_experts(g, f"{name}.experts.down", [[w.linear(f"{name}.experts.{e}.down_proj")] for e in range(E)],
                         variant)                                                      # [E, D, I]

    # gathered: one [2I, D] and one [D, I] weight per (token, k)
    gb = GraphBuilder("gathered", prefix=f"{spec.name}.gathered.")
    idx = gb.reshape(top_idx, [-1])                                                   # [N*K]
    xs = gb.reshape(gb.op("Expand", [gb.unsqueeze(x, [1]), gb.const([1, K, 1])]), [-1, 1, D])  # [N*K, 1, D]
    h = gb.matmul(xs, gb.transpose(select_experts(gb, gate_up, idx), [0, 2, 1]))      # [N*K, 1, 2I]
    gate, up = gb.split(h, [I, I], axis=-1)
    act = gb.mul(gb.silu(gate), up)                                                    # [N*K, 1, I]
    y = gb.matmul(act, gb.transpose(select_experts(gb, down, idx), [0, 2, 1]))        # [N*K, 1, D]
    y = gb.reshape(y, [-1, K, D])                                                      # [N, K, D]
    gathered = gb.op("ReduceSum", [gb.mul(y, gb.unsqueeze(top_w, [-1])), gb.const([1])], keepdims=0)  # [N, D]

    # every expert: [E, N, *] activations, routing weights scattered into a dense [N, E]
    db = GraphBuilder("every_expert", prefix=f"{spec.name}.every_expert.")
    dense_w = _dense_routing(db, logits, top_idx, top_w)                               # [N, E]
    h = db.matmul(db.unsqueeze(x, [0]), db.transpose(select_experts(db, gate_up, None), [0, 2, 1]))  # [E, N, 2I]
    gate, up = db.split(h, [I, I], axis=-1)
    act = db.mul(db.silu(gate), up)                                                    # [E, N, I]
    y = db.matmul(act, db.transpose(select_experts(db, down, None), [0, 2, 1]))       # [E, N, D]
    every = db.op("ReduceSum", [db.mul(y, db.unsqueeze(db.transpose(dense_w, [1, 0]), [-1])), db.const([0])],
                  keepdims=0)                                                          # [N, D]

    for b, value in ((gb, gathered), (db, every)):
        b.op("Identity", [value], out=f"{b.prefix}routed")
        b.outputs = [helper.make_tensor_value_info(f"{b.prefix}routed", FLOAT, None)]
    n = g.squeeze(g.shape_dim(x, 0), [0])
    many = g.op("Greater", [g.mul(n, g.const(K)), g.const(E)])                         # N*K > E
    routed = g.op("If", [many], then_branch=db.graph(), else_branch=gb.graph())
    shared = swiglu_mlp(g, x, w, f"{name}.shared_expert", variant)
    sgate = g.op("Sigmoid", [linear(g, x, f"{name}.shared_expert_gate", w.linear(f"{name}.shared_expert_gate"), variant)])
    out = g.add(routed, g.mul(shared, sgate))
    return _finish(g, spec, [out], opset), spec


def build_dense_mlp(w: CheckpointWeights, layer: int, variant: str, limits: ShapeLimits, opset: int):
    D = w.config.text.hidden_size
    spec = GraphSpec(f"layers.{layer}.dense_mlp", "dense_mlp", layer, [IOSpec("hidden", "float32", ["tokens", D])],
                     [IOSpec("out", "float32", ["tokens", D])], {"tokens": [1, 1, limits.max_batch * limits.max_tokens]})
    g = GraphBuilder(spec.name)
    out = swiglu_mlp(g, "hidden", w, f"layers.{layer}.mlp", variant)
    return _finish(g, spec, [out], opset), spec


# ------------------------------------------------------------------------------------------ Gated DeltaNet
@dataclass
class _DeltaNetDims:
    D: int
    Hk: int
    Hv: int
    Dk: int
    Dv: int
    W: int
    eps: float

    @property
    def key_dim(self):
        return self.Hk * self.Dk

    @property
    def value_dim(self):
        return self.Hv * self.Dv

    @property
    def C(self):
        return 2 * self.key_dim + self.value_dim


def _dn_dims(cfg: TextConfig) -> _DeltaNetDims:
    return _DeltaNetDims(cfg.hidden_size, cfg.linear_num_key_heads, cfg.linear_num_value_heads,
                         cfg.linear_key_head_dim, cfg.linear_value_head_dim, cfg.linear_conv_kernel_dim, cfg.rms_norm_eps)


def _dn_specs(kind: str, layer: int, d: _DeltaNetDims, limits: ShapeLimits) -> GraphSpec:
    T: int | str = 1 if kind == "deltanet_decode" else "tokens"
    states_in = [IOSpec("conv_state", "float32", ["batch", d.C, d.W - 1]),
                 IOSpec("recurrent_state", "float32", ["batch", d.Hv, d.Dk, d.Dv])]
    states_out = [IOSpec(s.name + "_out", s.dtype, s.shape) for s in states_in]
    dims = {"batch": [1, 1, limits.max_batch]}
    if kind == "deltanet_prefill":
        dims["tokens"] = [2, limits.max_tokens // 2 or 2, limits.max_tokens]
    return GraphSpec(f"layers.{layer}.{kind}", kind, layer, [IOSpec("hidden", "float32", ["batch", T, d.D])] + states_in,
                     [IOSpec("out", "float32", ["batch", T, d.D])] + states_out, dims,
                     {"chunk": limits.chunk} if kind == "deltanet_prefill" else {})


def _dn_inputs(g: GraphBuilder, w: CheckpointWeights, layer: int, variant: str, d: _DeltaNetDims):
    """Projections, gates and the causal conv (shared by decode and prefill).

    Returns q, k [B, Hv, T, Dk] (L2-normalised, expanded to Hv), v [B, Hv, T, Dv], g_log, beta [B, Hv, T],
    z [B, T, Hv, Dv], conv_state_out [B, C, W-1]."""
    name = f"layers.{layer}.linear_attn"
    x = "hidden"                                                                         # [B, T, D]
    qkv = linear(g, x, f"{name}.in_proj_qkv", w.linear(f"{name}.in_proj_qkv"), variant)  # [B, T, C]
    z = g.reshape(linear(g, x, f"{name}.in_proj_z", w.linear(f"{name}.in_proj_z"), variant), [0, 0, d.Hv, d.Dv])
    b = linear(g, x, f"{name}.in_proj_b", w.linear(f"{name}.in_proj_b"), variant)       # [B, T, Hv]
    a = linear(g, x, f"{name}.in_proj_a", w.linear(f"{name}.in_proj_a"), variant)
    beta = g.transpose(g.op("Sigmoid", [b]), [0, 2, 1])                                 # [B, Hv, T]
    neg_a = g.const(-np.exp(w.tensor(f"{name}.A_log").numpy()), np.float32)
    sp = softplus(g, g.add(a, g.const(w.tensor(f"{name}.dt_bias").numpy(), np.float32)))
    g_log = g.transpose(g.mul(sp, neg_a), [0, 2, 1])                                     # [B, Hv, T]
    full = g.concat(["conv_state", g.transpose(qkv, [0, 2, 1])], axis=2)              # [B, C, W-1+T]
    conv_out_state = g.slice(full, [-(d.W - 1)], [INT64_MAX], [2])                      # [B, C, W-1]
    conv_w = g.initializer(f"{name}.conv1d.weight", w.tensor(f"{name}.conv1d.weight").numpy())  # [C, 1, W]
    mixed = g.silu(g.op("Conv", [full, conv_w], group=d.C))                             # [B, C, T]
    mixed = g.transpose(mixed, [0, 2, 1])                                              # [B, T, C]
    q, k, v = g.split(mixed, [d.key_dim, d.key_dim, d.value_dim], axis=-1)
    r = d.Hv // d.Hk
    q = repeat_heads(g, l2_normalise(g, g.reshape(q, [0, 0, d.Hk, d.Dk])), 2, r, 4)     # [B, T, Hv, Dk]
    k = repeat_heads(g, l2_normalise(g, g.reshape(k, [0, 0, d.Hk, d.Dk])), 2, r, 4)
    v = g.reshape(v, [0, 0, d.Hv, d.Dv])
    q, k, v = (g.transpose(t, [0, 2, 1, 3]) for t in (q, k, v))                        # [B, Hv, T, *]
    return q, k, v, g_log, beta, z, conv_out_state


def _dn_output(g: GraphBuilder, w: CheckpointWeights, layer: int, variant: str, d: _DeltaNetDims, o: str, z: str) -> str:
    """o [B, Hv, T, Dv] -> gated RMSNorm with z, out_proj -> [B, T, D]."""
    name = f"layers.{layer}.linear_attn"
    o = g.transpose(o, [0, 2, 1, 3])                                                   # [B, T, Hv, Dv]
    y = rms_norm(g, o, w.tensor(f"{name}.norm.weight").numpy(), d.eps, zero_centred=False)
    y = g.reshape(g.mul(y, g.silu(z)), [0, 0, d.value_dim])
    return linear(g, y, f"{name}.out_proj", w.linear(f"{name}.out_proj"), variant)


def build_deltanet_decode(w: CheckpointWeights, layer: int, variant: str, limits: ShapeLimits, opset: int):
    d = _dn_dims(w.config.text)
    spec = _dn_specs("deltanet_decode", layer, d, limits)
    g = GraphBuilder(spec.name)
    q, k, v, g_log, beta, z, conv_out = _dn_inputs(g, w, layer, variant, d)             # T = 1
    S = "recurrent_state"                                                               # [B, Hv, Dk, Dv]
    S = g.mul(S, g.unsqueeze(g.op("Exp", [g_log]), [-1]))                               # decay: [B, Hv, 1, 1]
    kv_mem = g.matmul(k, S)                                                             # [B, Hv, 1, Dv]
    delta = g.mul(g.sub(v, kv_mem), g.unsqueeze(beta, [-1]))                            # [B, Hv, 1, Dv]
    S = g.add(S, g.matmul(g.transpose(k, [0, 1, 3, 2]), delta))                         # += k delta^T
    o = g.matmul(g.mul(q, g.scalar(d.Dk ** -0.5)), S)                                   # [B, Hv, 1, Dv]
    out = _dn_output(g, w, layer, variant, d, o, z)
    return _finish(g, spec, [out, conv_out, S], opset), spec


def unit_lower_inverse_product(a: torch.Tensor, length: int) -> torch.Tensor:
    """(I + A)^-1 for strictly lower-triangular A [..., L, L] as (I - A)(I + A^2)(I + A^4)...: exact because
    A^L = 0. The reference for what the prefill graph computes (tests compare it with solve_triangular)."""
    eye = torch.eye(length, dtype=a.dtype)
    n = -a
    m = eye + n
    for _ in range(int(math.log2(length)) - 1):
        n = n @ n
        m = m @ (eye + n)
    return m


def build_deltanet_prefill(w: CheckpointWeights, layer: int, variant: str, limits: ShapeLimits, opset: int):
    d = _dn_dims(w.config.text)
    spec = _dn_specs("deltanet_prefill", layer, d, limits)
    L = limits.chunk
    g = GraphBuilder(spec.name)
    q, k, v, g_log, beta, z, conv_out = _dn_inputs(g, w, layer, variant, d)
    q = g.mul(q, g.scalar(d.Dk ** -0.5))
    # pad T up to a multiple of L (zeros: g = 0 means no decay, beta = 0 means no write)
    T = g.shape_dim(k, 2)                                                               # [1]
    Lc = g.const([L])
    pad = g.op("Mod", [g.sub(Lc, g.op("Mod", [T, Lc])), Lc])                            # [1]
    z3, z5 = g.const([0, 0, 0, 0, 0, 0]), g.const([0, 0, 0, 0, 0])
    pads4 = g.concat([z3, pad, g.const([0])], axis=0)                                   # [0,0,0,0, 0,0,pad,0]
    pads3 = g.concat([z5, pad], axis=0)
    q, k, v = (g.op("Pad", [t, pads4]) for t in (q, k, v))
    g_log, beta = (g.op("Pad", [t, pads3]) for t in (g_log, beta))
    q = g.reshape(q, [0, 0, -1, L, d.Dk])                                               # [B, Hv, M, L, Dk]
    k = g.reshape(k, [0, 0, -1, L, d.Dk])
    v = g.reshape(v, [0, 0, -1, L, d.Dv])
    g_log = g.reshape(g_log, [0, 0, -1, L])                                             # [B, Hv, M, L]
    beta = g.reshape(beta, [0, 0, -1, L])
    c = g.op("CumSum", [g_log, g.const(-1)])                                            # cumulative log decay
    diff = g.sub(g.unsqueeze(c, [-1]), g.unsqueeze(c, [-2]))                            # [B, Hv, M, L, L] c_i - c_j
    upper = np.triu(np.ones((L, L), dtype=bool), 1)
    rel = g.op("Exp", [g.op("Where", [g.const(upper, bool), g.scalar(-np.inf), diff])])  # 0 above the diagonal
    k_beta = g.mul(k, g.unsqueeze(beta, [-1]))
    kT = g.transpose(k, [0, 1, 2, 4, 3])
    A = g.mul(g.mul(g.matmul(k_beta, kT), rel), g.const(np.tril(np.ones((L, L)), -1), np.float32))
    eye = g.const(np.eye(L), np.float32)
    n = g.sub(g.scalar(0.0), A)
    inv = g.add(eye, n)                                                                 # (I + A)^-1, see
    for _ in range(int(math.log2(L)) - 1):                                              # unit_lower_inverse_product
        n = g.matmul(n, n)
        inv = g.matmul(inv, g.add(eye, n))
    ec = g.op("Exp", [c])
    u_v = g.matmul(inv, g.mul(v, g.unsqueeze(beta, [-1])))                              # [B, Hv, M, L, Dv]
    w_k = g.matmul(inv, g.mul(k_beta, g.unsqueeze(ec, [-1])))                           # [B, Hv, M, L, Dk]
    attn = g.mul(g.matmul(q, kT), rel)                                                  # [B, Hv, M, L, L]
    q_dec = g.mul(q, g.unsqueeze(ec, [-1]))
    c_last = g.slice(c, [-1], [INT64_MAX], [3])                                         # [B, Hv, M, 1]
    k_end = g.mul(k, g.unsqueeze(g.op("Exp", [g.sub(c_last, c)]), [-1]))                # decay to the chunk end
    chunk_decay = g.unsqueeze(g.op("Exp", [c_last]), [-1])                              # [B, Hv, M, 1, 1]
    # the sequential part: a Loop over the M chunks carrying the fp32 state
    body = GraphBuilder("chunk_step", prefix="body_")
    body.inputs = [helper.make_tensor_value_info("body_iter", TensorProto.INT64, []),
                   helper.make_tensor_value_info("body_cond_in", TensorProto.BOOL, []),
                   helper.make_tensor_value_info("body_S_in", FLOAT, None)]
    i, S = "body_iter", "body_S_in"

    def at(t: str) -> str:
        return body.op("Gather", [t, i], axis=2)                                        # chunk i: [B, Hv, ...]
    u = body.sub(at(u_v), body.matmul(at(w_k), S))                                      # [B, Hv, L, Dv]
    o_n = body.add(body.matmul(at(q_dec), S), body.matmul(at(attn), u))
    S_next = body.add(body.mul(S, at(chunk_decay)), body.matmul(body.transpose(at(k_end), [0, 1, 3, 2]), u))
    body.op("Identity", ["body_cond_in"], out="body_cond_out")
    body.op("Identity", [S_next], out="body_S_out")
    # scan output with a leading 1: onnxruntime/TensorRT stack the per-iteration values (new axis),
    # onnx.reference concatenates them (np.vstack); the Reshape after the Loop accepts both
    body.op("Identity", [body.unsqueeze(o_n, [0])], out="body_o")
    body.outputs = [helper.make_tensor_value_info("body_cond_out", TensorProto.BOOL, []),
                    helper.make_tensor_value_info("body_S_out", FLOAT, None),
                    helper.make_tensor_value_info("body_o", FLOAT, None)]
    n_chunks = g.squeeze(g.shape_dim(q, 2), [0])
    S_final, o_chunks = g.op("Loop", [n_chunks, g.const(True, bool), "recurrent_state"], n_out=2, body=body.graph())
    bh = g.slice(g.op("Shape", [u_v]), [0], [2], [0])                                  # [B, Hv]
    o_chunks = g.reshape(o_chunks, g.concat([g.const([-1]), bh, g.const([L, d.Dv])], axis=0))  # [M, B, Hv, L, Dv]
    o = g.transpose(o_chunks, [1, 2, 0, 3, 4])                                          # [B, Hv, M, L, Dv]
    o = g.slice(g.reshape(o, [0, 0, -1, d.Dv]), g.const([0]), T, [2])                   # [B, Hv, T, Dv]
    out = _dn_output(g, w, layer, variant, d, o, z)
    return _finish(g, spec, [out, conv_out, S_final], opset), spec


# ------------------------------------------------------------------------------------------ gated attention
def _rotary(g: GraphBuilder, x: str, cos: str, sin: str, R: int, Dh: int) -> str:
    """x [B, T, H, Dh]; cos/sin [B, T, 1, R]: rotate_half rotary on the first R dims, pass the rest."""
    xr = g.slice(x, [0], [R], [3]) if R < Dh else x
    x1, x2 = g.split(xr, [R // 2, R // 2], axis=-1)
    rot = g.concat([g.op("Neg", [x2]), x1], axis=-1)
    y = g.add(g.mul(xr, cos), g.mul(rot, sin))
    return g.concat([y, g.slice(x, [R], [Dh], [3])], axis=-1) if R < Dh else y


def build_attention(w: CheckpointWeights, layer: int, variant: str, limits: ShapeLimits, opset: int):
    cfg = w.config.text
    D, Hq, Hkv, Dh, R = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.rotary_dim
    name = f"layers.{layer}.self_attn"
    cache = ["batch", Hkv, "past", Dh]
    spec = GraphSpec(
        f"layers.{layer}.attention", "attention", layer,
        [IOSpec("hidden", "float32", ["batch", "tokens", D]), IOSpec("cos", "float32", ["batch", "tokens", R]),
         IOSpec("sin", "float32", ["batch", "tokens", R]), IOSpec("past_key", "float32", cache),
         IOSpec("past_value", "float32", cache)],
        [IOSpec("out", "float32", ["batch", "tokens", D]),
         IOSpec("present_key", "float32", ["batch", Hkv, "total", Dh]),
         IOSpec("present_value", "float32", ["batch", Hkv, "total", Dh])],
        {"batch": [1, 1, limits.max_batch], "tokens": [1, 1, limits.max_tokens],
         "past": [0, limits.max_seq // 2, limits.max_seq - 1]})
    g = GraphBuilder(spec.name)
    x = "hidden"
    qg = g.reshape(linear(g, x, f"{name}.q_proj", w.linear(f"{name}.q_proj"), variant), [0, 0, Hq, 2 * Dh])
    q, gate = g.split(qg, [Dh, Dh], axis=-1)                                              # [B, T, Hq, Dh]
    q = rms_norm(g, q, w.tensor(f"{name}.q_norm.weight").numpy(), cfg.rms_norm_eps, zero_centred=True)
    k = g.reshape(linear(g, x, f"{name}.k_proj", w.linear(f"{name}.k_proj"), variant), [0, 0, Hkv, Dh])
    k = rms_norm(g, k, w.tensor(f"{name}.k_norm.weight").numpy(), cfg.rms_norm_eps, zero_centred=True)
    v = g.reshape(linear(g, x, f"{name}.v_proj", w.linear(f"{name}.v_proj"), variant), [0, 0, Hkv, Dh])
    cos, sin = g.unsqueeze("cos", [2]), g.unsqueeze("sin", [2])                          # [B, T, 1, R]
    q = g.transpose(_rotary(g, q, cos, sin, R, Dh), [0, 2, 1, 3])                         # [B, Hq, T, Dh]
    k = g.transpose(_rotary(g, k, cos, sin, R, Dh), [0, 2, 1, 3])                         # [B, Hkv, T, Dh]
    v = g.transpose(v, [0, 2, 1, 3])
    keys = g.concat(["past_key", k], axis=2)                                              # [B, Hkv, S, Dh]
    values = g.concat(["past_value", v], axis=2)
    kx = repeat_heads(g, keys, 1, Hq // Hkv, 4)                                           # [B, Hq, S, Dh]
    vx = repeat_heads(g, values, 1, Hq // Hkv, 4)
    scores = g.mul(g.matmul(q, g.transpose(kx, [0, 1, 3, 2])), g.scalar(Dh ** -0.5))     # [B, Hq, T, S]
    P = g.squeeze(g.shape_dim("past_key", 2), [0])
    T = g.squeeze(g.shape_dim(x, 1), [0])
    S = g.squeeze(g.shape_dim(keys, 2), [0])
    zero, one = g.const(0), g.const(1)
    rows = g.add(g.op("Range", [zero, T, one]), P)                                       # absolute positions [T]
    cols = g.op("Range", [zero, S, one])                                                  # [S]
    allowed = g.op("LessOrEqual", [g.unsqueeze(cols, [0]), g.unsqueeze(rows, [1])])      # [T, S] causal
    scores = g.op("Where", [allowed, scores, g.scalar(-np.inf)])
    o = g.matmul(g.op("Softmax", [scores], axis=-1), vx)                                 # [B, Hq, T, Dh]
    o = g.reshape(g.transpose(o, [0, 2, 1, 3]), [0, 0, Hq * Dh])
    o = g.mul(o, g.op("Sigmoid", [g.reshape(gate, [0, 0, Hq * Dh])]))
    out = linear(g, o, f"{name}.o_proj", w.linear(f"{name}.o_proj"), variant)
    return _finish(g, spec, [out, keys, values], opset), spec


BUILDERS = {
    "moe": build_moe,
    "dense_mlp": build_dense_mlp,
    "deltanet_decode": build_deltanet_decode,
    "deltanet_prefill": build_deltanet_prefill,
    "attention": build_attention,
}


def kinds_for_layer(cfg: TextConfig, layer: int) -> list[str]:
    """Graph kinds one decoder layer yields: its token mixer(s) and its feed-forward."""
    mixer = ["deltanet_decode", "deltanet_prefill"] if cfg.layer_types[layer] == "linear_attention" else ["attention"]
    return mixer + (["moe"] if cfg.is_moe else ["dense_mlp"])
