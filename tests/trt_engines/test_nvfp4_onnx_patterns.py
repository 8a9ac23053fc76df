"""The two NVFP4 ONNX weight patterns decode to exactly the engine's dequantized weights; the chunk solve."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto
from onnx.reference import ReferenceEvaluator

from qwen_stack.qwen_node.engine.nvfp4 import dequantize_nvfp4, quantize_nvfp4
from qwen_stack.trt_engines.layer_graphs import unit_lower_inverse_product
from qwen_stack.trt_engines.nvfp4_onnx import dequantized_weight, experts_weights
from qwen_stack.trt_engines.onnx_graph import FLOAT, GraphBuilder


def _weight_graph(q, variant, opset):
    g = GraphBuilder("w")
    w = dequantized_weight(g, "w", q, variant)
    g.output(w, "weight", FLOAT, list(q.shape))
    return g.model(opset)


def _tricky_weight(seed, rows=24, cols=64):
    """Random rows plus an all-zero block, a tiny block (smallest E4M3 scales) and a huge outlier."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen)
    w[0, :16] = 0
    w[1, 16:32] *= 1e-6
    w[2, 5] = 300.0
    return w


@pytest.mark.parametrize("seed", [0, 1])
def test_trt_pattern_is_bit_exact_on_reference_evaluator(seed):
    q = quantize_nvfp4(_tricky_weight(seed))
    (got,) = ReferenceEvaluator(_weight_graph(q, "trt", 23)).run(None, {})
    np.testing.assert_array_equal(got, dequantize_nvfp4(q).numpy())


@pytest.mark.parametrize("seed", [0, 1])
def test_lut_pattern_is_bit_exact_on_onnxruntime(seed):
    q = quantize_nvfp4(_tricky_weight(seed))
    sess = ort.InferenceSession(_weight_graph(q, "lut", 23).SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {})
    np.testing.assert_array_equal(got, dequantize_nvfp4(q).numpy())


def test_trt_pattern_layout():
    """FLOAT4E2M1 [out, in] holding the checkpoint's packed bytes unchanged; E4M3 scales; blocked DQ."""
    q = quantize_nvfp4(_tricky_weight(3))
    m = _weight_graph(q, "trt", 23)
    inits = {t.name: t for t in m.graph.initializer}
    w4 = inits["w.w_fp4"]
    assert w4.data_type == TensorProto.FLOAT4E2M1 and list(w4.dims) == list(q.shape)
    assert w4.raw_data == q.packed.numpy().tobytes()
    assert inits["w.scale_e4m3"].data_type == TensorProto.FLOAT8E4M3FN
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert [n.input[0] for n in dq] == ["w.scale_e4m3", "w.w_fp4"]
    attrs = {a.name: a.i for a in dq[1].attribute}
    assert attrs == {"axis": -1, "block_size": 16}


@pytest.mark.parametrize("variant,opset", [("trt", 23), ("lut", 23)])
def test_experts_gather_decodes_the_selected_experts(variant, opset):
    """Per-expert global scales (gate and up differ) survive the gather; order of idx is respected."""
    gen = torch.Generator().manual_seed(5)
    E, I, D = 4, 16, 32
    gate = [quantize_nvfp4(torch.randn(I, D, generator=gen) * (e + 1)) for e in range(E)]
    up = [quantize_nvfp4(torch.randn(I, D, generator=gen) * 0.1) for e in range(E)]
    g = GraphBuilder("experts")
    g.input("idx", TensorProto.INT64, ["m"])
    w = experts_weights(g, "x", [[gate[e], up[e]] for e in range(E)], "idx", variant)
    g.output(w, "w", FLOAT, ["m", 2 * I, D])
    idx = np.array([3, 0, 3, 1], dtype=np.int64)
    model = g.model(opset)
    if variant == "lut":
        (got,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"idx": idx})
    else:
        (got,) = ReferenceEvaluator(model).run(None, {"idx": idx})
    want = np.stack([torch.cat([dequantize_nvfp4(gate[e]), dequantize_nvfp4(up[e])]).numpy() for e in idx])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("length", [2, 8, 16, 32])
def test_unit_lower_inverse_product_matches_triangular_solve(length):
    """The prefill graph's within-chunk solve, on DeltaNet-like matrices (|A_ij| <= 1, random keys)."""
    gen = torch.Generator().manual_seed(length)
    k = torch.nn.functional.normalize(torch.randn(6, length, 8, generator=gen, dtype=torch.float64), dim=-1)
    beta = torch.rand(6, length, 1, generator=gen, dtype=torch.float64)
    a = ((k * beta) @ k.transpose(-1, -2)).tril(-1)
    eye = torch.eye(length, dtype=torch.float64)
    want = torch.linalg.solve_triangular(eye + a, eye.expand(6, -1, -1), upper=False, unitriangular=True)
    got = unit_lower_inverse_product(a, length)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    got32 = unit_lower_inverse_product(a.float(), length).double()
    assert float((got32 - want).abs().max() / want.abs().max()) < 1e-5
