"""Every exported graph against the PyTorch engine, on CPU, both NVFP4 patterns.

"trt" graphs (FLOAT4E2M1 initializer + two-step DequantizeLinear) run on onnx.reference's evaluator;
"lut" graphs (packed uint8 + bit ops + lookup table) run on onnxruntime CPU. The engine computes with the
same NVFP4-dequantized weights in fp32, so the only differences are fp32 summation order.
Tolerance on max |graph - engine| / max |engine|: 2e-5 for every output (outputs, states, caches; measured
1e-7..2e-6), except the DeltaNet layers' `out`: 1e-4. Its gated RMSNorm divides each head's output by that
head's rms, and a head whose output nearly cancels (rms 0.002 where others have 0.05-0.1, seen with random
states) scales fp32 rounding of O(1) state products up ~40x (measured up to 1.5e-5; located and checked
by hand). The per-graph maxima are printed at the end of the run (conftest terminal summary).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from qwen_stack.trt_engines.engine_reference import max_relative_error, random_inputs, reference_outputs
from qwen_stack.trt_engines.export import export as export_graphs
from qwen_stack.trt_engines.layer_graphs import GraphSpec

from .conftest import PARITY_ERRORS
from trt_tiny_models import CHECKPOINTS

TOLERANCE = 2e-5
DELTANET_OUT_TOLERANCE = 1e-4
# (batch, new tokens, past length): decode-like, a prefill shorter than one chunk (16), several chunks
# with padding and a non-empty past; decode graphs always take one token
# (MoE: N*K > E takes the every-expert branch of the If: N = 1 and 2*5 with K 2-3 of E 6-8 cover both)
SHAPES = [(1, 1, 0), (2, 5, 3), (3, 37, 20)]


def _run_lut(path, inputs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))


def _run_reference(path, inputs):
    ev = ReferenceEvaluator(str(path))
    return dict(zip(ev.output_names, ev.run(None, inputs)))


def _graph_cases():
    # graph names are known from the config; the fixture checks that the manifest lists exactly these
    cases = []
    for ckpt, (_arch, kw, _preset) in CHECKPOINTS.items():
        moe = "Moe" in _arch
        for layer, t in enumerate(kw["layer_types"]):
            mixers = ["deltanet_decode", "deltanet_prefill"] if t == "linear_attention" else ["attention"]
            for kind in mixers + ["moe" if moe else "dense_mlp"]:
                cases.append((ckpt, f"layers.{layer}.{kind}"))
    return cases


@pytest.mark.parametrize("ckpt,graph", _graph_cases())
def test_graph_matches_engine(exported, ckpt, graph):
    ex = exported[ckpt]
    entries = {g["name"]: g for g in ex.manifest["graphs"]}
    assert graph in entries, f"{graph} not exported; manifest has {sorted(entries)}"
    entry = entries[graph]
    spec = GraphSpec.from_manifest(entry)
    for i, (batch, tokens, past) in enumerate(SHAPES):
        inputs = random_inputs(ex.engine, spec, batch, tokens, past, seed=i)
        want = reference_outputs(ex.engine, spec, inputs)
        for variant, run in (("lut", _run_lut), ("trt", _run_reference)):
            got = run(ex.onnx_dir / entry["files"][variant]["path"], inputs)
            assert set(got) == set(want)
            for name in want:
                err = max_relative_error(got[name], want[name])
                key = (ckpt, graph, variant)
                PARITY_ERRORS[key] = max(PARITY_ERRORS.get(key, 0.0), err)
                tol = DELTANET_OUT_TOLERANCE if spec.kind.startswith("deltanet") and name == "out" else TOLERANCE
                assert err <= tol, (f"{ckpt} {graph} [{variant}] output {name} at (B, T, P)={(batch, tokens, past)}: "
                                    f"max rel err {err:.2e} > {tol}")
            assert np.isfinite(got["out"]).all()


def test_trt_graphs_carry_fp4_weights(exported):
    """The trt variant keeps 4-bit weights (FLOAT4E2M1 + E4M3 scales into DequantizeLinear), no dense copy."""
    import onnx
    from onnx import TensorProto
    ex = exported["moe"]
    for entry in ex.manifest["graphs"]:
        m = onnx.load(str(ex.onnx_dir / entry["files"]["trt"]["path"]))
        types = {t.data_type for t in m.graph.initializer}
        assert TensorProto.FLOAT4E2M1 in types and TensorProto.FLOAT8E4M3FN in types, entry["name"]
        dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
        blocked = [n for n in dq if any(a.name == "block_size" and a.i == 16 for a in n.attribute)]
        assert len(dq) == 2 * len(blocked) and blocked, entry["name"]


@pytest.mark.parametrize("ckpt", ["moe", "moe_bf16"])
def test_per_expert_moe_form_matches_engine(exported, ckpt, tmp_path):
    """The fallback MoE form (one DequantizeLinear -> MatMul chain per expert), both variants."""
    ex = exported[ckpt]
    m = export_graphs(ex.model_dir, tmp_path, layers="1", kinds=["moe"], moe_form="per_expert",
                      preset=ex.manifest["quantization"]["preset"], say=lambda _m: None)
    entry = m["graphs"][0]
    assert entry["attrs"]["moe_form"] == "per_expert"
    spec = GraphSpec.from_manifest(entry)
    for i, (batch, tokens) in enumerate([(1, 1), (2, 9)]):
        inputs = random_inputs(ex.engine, spec, batch, tokens, 0, seed=10 + i)
        want = reference_outputs(ex.engine, spec, inputs)["out"]
        for variant, run in (("lut", _run_lut), ("trt", _run_reference)):
            err = max_relative_error(run(tmp_path / entry["files"][variant]["path"], inputs)["out"], want)
            assert err <= TOLERANCE, f"{ckpt} per_expert [{variant}] N={batch * tokens}: {err:.2e}"
