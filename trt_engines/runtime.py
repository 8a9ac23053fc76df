"""Run decoder layers from compiled graphs: TensorRT engines on a GPU (pycuda buffers and stream), or the
onnxruntime "lut" graphs on CPU, plugged into the PyTorch engine through its layer-replacement hook.

The hook is `model.LayerBuilders` (attention / delta_net / moe / dense_mlp constructors): `graph_layer_builders`
returns builders whose modules forward to a `LayerRunner` instead of computing in PyTorch; layers without a
graph keep the PyTorch module. Pass them as `load_model(..., builders=...)` / `Engine.from_pretrained(...,
builders=...)`; the replaced layers have no parameters, so their weights are never read from the checkpoint.

State stays with the runner between calls: a module keeps the runner's *handles* (device buffers for TensorRT)
to the DeltaNet conv/recurrent states and the attention KV cache and feeds them back on the next step; only
the hidden states cross between PyTorch and the runner. TensorRT outputs are written into two buffers per
output that alternate (ping-pong), so an engine never reads and writes the same buffer.

`select_backend(config, log)` turns the engine configuration's `backend:` into builders:
  pytorch      -> None (the engine's own modules)
  tensorrt     -> TensorRT engines from `engine_dir` that match this GPU / TensorRT / ONNX; when TensorRT,
                  pycuda, a GPU or matching engines are missing it logs why and falls back to PyTorch
  onnxruntime  -> the "lut" graphs of `onnx_dir` on CPU (for checking the wiring without a GPU)
"""
from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from qwen_stack.qwen_node.engine.config import TextConfig
from qwen_stack.qwen_node.engine.model import LayerBuilders, StepInputs

from .build import BuildTarget, TensorRTUnavailable, detect_gpu_arch, import_tensorrt, usable_engines
from .export import read_manifest

if TYPE_CHECKING:
    import pycuda.driver as cuda
    import tensorrt as trt

BACKENDS = ("pytorch", "tensorrt", "onnxruntime")


class LayerRunner(Protocol):
    """Runs named graphs on opaque handles (numpy arrays on CPU, device buffers on a GPU)."""

    def has(self, graph: str) -> bool: ...
    def upload(self, array: np.ndarray) -> Any: ...
    def zeros(self, shape: tuple[int, ...]) -> Any: ...
    def download(self, handle: Any) -> np.ndarray: ...
    def run(self, graph: str, feeds: dict[str, Any]) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------------ onnxruntime runner
class OnnxRuntimeRunner:
    """The "lut" graphs of an export on onnxruntime CPU; handles are numpy arrays."""

    def __init__(self, onnx_dir: str | Path, threads: int = 2):
        import onnxruntime as ort
        self.dir = Path(onnx_dir)
        manifest = read_manifest(self.dir)
        if "lut" not in manifest["variants"]:
            raise ValueError(f"{onnx_dir}: no 'lut' variant exported; the onnxruntime backend needs it")
        self.paths = {g["name"]: self.dir / g["files"]["lut"]["path"] for g in manifest["graphs"]}
        self._ort = ort
        self._threads = threads
        self._sessions: dict[str, Any] = {}

    def has(self, graph: str) -> bool:
        return graph in self.paths

    def upload(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array, dtype=np.float32)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def download(self, handle: np.ndarray) -> np.ndarray:
        return handle

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if graph not in self._sessions:
            opts = self._ort.SessionOptions()
            opts.intra_op_num_threads = self._threads
            self._sessions[graph] = self._ort.InferenceSession(str(self.paths[graph]), opts,
                                                               providers=["CPUExecutionProvider"])
        sess = self._sessions[graph]
        return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


# ------------------------------------------------------------------------------------------ TensorRT runner
@dataclass
class DeviceTensor:
    """An fp32 tensor in device memory: `shape` of the data now held, `capacity` bytes allocated."""
    allocation: "cuda.DeviceAllocation"
    shape: tuple[int, ...]
    capacity: int

    @property
    def ptr(self) -> int:
        return int(self.allocation)

    @property
    def nbytes(self) -> int:
        return 4 * int(np.prod(self.shape))


class TensorRTRunner:
    """Deserialized engines, one execution context each, one CUDA stream; outputs in ping-pong buffers."""

    def __init__(self, engines: dict[str, Path], device: int = 0):
        import_tensorrt()  # a clear TensorRTUnavailable when only the stubs are installed
        import pycuda.driver as cuda
        import tensorrt as trt_mod
        cuda.init()
        self.cuda = cuda
        self.cuda_context = cuda.Device(device).retain_primary_context()
        self.cuda_context.push()
        self.stream = cuda.Stream()
        self.logger = trt_mod.Logger(trt_mod.Logger.WARNING)
        self.runtime = trt_mod.Runtime(self.logger)
        self.engines: dict[str, trt.ICudaEngine] = {}
        self.contexts: dict[str, trt.IExecutionContext] = {}
        for name, path in engines.items():
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RuntimeError(f"{path}: TensorRT could not deserialize the engine")
            self.engines[name] = engine
            self.contexts[name] = engine.create_execution_context()
        self._outputs: dict[tuple[str, str], list[DeviceTensor | None]] = {}
        self._in_flight: dict[str, DeviceTensor] = {}
        self._turn: dict[tuple[str, str], int] = {}

    def has(self, graph: str) -> bool:
        return graph in self.engines

    def _alloc(self, nbytes: int, shape: tuple[int, ...]) -> DeviceTensor:
        capacity = max(nbytes, 4)
        return DeviceTensor(self.cuda.mem_alloc(capacity), shape, capacity)

    def upload(self, array: np.ndarray) -> DeviceTensor:
        host = np.ascontiguousarray(array, dtype=np.float32)
        t = self._alloc(host.nbytes, tuple(host.shape))
        if host.nbytes:  # synchronous: `host` is pageable and may be freed as soon as we return
            self.cuda.memcpy_htod(t.allocation, host)
        return t

    def zeros(self, shape: tuple[int, ...]) -> DeviceTensor:
        return self.upload(np.zeros(shape, np.float32))

    def download(self, handle: DeviceTensor) -> np.ndarray:
        host: np.ndarray = np.empty(handle.shape, np.float32)
        self.stream.synchronize()  # the engine that wrote `handle` ran on self.stream
        if host.nbytes:
            self.cuda.memcpy_dtoh(host, handle.allocation)
        return host

    def _output_buffer(self, graph: str, name: str, shape: tuple[int, ...]) -> DeviceTensor:
        key = (graph, name)
        slots = self._outputs.setdefault(key, [None, None])
        turn = self._turn.get(key, 0)
        self._turn[key] = 1 - turn
        nbytes = 4 * int(np.prod(shape))
        slot = slots[turn]
        if slot is None or slot.capacity < nbytes:
            if slot is not None:
                slot.allocation.free()
            slot = self._alloc(max(nbytes, 2 * (slot.capacity if slot else 0)), shape)
            slots[turn] = slot
        slot.shape = shape
        return slot

    def run(self, graph: str, feeds: dict[str, DeviceTensor]) -> dict[str, DeviceTensor]:
        import tensorrt as trt_mod
        engine, context = self.engines[graph], self.contexts[graph]
        outputs: dict[str, DeviceTensor] = {}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) == trt_mod.TensorIOMode.INPUT:
                t = feeds[name]
                if not context.set_input_shape(name, t.shape):
                    raise ValueError(f"{graph}: input {name} shape {t.shape} is outside the engine's profile")
                context.set_tensor_address(name, t.ptr)
        for name in names:
            if engine.get_tensor_mode(name) == trt_mod.TensorIOMode.OUTPUT:
                dims = context.get_tensor_shape(name)
                shape = tuple(int(dims[i]) for i in range(len(dims)))
                outputs[name] = self._output_buffer(graph, name, shape)
                context.set_tensor_address(name, outputs[name].ptr)
        if not context.execute_async_v3(self.stream.handle):
            raise RuntimeError(f"{graph}: TensorRT execution failed")
        self._in_flight = feeds  # keep the inputs' device memory alive until the stream has used it
        return outputs

    def close(self) -> None:
        self.stream.synchronize()
        self.cuda_context.pop()


# ------------------------------------------------------------------------------------------ layer modules
def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()


def _layer_index(name: str) -> int:
    m = re.match(r"layers\.(\d+)\.", name)
    if m is None:
        raise ValueError(f"cannot tell the layer index from module name {name!r}")
    return int(m.group(1))


class GraphMLP(nn.Module):
    """MoE block or dense MLP computed by graph `layers.<i>.moe` / `layers.<i>.dense_mlp`."""

    def __init__(self, runner: LayerRunner, graph: str):
        super().__init__()
        self.runner, self.graph = runner, graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        out = self.runner.run(self.graph, {"hidden": self.runner.upload(_to_numpy(x.reshape(B * T, D)))})["out"]
        return torch.from_numpy(self.runner.download(out)).to(x.dtype).to(x.device).view(B, T, D)


class GraphDeltaNet(nn.Module):
    """Gated DeltaNet: `layers.<i>.deltanet_decode` for one token, `..._prefill` for more; states stay in the runner."""

    def __init__(self, runner: LayerRunner, layer: int, cfg: TextConfig):
        super().__init__()
        self.runner = runner
        self.decode_graph, self.prefill_graph = f"layers.{layer}.deltanet_decode", f"layers.{layer}.deltanet_prefill"
        self.conv_dim = 2 * cfg.linear_num_key_heads * cfg.linear_key_head_dim + \
            cfg.linear_num_value_heads * cfg.linear_value_head_dim
        self.state_shapes = ((self.conv_dim, cfg.linear_conv_kernel_dim - 1),
                             (cfg.linear_num_value_heads, cfg.linear_key_head_dim, cfg.linear_value_head_dim))
        self.batch = 0
        self.conv_state: Any = None      # runner handle [B, C, W-1]
        self.rec_state: Any = None       # runner handle [B, Hv, Dk, Dv]

    def setup_cache(self, batch: int, max_len: int, dtype, device) -> None:
        self.batch = batch
        self.reset_cache()

    def reset_cache(self) -> None:
        self.conv_state = self.runner.zeros((self.batch, *self.state_shapes[0]))
        self.rec_state = self.runner.zeros((self.batch, *self.state_shapes[1]))

    def forward(self, x: torch.Tensor, step: StepInputs) -> torch.Tensor:
        B, T, D = x.shape
        if step.start == 0 or B != self.batch:
            if step.start != 0:
                raise ValueError(f"batch changed from {self.batch} to {B} in the middle of a sequence")
            self.batch = B
            self.reset_cache()
        graph = self.decode_graph if T == 1 else self.prefill_graph
        outs = self.runner.run(graph, {"hidden": self.runner.upload(_to_numpy(x)), "conv_state": self.conv_state,
                                       "recurrent_state": self.rec_state})
        self.conv_state, self.rec_state = outs["conv_state_out"], outs["recurrent_state_out"]
        return torch.from_numpy(self.runner.download(outs["out"])).to(x.dtype).to(x.device)


class GraphAttention(nn.Module):
    """Gated attention by graph `layers.<i>.attention`; the KV cache stays in the runner and grows per call."""

    def __init__(self, runner: LayerRunner, layer: int, cfg: TextConfig):
        super().__init__()
        self.runner, self.graph = runner, f"layers.{layer}.attention"
        self.n_kv, self.head_dim = cfg.num_key_value_heads, cfg.head_dim
        self.max_len = 0
        self.length = 0                  # positions held in the cache
        self.keys: Any = None            # runner handle [B, Hkv, length, Dh]
        self.values: Any = None

    def setup_cache(self, batch: int, max_len: int, dtype, device) -> None:
        self.max_len = max_len
        self.reset_cache()

    def reset_cache(self) -> None:
        self.length = 0
        self.keys = self.values = None

    def forward(self, x: torch.Tensor, step: StepInputs) -> torch.Tensor:
        B, T, D = x.shape
        if step.start == 0:
            self.length = 0
            self.keys = self.values = self.runner.zeros((B, self.n_kv, 0, self.head_dim))
        elif step.start != self.length:
            raise ValueError(f"{self.graph}: the cache holds {self.length} positions but the call starts at "
                             f"{step.start}; rewinding a compiled layer's cache is not supported (start at 0)")
        if step.start + T > self.max_len:
            raise ValueError(f"sequence length {step.start + T} exceeds the cache ({self.max_len}); "
                             f"set max_seq_len larger")
        outs = self.runner.run(self.graph, {
            "hidden": self.runner.upload(_to_numpy(x)), "cos": self.runner.upload(_to_numpy(step.cos)),
            "sin": self.runner.upload(_to_numpy(step.sin)), "past_key": self.keys, "past_value": self.values})
        self.keys, self.values = outs["present_key"], outs["present_value"]
        self.length = step.start + T
        return torch.from_numpy(self.runner.download(outs["out"])).to(x.dtype).to(x.device)


def graph_layer_builders(runner: LayerRunner, base: LayerBuilders | None = None,
                         log: Callable[[str], None] | None = None) -> LayerBuilders:
    """LayerBuilders whose layers run on `runner` where it has the graph(s), else `base`'s PyTorch modules."""
    base = base or LayerBuilders()
    missing: list[str] = []

    def note(name: str) -> None:
        missing.append(name)
        if log is not None:
            log(f"{name}: no compiled graph, running it in PyTorch")

    def attention(cfg: TextConfig, name: str, linear):
        i = _layer_index(name)
        if runner.has(f"layers.{i}.attention"):
            return GraphAttention(runner, i, cfg)
        note(f"layers.{i}.attention")
        return base.attention(cfg, name, linear)

    def delta_net(cfg: TextConfig, name: str, linear):
        i = _layer_index(name)
        if runner.has(f"layers.{i}.deltanet_decode") and runner.has(f"layers.{i}.deltanet_prefill"):
            return GraphDeltaNet(runner, i, cfg)
        note(f"layers.{i}.deltanet")
        return base.delta_net(cfg, name, linear)

    def moe(cfg: TextConfig, name: str, linear, experts):
        i = _layer_index(name)
        if runner.has(f"layers.{i}.moe"):
            return GraphMLP(runner, f"layers.{i}.moe")
        note(f"layers.{i}.moe")
        return base.moe(cfg, name, linear, experts)

    def dense_mlp(name: str, hidden: int, intermediate: int, linear):
        i = _layer_index(name)
        if runner.has(f"layers.{i}.dense_mlp"):
            return GraphMLP(runner, f"layers.{i}.dense_mlp")
        note(f"layers.{i}.dense_mlp")
        return base.dense_mlp(name, hidden, intermediate, linear)

    return replace(base, attention=attention, delta_net=delta_net, moe=moe, dense_mlp=dense_mlp)


# ------------------------------------------------------------------------------------------ backend selection
@dataclass
class BackendConfig:
    """The engine configuration's backend settings."""
    backend: str = "pytorch"            # pytorch | tensorrt | onnxruntime
    engine_dir: str = ""                # tensorrt: folder written by `qwen-stack build-engines`
    onnx_dir: str = ""                  # onnxruntime: folder written by `qwen-stack export-onnx`
    precision: str = "w4a16"            # tensorrt: which engines to load (w4a16 | fp4 | fp8)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: {self.backend!r} is not one of {BACKENDS}")
        if self.backend == "tensorrt" and not self.engine_dir:
            raise ValueError("backend: tensorrt needs engine_dir (the folder written by `qwen-stack build-engines`)")
        if self.backend == "onnxruntime" and not self.onnx_dir:
            raise ValueError("backend: onnxruntime needs onnx_dir (the folder written by `qwen-stack export-onnx`)")


def select_backend(config: BackendConfig, log: logging.Logger | None = None,
                   base: LayerBuilders | None = None) -> LayerBuilders | None:
    """Builders for the configured backend; None means the PyTorch engine. Never falls back silently."""
    log = log or logging.getLogger("qwen_stack.trt_engines")
    if config.backend == "pytorch":
        return base
    if config.backend == "onnxruntime":
        log.info("backend: onnxruntime, graphs from %s", config.onnx_dir)
        return graph_layer_builders(OnnxRuntimeRunner(config.onnx_dir), base, log.info)
    try:
        import_tensorrt()
        importlib.import_module("pycuda.driver")  # the runner's buffers and streams
        import tensorrt as trt_mod
        arch = detect_gpu_arch()
        target = BuildTarget(trt_mod.__version__, arch, config.precision)
        engines = usable_engines(config.engine_dir, target)
        if not engines:
            raise TensorRTUnavailable(f"no engine in {config.engine_dir} matches TensorRT {target.tensorrt_version}, "
                                      f"{arch}, precision {config.precision} and its ONNX file (run "
                                      f"`qwen-stack build-engines`)")
        runner = TensorRTRunner(engines)
    except (TensorRTUnavailable, ImportError, RuntimeError, OSError) as exc:
        log.warning("backend: tensorrt requested but unavailable (%s); falling back to the PyTorch engine", exc)
        return base
    log.info("backend: tensorrt, %d engines from %s (%s, %s)", len(engines), config.engine_dir, arch, config.precision)
    return graph_layer_builders(runner, base, log.info)
