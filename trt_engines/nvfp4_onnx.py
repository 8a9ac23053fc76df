"""NVFP4 weights inside ONNX graphs, in two equivalent patterns.

"trt" (what TensorRT's ONNX parser takes, opset >= 23 for FP4 DequantizeLinear):
    w_f4     FLOAT4E2M1 initializer [out, in]   (the checkpoint's packed bytes as they are: ONNX packs
                                                 two FP4 values per byte, the even element low, like us)
    s_f8     FLOAT8E4M3FN initializer [out, in/16]
    g        FLOAT initializer []                (weight_scale_2)
    s   = DequantizeLinear(s_f8, g)                               -> fp32 [out, in/16] block scales
    W   = DequantizeLinear(w_f4, s, axis=-1, block_size=16)       -> fp32 [out, in]
  onnxruntime's CPU provider does not implement FP4 DequantizeLinear; onnx.reference evaluates it.

"lut" (runs on onnxruntime CPU, same numbers bit for bit):
    packed uint8 [out, in/2], scale bytes uint8 [out, in/16], g fp32;
    codes = (packed & 15, packed >> 4) interleaved; values = E2M1_LUT[codes] (16 entries);
    s = E4M3_LUT[scale bytes] (256 entries, exact); W = values * (s * g)   (same product order as
    `dequantize_nvfp4`, so the weights equal the PyTorch engine's to the bit).

Either way the linear is MatMul(x, Transpose(W)); an unquantized (excluded) weight is stored as an fp32
W^T initializer. Routed experts keep per-expert global scales (gate and up differ), see `experts_weights`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from onnx import TensorProto

from qwen_stack.qwen_node.engine.nvfp4 import BLOCK_SIZE, E2M1_VALUES, NVFP4Tensor

from .checkpoint_weights import Weight
from .onnx_graph import GraphBuilder

VARIANTS = ("trt", "lut")
MIN_OPSET = {"trt": 23, "lut": 18}  # FP4 DequantizeLinear needs 23; BitwiseAnd needs 18
E4M3_LUT = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()  # byte -> value


def _bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def dequantized_weight(g: GraphBuilder, name: str, q: NVFP4Tensor, variant: str) -> str:
    """fp32 [out, in] value of a 2-D NVFP4 weight, decoded in the graph by `variant`."""
    out_f, in_f = q.shape
    nb = in_f // BLOCK_SIZE
    if variant == "trt":
        w_f4 = g.raw_initializer(f"{name}.w_fp4", TensorProto.FLOAT4E2M1, [out_f, in_f], _bytes(q.packed))
        s_f8 = g.raw_initializer(f"{name}.scale_e4m3", TensorProto.FLOAT8E4M3FN, [out_f, nb], _bytes(q.block_scale))
        glob = g.initializer(f"{name}.global_scale", q.global_scale.reshape(()).numpy().astype(np.float32))
        block = g.op("DequantizeLinear", [s_f8, glob])                                  # fp32 [out, nb]
        return g.op("DequantizeLinear", [w_f4, block], axis=-1, block_size=BLOCK_SIZE)  # fp32 [out, in]
    if variant == "lut":
        packed = g.initializer(f"{name}.packed_u8", q.packed.numpy())
        scale_u8 = g.initializer(f"{name}.scale_u8", q.block_scale.view(torch.uint8).numpy())
        glob = g.initializer(f"{name}.global_scale", q.global_scale.reshape(()).numpy().astype(np.float32))
        return lut_decode(g, packed, scale_u8, glob, lead=1, in_features=in_f)
    raise ValueError(f"unknown NVFP4 graph variant {variant!r}; expected one of {VARIANTS}")


def lut_decode(g: GraphBuilder, packed: str, scale_u8: str, glob: str, lead: int, in_features: int) -> str:
    """packed uint8 [*L, in/2], scale_u8 uint8 [*L, in/16], glob fp32 broadcastable to [*L, 1] -> fp32 [*L, in].

    `lead` is the number of leading dims L (known statically; their sizes may be dynamic)."""
    nb = in_features // BLOCK_SIZE
    lut16 = g.const(E2M1_VALUES.numpy(), np.float32)
    lut256 = g.const(E4M3_LUT, np.float32)
    low = g.op("BitwiseAnd", [packed, g.const(15, np.uint8)])
    high = g.op("BitShift", [packed, g.const(4, np.uint8)], direction="RIGHT")
    codes = g.concat([g.unsqueeze(low, [-1]), g.unsqueeze(high, [-1])], axis=-1)    # [*L, in/2, 2]
    values = g.op("Gather", [lut16, g.op("Cast", [codes], to=TensorProto.INT64)])    # fp32 [*L, in/2, 2]
    values = g.reshape(values, [0] * lead + [nb, BLOCK_SIZE])                        # [*L, nb, 16]
    scale = g.op("Gather", [lut256, g.op("Cast", [scale_u8], to=TensorProto.INT64)])  # fp32 [*L, nb]
    block = g.mul(scale, glob)                                                       # s * g first, as the engine
    w = g.mul(values, g.unsqueeze(block, [-1]))
    return g.reshape(w, [0] * lead + [in_features])


def linear(g: GraphBuilder, x: str, name: str, w: Weight, variant: str) -> str:
    """x: [..., in] -> [..., out] = x @ W^T (no bias: no Qwen3.5 linear in these layers has one)."""
    if isinstance(w, NVFP4Tensor):
        return g.matmul(x, g.transpose(dequantized_weight(g, name, w, variant), [1, 0]))
    wt = g.initializer(f"{name}.weight_t", w.float().t().contiguous().numpy())       # fp32 [in, out]
    return g.matmul(x, wt)


@dataclass
class StoredExperts:
    """Routed-expert weights placed in a graph: packed bytes to decode ("lut"), or one fp32 [E, rows, in] value."""
    packed: str | None = None        # lut: uint8 [E, rows, in/2]
    scale_u8: str | None = None      # lut: uint8 [E, rows, in/16]
    global_scale: str | None = None  # lut: fp32 [E, rows, 1]
    in_features: int = 0
    dequantized: str | None = None   # trt (or unquantized): fp32 [E, rows, in]


def store_experts(g: GraphBuilder, name: str, per_expert: list[list[Weight]], variant: str) -> StoredExperts:
    """Put the experts' weights into graph `g` (once; subgraphs such as If branches read them from there).

    per_expert[e] lists the row blocks of expert e stacked along the output dim (e.g. [gate, up]); every
    block has its own global scale. "trt": each block is a 2-D two-step DequantizeLinear, stacked to
    [E, rows, in]. "lut": packed bytes, scale bytes and per-row global scales, decoded by `select_experts`."""
    if variant == "lut" and all(isinstance(w, NVFP4Tensor) for ws in per_expert for w in ws):
        qs: list[list[NVFP4Tensor]] = per_expert  # type: ignore[assignment]
        packed = np.stack([np.concatenate([q.packed.numpy() for q in ws]) for ws in qs])           # [E, rows, in/2]
        scales = np.stack([np.concatenate([q.block_scale.view(torch.uint8).numpy() for q in ws]) for ws in qs])
        glob = np.stack([np.concatenate([np.full(q.shape[0], float(q.global_scale), np.float32) for q in ws])
                         for ws in qs])[..., None]                                                  # [E, rows, 1]
        return StoredExperts(g.initializer(f"{name}.packed_u8", packed), g.initializer(f"{name}.scale_u8", scales),
                             g.initializer(f"{name}.global_scale", glob), qs[0][0].shape[1])
    stacked = []
    for e, ws in enumerate(per_expert):
        blocks = [dequantized_weight(g, f"{name}.{e}.{i}", w, variant) if isinstance(w, NVFP4Tensor)
                  else g.initializer(f"{name}.{e}.{i}.weight", w.float().numpy()) for i, w in enumerate(ws)]
        one = blocks[0] if len(blocks) == 1 else g.concat(blocks, axis=0)               # [rows, in]
        stacked.append(g.unsqueeze(one, [0]))
    return StoredExperts(dequantized=g.concat(stacked, axis=0) if len(stacked) > 1 else stacked[0])


def select_experts(g: GraphBuilder, stored: StoredExperts, idx: str | None) -> str:
    """fp32 [M, rows, in] weights of experts idx int64 [M] (None: all E). "lut" gathers the packed bytes
    first, so only the selected experts are decoded."""
    if stored.dequantized is not None:
        return stored.dequantized if idx is None else g.op("Gather", [stored.dequantized, idx])
    assert stored.packed and stored.scale_u8 and stored.global_scale
    p, s, gl = stored.packed, stored.scale_u8, stored.global_scale
    if idx is not None:
        p, s, gl = (g.op("Gather", [t, idx]) for t in (p, s, gl))
    return lut_decode(g, p, s, gl, lead=2, in_features=stored.in_features)


def experts_weights(g: GraphBuilder, name: str, per_expert: list[list[Weight]], idx: str | None, variant: str) -> str:
    """`store_experts` and `select_experts` in one graph."""
    return select_experts(g, store_experts(g, name, per_expert, variant), idx)
