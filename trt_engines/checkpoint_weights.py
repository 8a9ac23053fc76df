"""Weights for export, read from a checkpoint folder: NVFP4 where the checkpoint (or the on-the-fly rule) says so.

Two kinds of checkpoint are accepted:
* an NVFP4 checkpoint in the ModelOpt layout (`qwen-stack quantize` writes one): quantized linears are
  returned as their stored `NVFP4Tensor` bits, everything else as stored;
* an unquantized (bf16/fp16/fp32) checkpoint: each linear weight that `nvfp4_checkpoint` would quantize
  (same exclusion list, same quantizer) is quantized here in memory, so the exported graph carries the
  bits `qwen-stack quantize` would have written.

`dequantized_source()` gives the PyTorch engine's loader the same weights, dequantized to fp32, so the
engine and the ONNX graphs compute with identical weights (what the parity tests compare).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from qwen_stack.qwen_node.engine.config import ModelConfig, load_config
from qwen_stack.qwen_node.engine.loader import FusedExpertsSource, SafetensorsSource
from qwen_stack.qwen_node.engine.nvfp4 import BLOCK_SIZE, NVFP4Tensor, dequantize_nvfp4, quantize_nvfp4
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import (
    DEFAULT_EXCLUDE,
    NVFP4CheckpointReader,
    is_excluded,
    read_quant_config,
)

Weight = NVFP4Tensor | torch.Tensor  # a linear weight: NVFP4 bits, or a dense fp32 [out, in]


def quantize_checkpoint_would_quantize(name: str, t: torch.Tensor, exclude: tuple[str, ...]) -> bool:
    """The rule `nvfp4_checkpoint.quantize_checkpoint` applies to each stored tensor: a 2-D floating
    `*.weight` (16-bit or wider), not excluded, input width a multiple of 16."""
    return (t.dim() == 2 and name.endswith(".weight") and t.is_floating_point() and t.element_size() >= 2
            and not is_excluded(name[: -len(".weight")], exclude) and t.shape[-1] % BLOCK_SIZE == 0)


class CheckpointWeights:
    """Module-name access (names relative to the text model, e.g. "layers.3.mlp.gate") to export weights."""

    def __init__(self, model_dir: str | Path, exclude: tuple[str, ...] = DEFAULT_EXCLUDE):
        self.model_dir = Path(model_dir)
        self.config: ModelConfig = load_config(self.model_dir)
        self.prefix = self.config.text_prefix
        quant = read_quant_config(self.model_dir)
        if quant is not None:
            self.quantization = "nvfp4 (checkpoint)"
            self._reader: NVFP4CheckpointReader | None = NVFP4CheckpointReader(self.model_dir)
            self._plain: SafetensorsSource | None = None
        else:
            self.quantization = "nvfp4 (quantized at export)"
            self._reader = None
            self._plain = SafetensorsSource(self.model_dir)
        self.exclude = exclude

    @property
    def quantized_at_export(self) -> bool:
        return self._reader is None

    # ------------------------------------------------------------------ raw access by full checkpoint name
    def _has(self, full: str) -> bool:
        return full in self._reader if self._reader is not None else self._plain.has(full)  # type: ignore[union-attr]

    def _stored(self, full: str) -> torch.Tensor:
        if self._reader is not None:
            return self._reader.tensor(full)
        return self._plain.get(full)  # type: ignore[union-attr]

    def _full(self, rel: str) -> str:
        return self.prefix + rel

    # ------------------------------------------------------------------ what export reads
    def linear(self, module: str) -> Weight:
        """The weight of linear `module` (relative name): NVFP4Tensor if quantized, else fp32 [out, in]."""
        full = self._full(module)
        if self._reader is not None:
            if self._reader.is_quantized(full):
                return self._reader.nvfp4(full)
            return self._stored(f"{full}.weight").float()
        w = self._stored(f"{full}.weight")
        if quantize_checkpoint_would_quantize(f"{full}.weight", w, self.exclude):
            return quantize_nvfp4(w)
        return w.float()

    def tensor(self, name: str) -> torch.Tensor:
        """A non-linear tensor (norm weight, conv1d.weight, A_log, dt_bias) as fp32."""
        full = self._full(name)
        if not self._has(full):
            raise KeyError(f"{self.model_dir}: checkpoint has no tensor {full!r}")
        return self._stored(full).float()

    def dequantized_source(self) -> FusedExpertsSource:
        """A loader TensorSource returning every linear weight exactly as export sees it, dequantized (fp32)."""
        return FusedExpertsSource(_DequantizedSource(self))

    def fingerprint(self) -> str:
        """sha256 over the checkpoint's safetensors files and config (what the exported graphs derive from)."""
        h = hashlib.sha256()
        for f in sorted(self.model_dir.glob("*.safetensors")) + [self.model_dir / "config.json"]:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()


class _DequantizedSource:
    """TensorSource view: `X.weight` of a quantized module comes back dequantized, all else as stored."""

    def __init__(self, weights: CheckpointWeights):
        self.w = weights
        base = weights._reader if weights._reader is not None else weights._plain
        self._names = list(base.keys() if weights._reader is not None else base.names())  # type: ignore[union-attr]
        self._set = set(self._names)

    def names(self):
        return self._names

    def has(self, name: str) -> bool:
        return name in self._set

    def _module(self, name: str) -> str | None:
        if name.endswith(".weight") and name.startswith(self.w.prefix):
            return name[len(self.w.prefix):-len(".weight")]
        return None

    def shape(self, name: str) -> tuple[int, ...]:
        module = self._module(name)
        if module is not None and self.w._reader is not None and self.w._reader.is_quantized(name[:-len(".weight")]):
            return self.w._reader.nvfp4(name[:-len(".weight")]).shape
        return tuple(self.w._stored(name).shape)

    def get(self, name: str) -> torch.Tensor:
        module = self._module(name)
        stored = self.w._stored(name)
        if module is not None and (stored.dim() == 2):
            w = self.w.linear(module)
            if isinstance(w, NVFP4Tensor):
                return dequantize_nvfp4(w, torch.float32)
        return stored
