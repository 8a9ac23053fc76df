"""Run the engine on NVFP4 checkpoints (ours and ModelOpt-format ones), weight-only, packed in memory.

Plugs into the engine loader's hook (loader.py docstring): :func:`nvfp4_layer_builders` returns
``LayerBuilders`` whose ``linear`` (and ``lm_head``) gives an :class:`~.nvfp4.NVFP4Linear` for every module the
checkpoint stores quantized (``<module>.weight_scale_2`` present) and ``nn.Linear`` otherwise, and
whose ``experts`` gives :class:`NVFP4Experts` for quantized routed experts. The embedding stays a plain
lookup table whatever lm_head is (a tied lm_head is quantized into its own tensor, nvfp4_checkpoint). Their tensors are
declared as uint8 / float8_e4m3fn / fp32, so the loader reads the packed bytes as they are: the
whole model is never expanded; each matmul dequantizes one tile of its weight (NVFP4Linear) or one
expert (NVFP4Experts) at a time.

Routed experts on disk are one module per expert (``experts.{e}.gate_proj`` ...); the loader's
``FusedExpertsSource`` stacks them into ``experts.gate_up_proj.<leaf>`` / ``experts.down_proj.<leaf>``
([E, 2I, D/2] codes, [E, 2I, D/16] scales, [E, 2] global scales for gate and up; [E, D, I/2],
[E, D, I/16], [E] for down). :class:`ModelOptLayoutSource`, below the expert fusing, reads the
storage variants some converters write ([1]-shaped scalars, uint8 scale bytes, int8 codes) as
ModelOpt's layout.

:func:`load_model_auto` is what a caller uses: NVFP4 builders when the folder has an NVFP4
quantization config, the plain loader otherwise.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import load_config
from .loader import FusedExpertsSource, SafetensorsSource, TensorSource, load_model
from .model import FusedExperts, LayerBuilders, grouped_experts, plain_experts, plain_lm_head, plain_linear
from .nvfp4 import BLOCK_SIZE, NVFP4Linear, NVFP4Tensor, dequantize_nvfp4, dequantize_rows, nvfp4_matvec
from .nvfp4_checkpoint import LM_HEAD, read_quant_config

_SCALAR_LEAVES = ("weight_scale_2", "input_scale")


class ModelOptLayoutSource:
    """Wraps a TensorSource of per-module tensors and normalises NVFP4 storage variants.

    One-element ``weight_scale_2`` / ``input_scale`` stored as [1] read as [] (ModelOpt writes 0-d
    tensors); block scales stored as raw uint8 bytes read as float8_e4m3fn; packed weights stored
    as int8 read as uint8 (bit views, no value conversion). Goes below ``FusedExpertsSource``.
    """

    def __init__(self, base: TensorSource):
        self.base = base

    def names(self):
        return self.base.names()

    def has(self, name):
        return self.base.has(name)

    @staticmethod
    def _scalar_leaf(name: str) -> bool:
        return name.rsplit(".", 1)[-1] in _SCALAR_LEAVES

    def shape(self, name):
        shape = tuple(self.base.shape(name))
        return () if self._scalar_leaf(name) and shape == (1,) else shape

    def get(self, name):
        t = self.base.get(name)
        if self._scalar_leaf(name) and t.shape == (1,):
            return t.reshape(())
        if name.endswith(".weight_scale") and t.dtype == torch.uint8:
            return t.view(torch.float8_e4m3fn)
        if name.endswith(".weight") and t.dtype == torch.int8 and self.base.has(f"{name}_scale_2"):
            return t.view(torch.uint8)
        return t


# ---------------------------------------------------------------------------------------------
# routed experts


class NVFP4ExpertWeights(nn.Module):
    """One fused expert weight in NVFP4 (buffers named as on disk, leading dim = experts).

    weight: uint8 [E, out, in/2]; weight_scale: e4m3 [E, out, in/16]; weight_scale_2: fp32 [E, P]
    (P = number of fused projections: 2 for gate_up, each owning out/P rows) or [E] for P = 1.
    """

    weight: torch.Tensor
    weight_scale: torch.Tensor
    weight_scale_2: torch.Tensor
    input_scale: torch.Tensor

    def __init__(self, num_experts: int, out_features: int, in_features: int, parts: int):
        super().__init__()
        if in_features % BLOCK_SIZE:
            raise ValueError(f"NVFP4 experts need in_features % {BLOCK_SIZE} == 0, got {in_features}")
        self.parts, self.out_features, self.in_features = parts, out_features, in_features
        scale_shape = (num_experts, parts) if parts > 1 else (num_experts,)
        self.register_buffer("weight", torch.empty(num_experts, out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer(
            "weight_scale", torch.empty(num_experts, out_features, in_features // BLOCK_SIZE, dtype=torch.float8_e4m3fn)
        )
        self.register_buffer("weight_scale_2", torch.empty(scale_shape, dtype=torch.float32))
        self.register_buffer("input_scale", torch.empty(scale_shape, dtype=torch.float32))

    def part(self, e: int, p: int) -> NVFP4Tensor:
        """Projection p of expert e as a 2-D NVFP4 weight."""
        rows = self.out_features // self.parts
        g = self.weight_scale_2[e, p] if self.parts > 1 else self.weight_scale_2[e]
        sl = slice(p * rows, (p + 1) * rows)
        return NVFP4Tensor(self.weight[e, sl], self.weight_scale[e, sl], g)

    def tile(self, e: int, dtype: torch.dtype) -> torch.Tensor:
        """Expert e's whole weight [out, in] in dtype, the reference's values (prefill: one GEMM per expert)."""
        return dequantize_rows(self.weight[e], self.weight_scale[e], self.weight_scale_2[e], dtype)

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        """All experts, [E, out, in] (reference path only)."""
        return torch.stack(
            [torch.cat([dequantize_nvfp4(self.part(e, p), dtype) for p in range(self.parts)]) for e in range(self.weight.shape[0])]
        )


class NVFP4Experts(nn.Module):
    """Routed experts with NVFP4 weights; same interface and routing as ``model.FusedExperts``.

    forward(x: [N, D], top_idx: [N, K], top_w: [N, K]) -> [N, D]. One token (decode): the K selected experts
    straight from the packed weights, dequantized inside the dot products (the C kernel, nvfp4.nvfp4_matvec);
    more tokens (prefill): each active expert's weights dequantized (the reference's values) right before its
    two GEMMs, so prefill gives the reference's result.
    """

    def __init__(self, num_experts: int, hidden: int, intermediate: int):
        super().__init__()
        self.num_experts, self.intermediate = num_experts, intermediate
        self.gate_up_proj = NVFP4ExpertWeights(num_experts, 2 * intermediate, hidden, parts=2)
        self.down_proj = NVFP4ExpertWeights(num_experts, hidden, intermediate, parts=1)

    def forward(self, x, top_idx, top_w):
        # x: [N, D]; top_idx, top_w: [N, K]. Index legend: N tokens, K top-k, E experts, D hidden.
        N, K = top_idx.shape
        if N == 1:
            gu, dn, idx = self.gate_up_proj, self.down_proj, top_idx[0]
            gate, up = nvfp4_matvec(x, gu.weight, gu.weight_scale, gu.weight_scale_2, idx, 2).chunk(2, -1)
            ye = nvfp4_matvec(F.silu(gate) * up, dn.weight, dn.weight_scale, dn.weight_scale_2, idx, 1)  # [K, D]
            return (ye.float() * top_w[0, :, None].float()).sum(0, keepdim=True).to(x.dtype)
        # prefill: as FusedExperts, each active expert's weights dequantized whole (the reference's values, a C
        # loop) right before its two GEMMs over the tokens routed to it
        return grouped_experts(x, top_idx, top_w, self.num_experts,
                               lambda e: (self.gate_up_proj.tile(e, x.dtype), self.down_proj.tile(e, x.dtype)))

    def forward_reference(self, x, top_idx, top_w):
        """Naive: dequantize every expert to x.dtype, then run the engine's FusedExperts."""
        plain = FusedExperts(self.num_experts, self.gate_up_proj.in_features, self.intermediate).to(x.device)
        plain.gate_up_proj = nn.Parameter(self.gate_up_proj.dequantize(x.dtype), requires_grad=False)
        plain.down_proj = nn.Parameter(self.down_proj.dequantize(x.dtype), requires_grad=False)
        return plain(x, top_idx, top_w)


# ---------------------------------------------------------------------------------------------
# builders and loading


def _empty_nvfp4_linear(in_features: int, out_features: int, bias: bool) -> NVFP4Linear:
    if in_features % BLOCK_SIZE:
        raise ValueError(f"NVFP4 linear needs in_features % {BLOCK_SIZE} == 0, got {in_features}")
    q = NVFP4Tensor(
        torch.empty(out_features, in_features // 2, dtype=torch.uint8),
        torch.empty(out_features, in_features // BLOCK_SIZE, dtype=torch.float8_e4m3fn),
        torch.empty((), dtype=torch.float32),
    )
    return NVFP4Linear(q, torch.empty(out_features) if bias else None, torch.empty((), dtype=torch.float32))


def nvfp4_layer_builders(source: TensorSource, text_prefix: str) -> LayerBuilders:
    """Builders that make NVFP4 modules exactly where ``source`` holds quantized tensors."""

    def quantized(module: str) -> bool:
        return source.has(f"{text_prefix}{module}.weight_scale_2")

    def linear(name: str, in_features: int, out_features: int, bias: bool) -> nn.Module:
        if quantized(name):
            return _empty_nvfp4_linear(in_features, out_features, bias)
        return plain_linear(name, in_features, out_features, bias)

    def experts(name: str, num_experts: int, hidden: int, intermediate: int) -> nn.Module:
        states = {quantized(f"{name}.{e}.{p}") for e in range(num_experts) for p in ("gate_proj", "up_proj", "down_proj")}
        if states == {True}:
            return NVFP4Experts(num_experts, hidden, intermediate)
        if states == {False}:
            return plain_experts(name, num_experts, hidden, intermediate)
        raise ValueError(f"{text_prefix}{name}: some routed experts are NVFP4 and some are not; mixed experts are not supported")

    def lm_head(hidden: int, vocab: int) -> nn.Module:
        # checkpoint name "lm_head" (no text prefix); quantized only by `qwen-stack quantize --lm-head nvfp4`
        if source.has(f"{LM_HEAD}.weight_scale_2"):
            return _empty_nvfp4_linear(hidden, vocab, False)
        return plain_lm_head(hidden, vocab)

    return LayerBuilders(linear=linear, experts=experts, lm_head=lm_head)


def load_nvfp4_model(model_dir: str | Path, dtype: torch.dtype = torch.bfloat16, device="cpu", progress: bool = False):
    """Load an NVFP4 checkpoint: quantized linears/experts stay packed; the rest in ``dtype``."""
    cfg = load_config(model_dir)
    source = FusedExpertsSource(ModelOptLayoutSource(SafetensorsSource(model_dir)))
    builders = nvfp4_layer_builders(source, cfg.text_prefix)
    return load_model(model_dir, dtype=dtype, device=device, builders=builders, source=source, progress=progress)


def load_model_auto(model_dir: str | Path, dtype: torch.dtype = torch.bfloat16, device="cpu", progress: bool = True,
                    layer_backend=None):
    """NVFP4 loading when the folder declares NVFP4 quantization, the plain loader otherwise.

    layer_backend: optional callable `builders or None -> builders or None` that swaps whole layer
    types (e.g. trt_engines.runtime.select_backend for TensorRT/onnxruntime layers), given the
    checkpoint's own builders (NVFP4 linears, or None for the plain PyTorch layers)."""
    source, builders = None, None
    if read_quant_config(model_dir) is not None:
        cfg = load_config(model_dir)
        source = FusedExpertsSource(ModelOptLayoutSource(SafetensorsSource(model_dir)))
        builders = nvfp4_layer_builders(source, cfg.text_prefix)
    if layer_backend is not None:
        builders = layer_backend(builders)
    return load_model(model_dir, dtype=dtype, device=device, builders=builders, source=source, progress=progress)


def resident_weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of parameters and buffers held, split into NVFP4 modules and everything else."""
    nvfp4 = other = 0
    for mod in model.modules():
        own = [t for t in list(mod._parameters.values()) + list(mod._buffers.values()) if t is not None]
        n = sum(t.numel() * t.element_size() for t in own)
        if isinstance(mod, (NVFP4Linear, NVFP4ExpertWeights)):
            nvfp4 += n
        else:
            other += n
    return {"nvfp4": nvfp4, "other": other, "total": nvfp4 + other}
