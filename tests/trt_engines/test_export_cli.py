"""`qwen-stack export-onnx`: manifest contents, layer/kind selection, errors with exit code 2."""
from __future__ import annotations

import json

import onnx

from qwen_stack.trt_engines.export import main, onnx_sha256


def test_manifest_records_model_quantization_opset_shapes_hashes(exported):
    ex = exported["moe"]
    m = json.loads((ex.onnx_dir / "manifest.json").read_text())
    assert m["opset"] == 23 and m["variants"] == ["trt", "lut"]
    assert m["model"]["architecture"] == "Qwen3_5MoeForCausalLM" and len(m["model"]["fingerprint_sha256"]) == 64
    assert m["quantization"]["weights"] == "nvfp4 (checkpoint)"
    assert sorted(g["name"] for g in m["graphs"]) == [
        "layers.0.deltanet_decode", "layers.0.deltanet_prefill", "layers.0.moe", "layers.1.attention", "layers.1.moe"]
    for g in m["graphs"]:
        for variant, f in g["files"].items():
            path = ex.onnx_dir / f["path"]
            assert f["sha256"] == onnx_sha256(path)
            model = onnx.load(str(path))
            assert model.opset_import[0].version == 23
            assert [i.name for i in model.graph.input] == [i["name"] for i in g["inputs"]]
        assert g["nvfp4_weights"] > 0, g["name"]   # all-linears checkpoint: every graph carries FP4 weights
    attn = next(g for g in m["graphs"] if g["kind"] == "attention")
    assert attn["dims"] == {"batch": [1, 1, 4], "tokens": [1, 1, 64], "past": [0, 64, 127]}
    assert next(g for g in m["graphs"] if g["kind"] == "deltanet_prefill")["attrs"] == {"chunk": 16}


def test_bf16_checkpoint_is_quantized_at_export_with_the_preset(exported):
    m = exported["moe_bf16"].manifest
    assert m["quantization"]["weights"] == "nvfp4 (quantized at export)" and m["quantization"]["preset"] == "mlp-only"
    counts = {g["name"]: g["nvfp4_weights"] for g in m["graphs"]}
    assert counts["layers.0.deltanet_decode"] == 0 and counts["layers.1.attention"] == 0   # mixers stay dense
    assert counts["layers.0.moe"] == 6 * 3 + 3   # every routed expert projection and the shared expert


def test_cli_selects_layers_kinds_and_variant(exported, tmp_path, capsys):
    ex = exported["dense"]
    rc = main(["--model", str(ex.model_dir), "--out", str(tmp_path), "--layers", "1", "--kinds", "dense_mlp",
               "--variant", "lut", "--max-tokens", "32"])
    assert rc == 0
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [g["name"] for g in m["graphs"]] == ["layers.1.dense_mlp"] and m["variants"] == ["lut"]
    assert m["graphs"][0]["dims"]["tokens"] == [1, 1, 4 * 32]
    assert not (tmp_path / "trt").exists()
    assert "wrote 1 graphs" in capsys.readouterr().out


def test_cli_errors_name_the_problem(exported, tmp_path, capsys):
    ex = exported["dense"]
    cases = [
        (["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "config.json"),
        (["--model", str(ex.model_dir), "--out", str(tmp_path / "o"), "--layers", "7"], "out of range"),
        (["--model", str(ex.model_dir), "--out", str(tmp_path / "o"), "--layers", "x"], "--layers"),
        (["--model", str(ex.model_dir), "--out", str(tmp_path / "o"), "--kinds", "moe"], "nothing to export"),
        (["--model", str(ex.model_dir), "--out", str(tmp_path / "o"), "--kinds", "conv"], "--kinds"),
        (["--model", str(ex.model_dir), "--out", str(tmp_path / "o"), "--opset", "21"], "opset >= 23"),
        (["--model", str(ex.model_dir), "--out", str(tmp_path / "o"), "--chunk", "12"], "power of two"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        assert needle in capsys.readouterr().err, argv


def test_qwen_stack_cli_dispatches_both_commands(exported, tmp_path, capsys):
    from qwen_stack.cli import main as qwen_stack
    ex = exported["moe"]
    assert qwen_stack(["export-onnx", "--model", str(ex.model_dir), "--out", str(tmp_path / "onnx"),
                       "--layers", "1", "--kinds", "attention"]) == 0
    assert (tmp_path / "onnx" / "trt" / "layers.1.attention.onnx").is_file()
    assert qwen_stack(["build-engines", "--onnx", str(tmp_path / "onnx"), "--out", str(tmp_path / "engines")]) == 3
    assert "TensorRT is not installed" in capsys.readouterr().err


def test_big_graphs_keep_weights_in_external_data(exported, tmp_path, monkeypatch):
    """Past the threshold (1 GB; lowered here) weights go to <graph>.onnx.data, hashed with the graph."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    from qwen_stack.trt_engines import export as export_mod
    monkeypatch.setattr(export_mod, "EXTERNAL_DATA_BYTES", 1000)
    ex = exported["moe"]
    m = export_mod.export(ex.model_dir, tmp_path, layers="1", kinds=["moe"], say=lambda _m: None)
    graph = tmp_path / "trt" / "layers.1.moe.onnx"
    data = graph.with_name(graph.name + ".data")
    assert data.is_file() and data.stat().st_size > graph.stat().st_size
    assert m["graphs"][0]["files"]["trt"]["sha256"] == onnx_sha256(graph)
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    (got,) = ReferenceEvaluator(str(graph)).run(None, {"hidden": x})
    (want,) = ReferenceEvaluator(str(ex.onnx_dir / "trt" / "layers.1.moe.onnx")).run(None, {"hidden": x})
    np.testing.assert_array_equal(got, want)
    flipped = bytearray(data.read_bytes())
    flipped[-1] ^= 0xFF
    data.write_bytes(bytes(flipped))
    assert onnx_sha256(graph) != m["graphs"][0]["files"]["trt"]["sha256"]
