"""`qwen-stack build-engines --onnx DIR --out DIR [--fp4 | --w4a16 | --fp8] [--gpu-arch sm90]`

Builds one TensorRT engine per exported graph (the "trt" variant of `export-onnx`) with the TensorRT
Python API: parse the ONNX file, set the precision flags, one optimisation profile from the manifest's
dynamic dims, a timing cache shared by all builds (OUT/timing.cache), progress printed through an
IProgressMonitor. OUT/engines.json ties every engine to the sha256 of its ONNX file, the TensorRT version,
the GPU architecture and the precision; an engine whose record does not match (or whose file changed) is
rebuilt, never loaded.

Precision (the graphs carry NVFP4 weights as FP4 DequantizeLinear; activations are fp32 in the graph):
  --w4a16 (default)  BF16 activations, weights dequantized from FP4 inside the GEMMs (weight-only 4-bit);
                     the mode for Hopper (sm90) and older. DeltaNet engines are built without BF16
                     (fp32/TF32), since they carry the recurrent state.
  --fp4              as w4a16 plus BuilderFlag.FP4 so TensorRT may pick native FP4 tactics; Blackwell only
                     (sm100, sm103, sm110, sm120, sm121). The graphs carry no activation quantizers (the
                     checkpoint's input_scale is uncalibrated), so GEMMs stay weight-only unless TensorRT
                     inserts dynamic FP4 quantization itself.
  --fp8              as w4a16 plus BuilderFlag.FP8 (sm89 and newer).

Exit codes: 0 built or up to date, 2 bad arguments or inputs, 3 TensorRT/GPU not available, 4 a build failed.
Nothing here imports TensorRT or pycuda at module import time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .export import onnx_sha256, read_manifest, sha256_file

if TYPE_CHECKING:
    import tensorrt as trt

ENGINES_MANIFEST = "engines.json"
TIMING_CACHE = "timing.cache"
PRECISIONS = ("w4a16", "fp4", "fp8")
FP4_ARCHS = ("sm100", "sm103", "sm110", "sm120", "sm121")   # native FP4 tensor cores (Blackwell family)
EXIT_BAD_INPUT, EXIT_NO_TENSORRT, EXIT_BUILD_FAILED = 2, 3, 4


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or pycuda, or a GPU) is missing; the message says which and how to get it."""


def import_tensorrt():
    """The tensorrt module, or TensorRTUnavailable. (A bare `tensorrt-stubs` install leaves an importable
    namespace package with no API; that counts as absent.)"""
    try:
        import tensorrt as trt_mod
    except ImportError as exc:
        raise TensorRTUnavailable(f"TensorRT is not installed ({exc}); install the gpu extra on a machine with an "
                                  f"NVIDIA GPU: pip install 'qwen_stack[gpu]' (wheels from pypi.nvidia.com)") from exc
    if not hasattr(trt_mod, "Builder"):
        raise TensorRTUnavailable("TensorRT is not installed (only type stubs are: `import tensorrt` has no Builder); "
                                  "install the gpu extra on a machine with an NVIDIA GPU: pip install 'qwen_stack[gpu]'")
    return trt_mod


def detect_gpu_arch() -> str:
    """'sm<major><minor>' of CUDA device 0, via pycuda (else torch.cuda); TensorRTUnavailable without a GPU."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        major, minor = cuda.Device(0).compute_capability()
        return f"sm{major}{minor}"
    except ImportError:
        pass
    except Exception as exc:  # pycuda.driver.Error and friends: no driver / no device
        raise TensorRTUnavailable(f"no usable CUDA GPU ({exc})") from exc
    import torch
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        return f"sm{major}{minor}"
    raise TensorRTUnavailable("no CUDA GPU found (pycuda is not installed and torch.cuda sees no device)")


# ------------------------------------------------------------------------------------------ pure decisions
@dataclass(frozen=True)
class BuildTarget:
    """What an engine is built for; an engine built for another target is rebuilt."""
    tensorrt_version: str
    gpu_arch: str
    precision: str


def check_precision(precision: str, gpu_arch: str) -> str | None:
    """None if `precision` can run on `gpu_arch`, else why not."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; expected one of {PRECISIONS}"
    if not gpu_arch.startswith("sm") or not gpu_arch[2:].isdigit():
        return f"--gpu-arch {gpu_arch!r}: expected sm<major><minor>, e.g. sm90 or sm120"
    cc = int(gpu_arch[2:])
    if precision == "fp4" and gpu_arch not in FP4_ARCHS:
        return f"--fp4 needs a Blackwell GPU ({', '.join(FP4_ARCHS)}), this is {gpu_arch}; use --w4a16 (weight-only 4-bit)"
    if precision == "fp8" and cc < 89:
        return f"--fp8 needs sm89 or newer, this is {gpu_arch}; use --w4a16"
    return None


def profile_shapes(entry: dict) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """input name -> (min, opt, max) shapes, from the manifest's symbolic shapes and dims."""
    dims = entry["dims"]
    out = {}
    for inp in entry["inputs"]:
        shapes = []
        for k in range(3):
            shapes.append([d if isinstance(d, int) else dims[d][k] for d in inp["shape"]])
        out[inp["name"]] = (shapes[0], shapes[1], shapes[2])
    return out


def stale_reason(record: dict | None, onnx_hash: str, target: BuildTarget, engine_path: Path) -> str | None:
    """Why an existing engine must be rebuilt (None: it matches and may be loaded)."""
    if record is None:
        return "no engine yet"
    if not engine_path.is_file():
        return "engine file missing"
    if record.get("onnx_sha256") != onnx_hash:
        return "ONNX file changed"
    for field in ("tensorrt_version", "gpu_arch", "precision"):
        if record.get(field) != getattr(target, field):
            return f"{field} {record.get(field)!r} != {getattr(target, field)!r}"
    if record.get("engine_sha256") != sha256_file(engine_path):
        return "engine file changed on disk"
    return None


def read_engines_manifest(out_dir: Path) -> dict:
    path = out_dir / ENGINES_MANIFEST
    if not path.is_file():
        return {"engines": {}}
    return json.loads(path.read_text())


def usable_engines(engine_dir: str | Path, target: BuildTarget) -> dict[str, Path]:
    """graph name -> engine file, for every engine whose record matches `target` and its ONNX file.

    What the runtime loads: a mismatched engine is left out (and reported by `build-engines`)."""
    d = Path(engine_dir)
    m = read_engines_manifest(d)
    out = {}
    for name, rec in m.get("engines", {}).items():
        onnx_path = Path(rec.get("onnx_path", ""))
        onnx_sha = onnx_sha256(onnx_path) if onnx_path.is_file() else ""
        if stale_reason(rec, onnx_sha, target, d / rec.get("engine", "")) is None:
            out[name] = d / rec["engine"]
    return out


# ------------------------------------------------------------------------------------------ TensorRT calls
def _progress_monitor(say: Callable[[str], None]) -> "trt.IProgressMonitor":
    """An IProgressMonitor printing each optimiser phase (nested phases indented) and its step count."""
    import tensorrt as trt

    class PhasePrinter(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.depth: dict[str, int] = {}
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.depth[phase_name] = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.steps[phase_name] = num_steps
            say(f"    {'  ' * self.depth[phase_name]}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            say(f"    {'  ' * self.depth.get(phase_name, 0)}{phase_name} done")

    return PhasePrinter()


def build_engine(onnx_path: Path, entry: dict, precision: str, cache: "trt.ITimingCache | None",
                 say: Callable[[str], None] = print,
                 workspace_bytes: int = 4 << 30) -> tuple[bytes, "trt.ITimingCache"]:
    """Parse `onnx_path`, configure, build; returns (serialized engine, the timing cache used)."""
    import tensorrt as trt_mod
    logger = trt_mod.Logger(trt_mod.Logger.WARNING)
    builder = trt_mod.Builder(logger)
    network = builder.create_network(0)
    parser = trt_mod.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse it: " + "; ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt_mod.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.set_flag(trt_mod.BuilderFlag.TF32)
    if not entry["kind"].startswith("deltanet"):
        # DeltaNet engines stay fp32/TF32: their recurrent state is carried (and, in prefill, looped over)
        # inside the engine, and TensorRT-LLM keeps that state in fp32 too; other layers may use BF16
        config.set_flag(trt_mod.BuilderFlag.BF16)
    if precision == "fp4":
        config.set_flag(trt_mod.BuilderFlag.FP4)
    elif precision == "fp8":
        config.set_flag(trt_mod.BuilderFlag.FP8)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(entry).items():
        profile.set_shape(name, trt_mod.Dims(lo), trt_mod.Dims(opt), trt_mod.Dims(hi))
    config.add_optimization_profile(profile)
    if cache is None:
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    config.progress_monitor = _progress_monitor(say)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT build failed (see the log above)")
    return bytes(memoryview(serialized)), config.get_timing_cache()


def build_all(onnx_dir: str | Path, out_dir: str | Path, precision: str = "w4a16", gpu_arch: str | None = None,
              only: list[str] | None = None, force: bool = False, say=print) -> dict:
    """Build (or keep) an engine per graph; returns OUT/engines.json's contents. Raises TensorRTUnavailable,
    ValueError (bad inputs) or RuntimeError (a build failed)."""
    manifest = read_manifest(onnx_dir)
    if "trt" not in manifest["variants"]:
        raise ValueError(f"{onnx_dir}: no 'trt' variant exported (re-run export-onnx with --variant trt or both)")
    import_tensorrt()  # a clear TensorRTUnavailable before anything else
    import tensorrt as trt_mod
    arch = detect_gpu_arch()
    if gpu_arch is not None and gpu_arch != arch:
        raise ValueError(f"--gpu-arch {gpu_arch} but this machine's GPU is {arch}: TensorRT builds for the GPU it "
                         f"runs on; build on a {gpu_arch} machine")
    problem = check_precision(precision, arch)
    if problem:
        raise ValueError(problem)
    target = BuildTarget(trt_mod.__version__, arch, precision)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engines = read_engines_manifest(out)
    records: dict = engines.get("engines", {})
    cache_path = out / TIMING_CACHE
    cache = None
    if cache_path.is_file():
        probe = trt_mod.Builder(trt_mod.Logger(trt_mod.Logger.WARNING)).create_builder_config()
        cache = probe.create_timing_cache(cache_path.read_bytes())
    for entry in manifest["graphs"]:
        name = entry["name"]
        if only and name not in only:
            continue
        onnx_path = Path(onnx_dir) / entry["files"]["trt"]["path"]
        onnx_sha = onnx_sha256(onnx_path)
        if onnx_sha != entry["files"]["trt"]["sha256"]:
            raise ValueError(f"{onnx_path}: sha256 differs from the export manifest (file changed after export)")
        engine_file = f"{name}.{precision}.engine"
        reason = "--force" if force else stale_reason(records.get(name), onnx_sha, target, out / engine_file)
        if reason is None:
            say(f"{name}: up to date ({engine_file})")
            continue
        say(f"{name}: building ({reason})")
        t0 = time.perf_counter()
        blob, cache = build_engine(onnx_path, entry, precision, cache, say=say)
        (out / engine_file).write_bytes(blob)
        records[name] = {"engine": engine_file, "engine_sha256": sha256_file(out / engine_file),
                         "onnx_path": str(onnx_path.resolve()), "onnx_sha256": onnx_sha, **asdict(target),
                         "profile": profile_shapes(entry), "kind": entry["kind"], "layer": entry["layer"],
                         "build_seconds": round(time.perf_counter() - t0, 2), "bytes": len(blob)}
        say(f"{name}: built in {records[name]['build_seconds']} s, {len(blob) / 1e6:.2f} MB")
        if cache is not None:
            cache_path.write_bytes(bytes(memoryview(cache.serialize())))
        engines = {"onnx_dir": str(Path(onnx_dir).resolve()), "model": manifest["model"], "engines": records}
        (out / ENGINES_MANIFEST).write_text(json.dumps(engines, indent=2))
    return engines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qwen-stack build-engines", description=__doc__.split("\n")[0])
    p.add_argument("--onnx", required=True, help="folder written by `qwen-stack export-onnx`")
    p.add_argument("--out", required=True, help="folder for *.engine, engines.json and timing.cache")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--w4a16", dest="precision", action="store_const", const="w4a16",
                      help="weight-only 4-bit, BF16 activations (default; Hopper and older)")
    prec.add_argument("--fp4", dest="precision", action="store_const", const="fp4", help="allow native FP4 (Blackwell)")
    prec.add_argument("--fp8", dest="precision", action="store_const", const="fp8", help="allow FP8 tactics (sm89+)")
    p.add_argument("--gpu-arch", default=None, help="expected GPU, e.g. sm90; refused if this machine's GPU differs")
    p.add_argument("--only", default="", help="comma-separated graph names to build (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even engines that match")
    a = p.parse_args(argv)
    try:
        build_all(a.onnx, a.out, a.precision or "w4a16", a.gpu_arch, [n for n in a.only.split(",") if n], a.force)
    except TensorRTUnavailable as exc:
        print(f"qwen-stack build-engines: {exc}", file=sys.stderr)
        return EXIT_NO_TENSORRT
    except (ValueError, FileNotFoundError) as exc:
        print(f"qwen-stack build-engines: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as exc:
        print(f"qwen-stack build-engines: {exc}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
