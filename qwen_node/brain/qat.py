"""Quantization-aware fine-tuning: the forward and backward pass through the weights NVFP4 will give.

`train-brain --qat` wraps each step in :class:`NVFP4FakeQuant`: every weight that `qwen-stack quantize`
(default preset) will store in NVFP4 is replaced, in place, by exactly what the engine will compute with
after quantization (the bf16 checkpoint value, quantized and dequantized: ``dequantize_nvfp4(quantize_nvfp4(w))``,
per checkpoint tensor, so each routed expert's gate, up and down projection has its own global scale, as the
checkpoint stores them). The gradient taken there goes to the full-precision weights, which are restored
before the optimiser step (the straight-through estimator). The shipped bf16 checkpoint is those weights; its
NVFP4 copy then holds exactly the weights the model was trained through.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..engine.loader import hf_tensors
from ..engine.nvfp4 import dequantize_nvfp4, quantize_nvfp4
from ..engine.nvfp4_checkpoint import DEFAULT_EXCLUDE, engine_module_kinds, plan_quantization


def nvfp4_round_trip(w: torch.Tensor) -> torch.Tensor:
    """fp32: what the engine computes with for a weight w stored as bf16, then quantized to NVFP4."""
    return dequantize_nvfp4(quantize_nvfp4(w.to(torch.bfloat16)))


class NVFP4FakeQuant:
    """``with NVFP4FakeQuant(model, config_dir):`` the model's weights are their NVFP4 round trip inside the block
    (the ones `quantize_checkpoint` with `exclude` quantizes: the same plan, from config_dir's config.json), and
    their own values again after it. Gradients computed inside stay in .grad for the restored weights."""

    def __init__(self, model, config_dir: str | Path, exclude: tuple[str, ...] = DEFAULT_EXCLUDE):
        views = dict(hf_tensors(model))
        plan = plan_quantization({n: (tuple(v.shape), "F32") for n, v in views.items()}, exclude,
                                 engine_module_kinds(config_dir))
        self.names = sorted(m for m, why in plan.items() if why == "nvfp4")
        self.views = [views[f"{m}.weight"] for m in self.names]
        self._saved: list[torch.Tensor] | None = None

    def __enter__(self) -> "NVFP4FakeQuant":
        if self._saved is not None:
            raise RuntimeError("NVFP4FakeQuant is not re-entrant")
        with torch.no_grad():
            self._saved = [v.clone() for v in self.views]
            for v in self.views:
                v.copy_(nvfp4_round_trip(v))
        return self

    def __exit__(self, *exc) -> None:
        with torch.no_grad():
            for v, s in zip(self.views, self._saved):
                v.copy_(s)
        self._saved = None
