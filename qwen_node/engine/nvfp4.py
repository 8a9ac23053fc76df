"""NVFP4 (NVIDIA 4-bit float) weights: quantize, pack, dequantize, and a weight-only linear.

Format, as NVIDIA ModelOpt defines it (``NVFP4QTensor``) and as NVIDIA's published NVFP4
checkpoints store it:

* values are E2M1 codes: magnitudes (0, 0.5, 1, 1.5, 2, 3, 4, 6) in bits 0-2, sign in bit 3;
* one E4M3 (``float8_e4m3fn``) scale per block of 16 consecutive values along the input
  (last) dimension, and one FP32 scale per tensor (``weight_scale_2``, the "global scale");
* global scale ``g = amax(|W|) / (6 * 448)``; block scale ``s = e4m3(block_amax / (6 * g))``,
  all-zero blocks get ``s = 1``; the codes are ``round_e2m1(W / (s * g))``, nearest value, ties
  to the even code, saturating at 6;
* two codes per byte, the even-indexed element in the low nibble: packed ``uint8 [..., in/2]``.

Dequantized weight: ``W' = E2M1[code] * (float(s) * g)``.

Two quantizers produce the same bits: :func:`quantize_nvfp4` (vectorised, chunked over rows, the
one to use) and :func:`quantize_nvfp4_reference` (a plain per-block, per-element loop that is
the written-out spec; tests compare both with each other and with ModelOpt).

One deliberate difference from ModelOpt 0.42, opt-out with ``clamp_block_scale=False``: a block
whose ``block_amax / (6 * g)`` is at most 2**-10 (its amax below ~2.2e-6 of the tensor amax)
rounds to an E4M3 scale of 0 in ModelOpt, which then divides by zero and stores codes 7/15 whose
dequantized value is 0 (the block is lost). We clamp the scale to [2**-9, 448] first (2**-9 is
the smallest E4M3 subnormal), which keeps such blocks. The same rule gives an all-zero tensor
block scales 1 and codes 0 (ModelOpt gives NaN scales there). Every other input is bit-identical
to ModelOpt; with ``clamp_block_scale=False`` all inputs are.

:class:`NVFP4Linear` keeps the packed weight in memory and computes ``x @ W'^T`` by dequantizing
one tile of output rows at a time (``forward``, prefill); a single activation row (decode) goes to the
fused C kernel instead (:func:`nvfp4_matvec`, ``kernels/nvfp4_matvec.c``: the dequantization happens inside
the dot products, so only the packed bytes are read). :func:`nvfp4_linear_reference` dequantizes the whole
weight first and is the reference the tests compare with.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import native

BLOCK_SIZE = 16  # values per E4M3 block scale (ModelOpt NVFP4 group_size)
E2M1_MAX = 6.0  # largest E2M1 magnitude
E4M3_MAX = 448.0  # largest finite float8_e4m3fn
E4M3_MIN_SUBNORMAL = 2.0**-9  # smallest positive float8_e4m3fn

# code -> value; code = sign << 3 | magnitude index
E2M1_VALUES = torch.tensor(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=torch.float32,
)
# midpoints between consecutive magnitudes; a value exactly on a midpoint goes to the even code
_E2M1_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
_MIDPOINTS_ROUNDING_UP = (0.75, 1.75, 3.5)  # midpoints whose upper neighbour has the even code



@dataclass
class NVFP4Tensor:
    """A weight in NVFP4: what a checkpoint stores for one quantized linear.

    packed: uint8 [..., in/2]; block_scale: float8_e4m3fn [..., in/16]; global_scale: fp32 [] (the
    checkpoint's ``weight_scale_2``). Leading dims are e.g. [out] or [experts, out].
    """

    packed: torch.Tensor
    block_scale: torch.Tensor
    global_scale: torch.Tensor

    def __post_init__(self) -> None:
        if self.packed.dtype != torch.uint8:
            raise ValueError(f"NVFP4Tensor.packed must be uint8, got {self.packed.dtype}")
        if self.block_scale.dtype != torch.float8_e4m3fn:
            raise ValueError(f"NVFP4Tensor.block_scale must be float8_e4m3fn, got {self.block_scale.dtype}")
        if self.global_scale.dtype != torch.float32 or self.global_scale.numel() != 1:
            raise ValueError(
                f"NVFP4Tensor.global_scale must be one fp32 value, got {self.global_scale.dtype} "
                f"with shape {tuple(self.global_scale.shape)}"
            )
        if self.packed.dim() < 1 or self.packed.shape[:-1] != self.block_scale.shape[:-1]:
            raise ValueError(
                f"NVFP4Tensor shapes disagree: packed {tuple(self.packed.shape)}, "
                f"block_scale {tuple(self.block_scale.shape)}"
            )
        if self.packed.shape[-1] * 2 != self.block_scale.shape[-1] * BLOCK_SIZE:
            raise ValueError(
                f"NVFP4Tensor: packed has {self.packed.shape[-1] * 2} values per row but block_scale "
                f"covers {self.block_scale.shape[-1] * BLOCK_SIZE} (block size {BLOCK_SIZE})"
            )
        self.global_scale = self.global_scale.reshape(())

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the unquantized weight."""
        return (*self.packed.shape[:-1], self.packed.shape[-1] * 2)

    def nbytes(self) -> int:
        """Bytes held: packed codes + block scales + global scale."""
        return self.packed.numel() + self.block_scale.numel() + 4

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The full dequantized weight (reference path; expands the whole tensor)."""
        return dequantize_nvfp4(self, dtype)


# ---------------------------------------------------------------------------------------------
# nibble packing


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """codes: uint8 [..., 2n] in 0..15 -> uint8 [..., n]; element 2i in the low nibble."""
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_nibbles needs an even last dimension, got {tuple(codes.shape)}")
    codes = codes.to(torch.uint8)
    return (codes[..., 1::2] << 4) | (codes[..., 0::2] & 0xF)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """packed: uint8 [..., n] -> codes uint8 [..., 2n] (low nibble first)."""
    if packed.dtype != torch.uint8:
        raise ValueError(f"unpack_nibbles needs uint8, got {packed.dtype}")
    return torch.stack([packed & 0xF, packed >> 4], dim=-1).flatten(-2)


# ---------------------------------------------------------------------------------------------
# quantizer: fast path


def nvfp4_global_scale(w: torch.Tensor) -> torch.Tensor:
    """fp32 [] per-tensor scale amax(|w|) / (6 * 448), computed as ModelOpt does."""
    amax = torch.maximum(w.max().abs(), w.min().abs()).float()
    return amax / (E2M1_MAX * E4M3_MAX)


def _block_scales(block_amax: torch.Tensor, global_scale: torch.Tensor, clamp: bool) -> torch.Tensor:
    """block_amax: fp32 [..., nb] -> float8_e4m3fn [..., nb]."""
    scale = block_amax / (E2M1_MAX * global_scale)  # same operation order as ModelOpt
    if clamp:
        scale = torch.where(block_amax == 0, torch.ones_like(scale), scale.clamp(E4M3_MIN_SUBNORMAL, E4M3_MAX))
    else:
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return scale.to(torch.float8_e4m3fn)


def e2m1_codes(scaled: torch.Tensor) -> torch.Tensor:
    """Round fp32 values to E2M1 codes (nearest, ties to the even code, saturate at 6).

    The sign bit is set for values < 0 (so -0.0 gives code 0 and small negatives give code 8, as in
    ModelOpt); NaN and +-inf give magnitude code 7.
    """
    mag = scaled.abs()
    code = torch.zeros(scaled.shape, dtype=torch.uint8, device=scaled.device)
    for mid in _E2M1_MIDPOINTS:
        code += mag > mid
    for mid in _MIDPOINTS_ROUNDING_UP:
        code += mag == mid
    code = torch.where(torch.isnan(mag), torch.full_like(code, 7), code)
    return code | ((scaled < 0).to(torch.uint8) << 3)


def quantize_nvfp4(
    w: torch.Tensor,
    global_scale: torch.Tensor | None = None,
    *,
    clamp_block_scale: bool = True,
    rows_per_chunk: int = 4096,
) -> NVFP4Tensor:
    """Quantize w: [..., in] (fp32/bf16/fp16, in % 16 == 0) to NVFP4.

    global_scale: fp32 [] to use instead of amax(|w|)/(6*448) (e.g. one shared by fused weights).
    Works on any device; processes ``rows_per_chunk`` rows at a time to bound temporary memory.
    """
    if not w.is_floating_point() or w.element_size() < 2:
        raise ValueError(f"quantize_nvfp4 needs a float16/bfloat16/float32 tensor, got {w.dtype}")
    if w.dim() < 1 or w.shape[-1] % BLOCK_SIZE:
        raise ValueError(f"quantize_nvfp4: last dimension must be a multiple of {BLOCK_SIZE}, got {tuple(w.shape)}")
    if global_scale is None:
        global_scale = nvfp4_global_scale(w)
    global_scale = global_scale.to(device=w.device, dtype=torch.float32).reshape(())
    lead, n_in = w.shape[:-1], w.shape[-1]
    rows = w.reshape(-1, n_in)  # [R, in]
    packed = torch.empty(rows.shape[0], n_in // 2, dtype=torch.uint8, device=w.device)
    scales = torch.empty(rows.shape[0], n_in // BLOCK_SIZE, dtype=torch.float8_e4m3fn, device=w.device)
    for r0 in range(0, rows.shape[0], rows_per_chunk):
        blocks = rows[r0 : r0 + rows_per_chunk].reshape(-1, n_in // BLOCK_SIZE, BLOCK_SIZE)  # [r, nb, 16]
        block_amax = blocks.abs().amax(dim=-1).float()  # [r, nb]
        scale = _block_scales(block_amax, global_scale, clamp_block_scale)
        if clamp_block_scale and bool(global_scale == 0):
            # all-zero tensor: codes 0 instead of 0/0
            codes = torch.zeros(blocks.shape, dtype=torch.uint8, device=w.device)
        else:
            scaled = blocks / (scale.float() * global_scale).unsqueeze(-1)  # fp32 [r, nb, 16]
            codes = e2m1_codes(scaled)
        packed[r0 : r0 + rows_per_chunk] = pack_nibbles(codes.reshape(-1, n_in))
        scales[r0 : r0 + rows_per_chunk] = scale
    return NVFP4Tensor(
        packed.reshape(*lead, n_in // 2), scales.reshape(*lead, n_in // BLOCK_SIZE), global_scale
    )


# ---------------------------------------------------------------------------------------------
# quantizer: plain reference (the spec written out; slow, for tests)


def _round_e2m1_plain(x: float) -> int:
    """Nearest E2M1 code to x by distance; ties go to the even code; |x| > 6 and NaN saturate."""
    sign = 8 if x < 0 else 0
    mag = abs(x)
    if mag != mag or mag >= E2M1_MAX:  # NaN, inf and everything past 6 saturate
        return sign | 7
    best_code, best_dist = 0, float("inf")
    for code in range(8):
        dist = abs(mag - float(E2M1_VALUES[code]))
        if dist < best_dist or (dist == best_dist and code % 2 == 0):
            best_code, best_dist = code, dist
    return sign | best_code


def quantize_nvfp4_reference(w: torch.Tensor, *, clamp_block_scale: bool = True) -> NVFP4Tensor:
    """Block by block, value by value. Same result as :func:`quantize_nvfp4`."""
    if w.dim() < 1 or w.shape[-1] % BLOCK_SIZE:
        raise ValueError(f"quantize_nvfp4_reference: last dimension must be a multiple of {BLOCK_SIZE}")
    lead, n_in = w.shape[:-1], w.shape[-1]
    rows = w.reshape(-1, n_in)
    amax = torch.tensor(max(abs(float(v)) for v in rows.flatten().tolist()) if rows.numel() else 0.0)
    g = amax.float() / torch.tensor(E2M1_MAX * E4M3_MAX, dtype=torch.float32)
    codes = torch.zeros(rows.shape, dtype=torch.uint8)
    scales = torch.zeros(rows.shape[0], n_in // BLOCK_SIZE, dtype=torch.float32)
    for r in range(rows.shape[0]):
        for b in range(n_in // BLOCK_SIZE):
            block = rows[r, b * BLOCK_SIZE : (b + 1) * BLOCK_SIZE].float()  # fp32 [16]
            block_amax = torch.tensor(max(abs(float(v)) for v in block), dtype=torch.float32)
            s = block_amax / (torch.tensor(E2M1_MAX, dtype=torch.float32) * g)
            if float(block_amax) == 0.0 or (not clamp_block_scale and float(s) == 0.0):
                s = torch.tensor(1.0)
            elif clamp_block_scale:
                s = torch.tensor(min(max(float(s), E4M3_MIN_SUBNORMAL), E4M3_MAX), dtype=torch.float32)
            s8 = s.to(torch.float8_e4m3fn)
            scales[r, b] = s8.float()
            if clamp_block_scale and float(g) == 0.0:
                continue  # all-zero tensor: codes stay 0
            denom = s8.float() * g
            for i in range(BLOCK_SIZE):
                codes[r, b * BLOCK_SIZE + i] = _round_e2m1_plain(float(block[i] / denom))
    return NVFP4Tensor(
        pack_nibbles(codes).reshape(*lead, n_in // 2),
        scales.to(torch.float8_e4m3fn).reshape(*lead, n_in // BLOCK_SIZE),
        g.reshape(()),
    )


# ---------------------------------------------------------------------------------------------
# dequantize


def dequantize_nvfp4(q: NVFP4Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The whole weight [..., in] in dtype: E2M1[code] * (float(s) * g), computed in fp32."""
    values = E2M1_VALUES.to(q.packed.device)[unpack_nibbles(q.packed).long()]  # fp32 [..., in]
    per_block = q.block_scale.float() * q.global_scale  # fp32 [..., nb]
    blocks = values.reshape(*values.shape[:-1], -1, BLOCK_SIZE) * per_block.unsqueeze(-1)
    return blocks.reshape(values.shape).to(dtype)


def dequantize_rows(packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                    dtype: torch.dtype) -> torch.Tensor:
    """Some rows of a weight, dequantized: exactly :func:`dequantize_nvfp4`'s values (bit for bit), so a prefill
    GEMM on them is the reference's F.linear.

    packed uint8 [r, in/2], block_scale e4m3 [r, in/16], global_scale fp32 [] or [parts] (the rows split into
    ``parts`` equal groups, e.g. a fused gate_up expert weight: gate rows, then up rows) -> [r, in] in dtype.
    The C kernel for bf16 / fp32 (~7x the PyTorch expression, which is the fallback).
    """
    fast = native.nvfp4_dequantize(packed, block_scale, global_scale, dtype)
    if fast is not None:
        return fast
    g = global_scale.reshape(-1)
    rows = packed.shape[0] // g.numel()
    return torch.cat([dequantize_nvfp4(NVFP4Tensor(packed[p * rows:(p + 1) * rows],
                                                   block_scale[p * rows:(p + 1) * rows], g[p]), dtype)
                      for p in range(g.numel())])


# ---------------------------------------------------------------------------------------------
# weight-only linear


def nvfp4_linear_reference(x: torch.Tensor, q: NVFP4Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Naive reference: dequantize the whole weight to x.dtype, then F.linear. x: [..., in]."""
    return F.linear(x, dequantize_nvfp4(q, x.dtype), bias)


def nvfp4_linear(
    x: torch.Tensor,
    q: NVFP4Tensor,
    bias: torch.Tensor | None = None,
    *,
    rows_per_tile: int = 1024,
) -> torch.Tensor:
    """y = x @ W'^T (+ bias) with W' dequantized one tile of output rows at a time (the same values as the
    reference's: the same result up to the GEMM's summation order).

    x: [..., in] -> [..., out]. Only ``rows_per_tile * in`` weight values are ever expanded.
    """
    n_out, n_in = q.packed.shape[0], q.packed.shape[1] * 2
    if q.packed.dim() != 2:
        raise ValueError(f"nvfp4_linear needs a 2-D weight, got {tuple(q.shape)}")
    if x.shape[-1] != n_in:
        raise ValueError(f"nvfp4_linear: input has {x.shape[-1]} features, weight expects {n_in}")
    x2 = x.reshape(-1, n_in)  # [T, in]
    out = torch.empty(x2.shape[0], n_out, dtype=x.dtype, device=x.device)  # [T, out]
    for r0 in range(0, n_out, rows_per_tile):
        w_tile = dequantize_rows(q.packed[r0 : r0 + rows_per_tile], q.block_scale[r0 : r0 + rows_per_tile],
                                 q.global_scale, x.dtype)
        torch.matmul(x2, w_tile.t(), out=out[:, r0 : r0 + rows_per_tile])
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], n_out)


# ---------------------------------------------------------------------------------------------
# decode: one activation row through the fused kernel, a C++-registered operator (native.nvfp4_op); opaque to
# torch.compile, so a compiled decode step calls it as is (no graph break, no recompile as positions grow) and,
# with inductor's C++ wrapper, without Python. Without the kernel: the tiled path, as a Python custom op inside
# a compiled graph.


def _matvec_tiled(x: torch.Tensor, packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                  experts: torch.Tensor | None = None, parts: int = 1) -> torch.Tensor:
    """nvfp4_matvec without the kernel: each selected weight's projections through nvfp4_linear."""
    if experts is None:
        packed, block_scale, experts = packed[None], block_scale[None], torch.zeros(1, dtype=torch.long)
    n_experts, rows = packed.shape[0], packed.shape[1] // parts
    g = global_scale.reshape(n_experts, parts)
    out = []
    for k, e in enumerate(experts.tolist()):
        if not 0 <= e < n_experts:
            raise ValueError(f"nvfp4_matvec: expert index out of range 0..{n_experts - 1}: {experts.tolist()}")
        xk = x[k if x.shape[0] > 1 else 0][None]
        out.append(torch.cat([nvfp4_linear(xk, NVFP4Tensor(packed[e, p * rows:(p + 1) * rows],
                                                           block_scale[e, p * rows:(p + 1) * rows], g[e, p]))
                              for p in range(parts)], dim=-1))
    return torch.cat(out)


nvfp4_matvec_tiled = torch.library.custom_op("qwen_stack::nvfp4_matvec_tiled", _matvec_tiled, mutates_args=())


@nvfp4_matvec_tiled.register_fake
def _(x, packed, block_scale, global_scale, experts=None, parts=1):
    return x.new_empty(1 if experts is None else experts.shape[0], packed.shape[-2])


@torch.compiler.assume_constant_result
def _kernel_available() -> bool:
    """Decided once when a graph is traced (dynamo must not trace the build and load)."""
    return native.nvfp4_op() is not None


def nvfp4_matvec(x: torch.Tensor, packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor,
                 experts: torch.Tensor | None = None, parts: int = 1) -> torch.Tensor:
    """Decode: x [1, in] times a stored weight, or the selected experts' weights read in place.

    Plain weight: packed [out, in/2], block_scale [out, in/16], global_scale [] or [parts] -> [1, out].
    Experts: packed [E, out, in/2], block_scale [E, out, in/16], global_scale [E, parts] or [E], experts int [K];
    x [1, in] (shared) or [K, in] (row k for expert k) -> [K, out], row k by expert experts[k]. `parts`
    projections of out/parts rows each own one global scale (2 for a fused gate_up). Result in x.dtype.
    """
    if x.device.type == "cpu" and _kernel_available():
        return torch.ops.qwen_stack_nvfp4.matvec(x, packed, block_scale, global_scale, experts, parts)
    if torch.compiler.is_compiling():
        return nvfp4_matvec_tiled(x, packed, block_scale, global_scale, experts, parts)
    return _matvec_tiled(x, packed, block_scale, global_scale, experts, parts)


class NVFP4Linear(torch.nn.Module):
    """Drop-in for ``nn.Linear`` whose weight stays packed NVFP4 (weight-only 4-bit).

    Buffers use the checkpoint names: ``weight`` uint8 [out, in/2], ``weight_scale`` e4m3
    [out, in/16], ``weight_scale_2`` fp32 [], ``input_scale`` fp32 [] (kept for export; weight-only
    compute does not use it).
    """

    weight: torch.Tensor
    weight_scale: torch.Tensor
    weight_scale_2: torch.Tensor
    input_scale: torch.Tensor

    def __init__(
        self,
        q: NVFP4Tensor,
        bias: torch.Tensor | None = None,
        input_scale: torch.Tensor | None = None,
        *,
        rows_per_tile: int = 1024,
    ) -> None:
        super().__init__()
        if q.packed.dim() != 2:
            raise ValueError(f"NVFP4Linear needs a 2-D weight, got {tuple(q.shape)}")
        self.out_features, self.in_features = q.shape
        self.rows_per_tile = rows_per_tile
        self.register_buffer("weight", q.packed)
        self.register_buffer("weight_scale", q.block_scale)
        self.register_buffer("weight_scale_2", q.global_scale.reshape(()))
        self.register_buffer("input_scale", (input_scale if input_scale is not None else torch.ones(())).float().reshape(()))
        self.bias = torch.nn.Parameter(bias, requires_grad=False) if bias is not None else None

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, **kw) -> "NVFP4Linear":
        bias = linear.bias.detach() if linear.bias is not None else None
        return cls(quantize_nvfp4(linear.weight.detach()), bias, **kw)

    @property
    def qweight(self) -> NVFP4Tensor:
        return NVFP4Tensor(self.weight, self.weight_scale, self.weight_scale_2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., in] -> [..., out]
        if x.numel() == self.in_features:                                                  # one row: decode
            y = nvfp4_matvec(x.reshape(1, -1), self.weight, self.weight_scale, self.weight_scale_2)
            y = y.view(*x.shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias.to(y.dtype)
        return nvfp4_linear(x, self.qweight, self.bias, rows_per_tile=self.rows_per_tile)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        return nvfp4_linear_reference(x, self.qweight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nvfp4"
