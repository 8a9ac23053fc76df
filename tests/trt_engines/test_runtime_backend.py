"""The layer-replacement runtime: whole-model decoding with every layer on compiled graphs vs the PyTorch engine.

The onnxruntime runner (the "lut" graphs on CPU) stands in for TensorRT here: the modules, the state
hand-over between calls and the builders are the same code the TensorRT runner uses; only the four
runner primitives (upload, zeros, download, run) differ. Tolerance on logits: max rel err <= 1e-4.
"""
from __future__ import annotations

import logging

import pytest
import torch

from qwen_stack.qwen_node.engine.loader import load_model
from qwen_stack.trt_engines.engine_reference import max_relative_error
from qwen_stack.trt_engines.export import manifest_weights
from qwen_stack.trt_engines.runtime import (BackendConfig, GraphAttention, GraphDeltaNet, GraphMLP, OnnxRuntimeRunner,
                                            graph_layer_builders, select_backend)


@pytest.mark.parametrize("ckpt", ["moe", "dense"])
def test_decode_loop_on_graphs_matches_engine(exported, ckpt):
    ex = exported[ckpt]
    source = manifest_weights(ex.manifest).dequantized_source()
    notes: list[str] = []
    model = load_model(ex.model_dir, dtype=torch.float32, source=source, progress=False,
                       builders=graph_layer_builders(OnnxRuntimeRunner(ex.onnx_dir), log=notes.append))
    assert notes == []
    kinds = {type(m) for layer in model.text.layers for m in (layer.mixer, layer.mlp)}
    assert kinds == {GraphAttention, GraphDeltaNet, GraphMLP}
    gen = torch.Generator().manual_seed(7)
    vocab = model.config.text.vocab_size
    prompt = torch.randint(0, vocab, (2, 21), generator=gen)          # prefill: two chunks with padding
    model.setup_caches(2, 64)
    ex.engine.setup_caches(2, 64)
    with torch.no_grad():
        for start, ids in [(0, prompt)] + [(21 + i, torch.randint(0, vocab, (2, 1), generator=gen)) for i in range(4)]:
            want = ex.engine(ids, start=start)
            got = model(ids, start=start)
            err = max_relative_error(got.numpy(), want.numpy())
            assert err <= 1e-4, f"{ckpt} logits at start={start}: max rel err {err:.2e}"
        # a new sequence (start=0) resets the states held by the runner
        again = torch.randint(0, vocab, (2, 3), generator=gen)
        assert max_relative_error(model(again, start=0).numpy(), ex.engine(again, start=0).numpy()) <= 1e-4


def test_rewinding_a_compiled_attention_cache_is_refused(exported):
    ex = exported["moe"]
    model = load_model(ex.model_dir, dtype=torch.float32, source=manifest_weights(ex.manifest).dequantized_source(),
                       progress=False, builders=graph_layer_builders(OnnxRuntimeRunner(ex.onnx_dir)))
    ids = torch.randint(0, 100, (1, 4))
    model(ids, start=0)
    with pytest.raises(ValueError, match="rewinding"):
        model(ids[:, :1], start=2)


def test_layers_without_a_graph_stay_in_pytorch(exported, tmp_path):
    from qwen_stack.trt_engines.export import export
    ex = exported["moe"]
    export(ex.model_dir, tmp_path, layers="1", kinds=["moe"], variants=("lut",), say=lambda _m: None)
    notes: list[str] = []
    model = load_model(ex.model_dir, dtype=torch.float32, source=manifest_weights(ex.manifest).dequantized_source(),
                       progress=False, builders=graph_layer_builders(OnnxRuntimeRunner(tmp_path), log=notes.append))
    assert isinstance(model.text.layers[1].mlp, GraphMLP) and not isinstance(model.text.layers[0].mlp, GraphMLP)
    assert sorted(notes) == ["layers.0.deltanet: no compiled graph, running it in PyTorch",
                             "layers.0.moe: no compiled graph, running it in PyTorch",
                             "layers.1.attention: no compiled graph, running it in PyTorch"]
    ids = torch.randint(0, 100, (1, 5))
    with torch.no_grad():
        assert max_relative_error(model(ids).numpy(), ex.engine(ids).numpy()) <= 1e-4


def test_tensorrt_backend_without_tensorrt_falls_back_with_a_logged_reason(exported, caplog):
    cfg = BackendConfig(backend="tensorrt", engine_dir=str(exported["moe"].onnx_dir))
    with caplog.at_level(logging.WARNING, logger="qwen_stack.trt_engines"):
        assert select_backend(cfg) is None
    assert "backend: tensorrt requested but unavailable" in caplog.text
    assert "falling back to the PyTorch engine" in caplog.text
    assert "TensorRT is not installed" in caplog.text


def test_backend_config_rejects_bad_values():
    with pytest.raises(ValueError, match="backend"):
        BackendConfig(backend="tensorflow")
    with pytest.raises(ValueError, match="engine_dir"):
        BackendConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="onnx_dir"):
        BackendConfig(backend="onnxruntime")
