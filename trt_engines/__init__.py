"""qwen_stack.trt_engines: the decoder's layers as ONNX graphs with NVFP4 weights, TensorRT engines, and a
runtime that plugs compiled layers into the PyTorch engine.

  layer_graphs.py       graph builders per layer type (MoE, dense MLP, Gated DeltaNet decode/prefill, attention)
  nvfp4_onnx.py         NVFP4 weights in ONNX: TensorRT's FP4 two-step DequantizeLinear, or a LUT decoder
  checkpoint_weights.py the weights export reads (NVFP4 checkpoint, or quantized at export)
  export.py             `qwen-stack export-onnx` and the manifest
  engine_reference.py   the PyTorch engine's outputs for a graph's inputs (what parity is measured against)
  build.py              `qwen-stack build-engines` (TensorRT Python API), engines.json, rebuild rules
  runtime.py            TensorRT/pycuda and onnxruntime runners, layer builders, `backend:` selection
  gpu_check.py          the whole path on a GPU machine in one run
TensorRT and pycuda are imported only inside functions (optional `gpu` extra).
"""
