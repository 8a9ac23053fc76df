"""Tiny NVFP4 checkpoints, their exported graphs and the PyTorch engine loaded with the same weights.

MoE and dense; NVFP4 in every linear the "all-linears" preset allows (attention and DeltaNet projections
included, so the mixer graphs carry FP4 weights), and one checkpoint quantized at export time from bf16
with the mlp-only preset (mixers dense: the graphs mix FP4 and fp32 weights).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).parent))
from tiny_checkpoints import make_checkpoint  # noqa: E402

from trt_tiny_models import CHECKPOINTS  # noqa: E402


# (checkpoint, graph, variant) -> max relative error over its outputs and shapes, filled by the parity test
PARITY_ERRORS: dict[tuple[str, str, str], float] = {}


def pytest_terminal_summary(terminalreporter):
    if not PARITY_ERRORS:
        return
    tr = terminalreporter
    tr.section("ONNX vs PyTorch engine: max relative error per graph (trt: onnx.reference, lut: onnxruntime)")
    graphs = sorted({k[:2] for k in PARITY_ERRORS})
    tr.write_line(f"{'checkpoint':<10} {'graph':<28} {'trt':>9} {'lut':>9}")
    for ckpt, graph in graphs:
        cells = [PARITY_ERRORS.get((ckpt, graph, v)) for v in ("trt", "lut")]
        tr.write_line(f"{ckpt:<10} {graph:<28} " + " ".join(f"{c:>9.1e}" if c is not None else f"{'-':>9}" for c in cells))


@dataclass
class Exported:
    name: str
    model_dir: Path
    onnx_dir: Path
    manifest: dict
    engine: torch.nn.Module = field(repr=False)   # the PyTorch engine (fp32) with the same NVFP4-dequantized weights


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Exported]:
    from qwen_stack.qwen_node.engine.loader import load_model
    from qwen_stack.qwen_node.engine.nvfp4_checkpoint import EXCLUDE_PRESETS, quantize_checkpoint
    from qwen_stack.trt_engines.export import export, manifest_weights
    from qwen_stack.trt_engines.layer_graphs import ShapeLimits

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("trt_tiny")
    out = {}
    for i, (name, (arch, kw, preset)) in enumerate(CHECKPOINTS.items()):
        src = root / f"{name}_src"
        make_checkpoint(src, arch, seed=200 + i, **kw)
        if preset is not None:
            model_dir = root / name
            quantize_checkpoint(src, model_dir, EXCLUDE_PRESETS[preset], measure_error=False)
        else:
            model_dir = src
        onnx_dir = root / f"{name}_onnx"
        # a checkpoint quantized at export uses the mlp-only preset: graphs mixing FP4 and dense weights
        manifest = export(model_dir, onnx_dir, limits=ShapeLimits(max_batch=4, max_tokens=64, max_seq=128, chunk=16),
                          preset="mlp-only" if preset is None else None, say=lambda _m: None)
        engine = load_model(model_dir, dtype=torch.float32, source=manifest_weights(manifest).dequantized_source(),
                            progress=False)
        out[name] = Exported(name, model_dir, onnx_dir, manifest, engine)
    return out
