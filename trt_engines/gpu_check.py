"""One run on a GPU machine with TensorRT and pycuda: tiny NVFP4 checkpoint -> ONNX -> engines -> compare.

    python -m qwen_stack.trt_engines.gpu_check [--model DIR] [--work DIR] [--fp4 | --fp8] [--runs 20]

Without --model it writes tiny random MoE and dense Qwen3.5 checkpoints with transformers (the helper the
engine tests use, tests/engine/tiny_checkpoints.py in a source checkout), quantizes them to NVFP4 (every
linear the "all-linears" preset allows, so attention and DeltaNet carry FP4 weights too), exports the graphs,
builds the engines (w4a16 unless --fp4/--fp8), then for every engine prints the max relative error of each
output against the PyTorch engine (fp32, same dequantized weights, on CPU) and the median time per call of
TensorRT and of PyTorch, and finally decodes a few tokens with every layer on TensorRT and compares logits.
Exit code 0 when every error is within its tolerance, 1 otherwise, 3 when TensorRT/pycuda/GPU is missing.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


# BF16 activations (w4a16/fp4/fp8 builds) against fp32: a few bf16 ulps after a handful of GEMMs and norms
TOLERANCE = {"w4a16": 3e-2, "fp4": 3e-2, "fp8": 3e-2}
LOGITS_TOLERANCE = 5e-2
SHAPES = [(1, 1, 0), (2, 7, 5), (1, 40, 12)]     # (batch, new tokens, past): decode, short and multi-chunk prefill


def _median_ms(fn: Callable[[], Any], runs: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _tiny_checkpoints(work: Path) -> list[Path]:
    tests_engine = Path(__file__).resolve().parents[1] / "tests" / "engine"
    if not (tests_engine / "tiny_checkpoints.py").is_file():
        raise SystemExit("gpu_check: no --model given and tests/engine/tiny_checkpoints.py is not here "
                         "(run from a source checkout or pass --model)")
    sys.path.insert(0, str(tests_engine))
    from tiny_checkpoints import make_checkpoint  # type: ignore[import-not-found]  # test helper, not a package

    from qwen_stack.qwen_node.engine.nvfp4_checkpoint import EXCLUDE_PRESETS, quantize_checkpoint
    out = []
    configs: list[tuple[str, str, dict[str, Any]]] = [
        ("moe", "Qwen3_5MoeForCausalLM", dict(layer_types=("linear_attention", "full_attention"))),
        ("dense", "Qwen3_5ForCausalLM", dict(layer_types=("full_attention", "linear_attention"), heads=6, kv_heads=2,
                                             head_dim=32, lin_k_heads=1, lin_v_heads=3, lin_k_dim=16, lin_v_dim=16)),
    ]
    for name, arch, kw in configs:
        make_checkpoint(work / f"{name}_src", arch, seed=1, **kw)
        quantize_checkpoint(work / f"{name}_src", work / name, EXCLUDE_PRESETS["all-linears"], measure_error=False)
        out.append(work / name)
    return out


def check_model(model_dir: Path, work: Path, precision: str, runs: int, moe_form: str = "if") -> bool:
    import torch

    from qwen_stack.qwen_node.engine.loader import load_model

    from .build import BuildTarget, build_all, detect_gpu_arch, usable_engines
    from .engine_reference import max_relative_error, random_inputs, reference_outputs
    from .export import export, manifest_weights
    from .layer_graphs import GraphSpec, ShapeLimits
    from .runtime import TensorRTRunner, graph_layer_builders

    import tensorrt as trt

    forms = ["if", "per_expert"] if moe_form == "if" else [moe_form]
    for form in forms:  # the "if" MoE form first; if TensorRT rejects it, the per-expert form
        onnx_dir, engine_dir = work / f"{model_dir.name}_{form}_onnx", work / f"{model_dir.name}_{form}_engines"
        t0 = time.perf_counter()
        manifest = export(model_dir, onnx_dir, variants=("trt",), limits=ShapeLimits(4, 64, 256, 16),
                          moe_form=form, say=lambda _m: None)
        print(f"\n== {model_dir.name} (moe form {form}): exported {len(manifest['graphs'])} graphs in "
              f"{time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        try:
            build_all(onnx_dir, engine_dir, precision, say=print)
        except RuntimeError as exc:
            print(f"BUILD FAILED with moe form {form}: {exc}")
            if form == forms[-1]:
                return False
            continue
        print(f"built in {time.perf_counter() - t0:.1f} s")
        break
    engines = usable_engines(engine_dir, BuildTarget(trt.__version__, detect_gpu_arch(), precision))
    runner = TensorRTRunner(engines)
    reference = load_model(model_dir, dtype=torch.float32, source=manifest_weights(manifest).dequantized_source(),
                           progress=False)
    ok = True
    tol = TOLERANCE[precision]
    print(f"{'graph':<28} {'(B, T, P)':<12} {'max rel err per output':<58} {'TRT ms':>8} {'torch ms':>9}")
    for entry in manifest["graphs"]:
        spec = GraphSpec.from_manifest(entry)
        for i, (b, t, p) in enumerate(SHAPES):
            inputs = random_inputs(reference, spec, b, t, p, seed=i)
            want = reference_outputs(reference, spec, inputs)
            feeds = {k: runner.upload(v) for k, v in inputs.items()}
            outs = runner.run(spec.name, feeds)
            errs = {k: max_relative_error(runner.download(outs[k]), want[k]) for k in want}
            trt_ms = _median_ms(lambda: runner.run(spec.name, feeds), runs, runner.stream.synchronize)
            torch_ms = _median_ms(lambda: reference_outputs(reference, spec, inputs), runs, lambda: None)
            bad = [k for k, e in errs.items() if not e <= tol]
            ok &= not bad
            text = ", ".join(f"{k} {e:.1e}" for k, e in errs.items())
            print(f"{spec.name:<28} {str((b, t, p)):<12} {text:<58} {trt_ms:>8.3f} {torch_ms:>9.3f}"
                  + (f"  > {tol} FAIL" if bad else ""))
    # whole model: prefill + decode with every layer on TensorRT
    model = load_model(model_dir, dtype=torch.float32, source=manifest_weights(manifest).dequantized_source(),
                       progress=False, builders=graph_layer_builders(runner))
    model.setup_caches(2, 64)
    reference.setup_caches(2, 64)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.text.vocab_size, (2, 19), generator=gen)
    start = 0
    with torch.no_grad():
        for step in range(5):
            err = max_relative_error(model(ids, start=start).numpy(), reference(ids, start=start).numpy())
            print(f"whole model, step {step} (start {start}, {ids.shape[1]} tokens): logits max rel err {err:.1e}"
                  + ("" if err <= LOGITS_TOLERANCE else f"  > {LOGITS_TOLERANCE} FAIL"))
            ok &= err <= LOGITS_TOLERANCE
            start += ids.shape[1]
            ids = torch.randint(0, model.config.text.vocab_size, (2, 1), generator=gen)
    runner.close()
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qwen_stack.trt_engines.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=None, help="checkpoint folder(s); default: tiny random ones")
    p.add_argument("--work", default=None, help="folder for ONNX and engines (default: a temporary one)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp4", dest="precision", action="store_const", const="fp4")
    prec.add_argument("--fp8", dest="precision", action="store_const", const="fp8")
    p.add_argument("--runs", type=int, default=20, help="timed calls per graph and shape (median reported)")
    p.add_argument("--moe-form", choices=["if", "per_expert"], default="if",
                   help="MoE graph form; with 'if' a failed build is retried with 'per_expert'")
    a = p.parse_args(argv)
    from .build import TensorRTUnavailable, detect_gpu_arch, import_tensorrt
    try:
        trt_mod = import_tensorrt()
        importlib.import_module("pycuda.driver")
        arch = detect_gpu_arch()
    except (TensorRTUnavailable, ImportError) as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 3
    print(f"TensorRT {trt_mod.__version__}, GPU {arch}, precision {a.precision or 'w4a16'}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        models = [Path(m) for m in a.model] if a.model else _tiny_checkpoints(work)
        results = [check_model(m, work, a.precision or "w4a16", a.runs, a.moe_form) for m in models]
    print("\nALL OK" if all(results) else "\nSOME CHECKS FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
