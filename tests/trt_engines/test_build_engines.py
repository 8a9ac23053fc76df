"""`qwen-stack build-engines` without a GPU: the decisions (rebuild or load, precision per GPU, profiles) and
the refusal without TensorRT. The TensorRT calls themselves run in trt_engines/gpu_check.py on a GPU machine."""
from __future__ import annotations

import json


from qwen_stack.trt_engines import build
from qwen_stack.trt_engines.build import BuildTarget, check_precision, profile_shapes, stale_reason, usable_engines
from qwen_stack.trt_engines.export import onnx_sha256, sha256_file


def test_without_tensorrt_exit_code_3_and_a_clear_message(exported, tmp_path, capsys):
    rc = build.main(["--onnx", str(exported["moe"].onnx_dir), "--out", str(tmp_path)])
    assert rc == build.EXIT_NO_TENSORRT == 3
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "qwen_stack[gpu]" in err


def test_missing_export_is_exit_code_2(tmp_path, capsys):
    assert build.main(["--onnx", str(tmp_path / "none"), "--out", str(tmp_path / "e")]) == 2
    assert "export-onnx" in capsys.readouterr().err


def test_precision_rules_per_gpu():
    assert check_precision("w4a16", "sm90") is None and check_precision("w4a16", "sm80") is None
    assert check_precision("fp4", "sm100") is None and check_precision("fp4", "sm120") is None
    assert "Blackwell" in check_precision("fp4", "sm90")
    assert check_precision("fp8", "sm89") is None and "sm89" in check_precision("fp8", "sm86")
    assert "sm<major><minor>" in check_precision("w4a16", "hopper")
    assert "unknown precision" in check_precision("int3", "sm90")


def test_profiles_from_manifest(exported):
    graphs = {g["name"]: g for g in exported["moe"].manifest["graphs"]}
    attn = profile_shapes(graphs["layers.1.attention"])
    assert attn["hidden"] == ([1, 1, 64], [1, 1, 64], [4, 64, 64])
    assert attn["past_key"] == ([1, 2, 0, 16], [1, 2, 64, 16], [4, 2, 127, 16])   # 2 KV heads, head_dim 16
    dec = profile_shapes(graphs["layers.0.deltanet_decode"])
    assert dec["hidden"] == ([1, 1, 64], [1, 1, 64], [4, 1, 64])
    assert profile_shapes(graphs["layers.0.moe"])["hidden"] == ([1, 64], [1, 64], [256, 64])


def test_a_mismatched_engine_is_rebuilt_not_loaded(exported, tmp_path):
    onnx_path = exported["moe"].onnx_dir / "trt" / "layers.0.moe.onnx"
    engine = tmp_path / "layers.0.moe.w4a16.engine"
    engine.write_bytes(b"serialized engine")
    target = BuildTarget("10.13.0.35", "sm90", "w4a16")
    record = {"engine": engine.name, "engine_sha256": sha256_file(engine), "onnx_path": str(onnx_path),
              "onnx_sha256": onnx_sha256(onnx_path), "tensorrt_version": "10.13.0.35", "gpu_arch": "sm90",
              "precision": "w4a16"}
    assert stale_reason(record, onnx_sha256(onnx_path), target, engine) is None
    assert stale_reason(None, "x", target, engine) == "no engine yet"
    assert stale_reason(record, "other", target, engine) == "ONNX file changed"
    assert "tensorrt_version" in stale_reason(record, record["onnx_sha256"], BuildTarget("10.9", "sm90", "w4a16"), engine)
    assert "gpu_arch" in stale_reason(record, record["onnx_sha256"], BuildTarget("10.13.0.35", "sm120", "w4a16"), engine)
    assert "precision" in stale_reason(record, record["onnx_sha256"], BuildTarget("10.13.0.35", "sm90", "fp4"), engine)
    (tmp_path / "engines.json").write_text(json.dumps({"engines": {"layers.0.moe": record}}))
    assert usable_engines(tmp_path, target) == {"layers.0.moe": engine}
    assert usable_engines(tmp_path, BuildTarget("10.13.0.35", "sm89", "w4a16")) == {}
    engine.write_bytes(b"tampered")
    assert stale_reason(record, record["onnx_sha256"], target, engine) == "engine file changed on disk"
    assert usable_engines(tmp_path, target) == {}
