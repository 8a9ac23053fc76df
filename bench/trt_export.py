"""ONNX export of a small Qwen3.5-MoE config: export time and size, CPU parity and per-call time per graph.

    .venv/bin/python bench/trt_export.py [--threads 2] [--quick]

Writes a small random checkpoint (transformers), quantizes it to NVFP4 ("all-linears"), then prints:
1. export time and bytes per variant, with the baselines measured in the same run: the time
   `quantize_checkpoint` took and the checkpoint's bytes (bf16 and NVFP4 safetensors);
2. per graph and shape: max relative error of the "trt" graph (onnx.reference) and the "lut" graph
   (onnxruntime CPU) against the PyTorch engine with the same dequantized weights, and the median time
   per call of the lut graph on onnxruntime vs the PyTorch engine module (the baseline).
Nothing is asserted; the tests in tests/trt_engines hold the tolerances.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))

from tiny_checkpoints import randomise, text_config_dict  # noqa: E402

from qwen_stack.qwen_node.engine.loader import load_model  # noqa: E402
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import EXCLUDE_PRESETS, quantize_checkpoint  # noqa: E402
from qwen_stack.trt_engines.engine_reference import (max_relative_error, random_inputs,  # noqa: E402
                                                     reference_outputs)
from qwen_stack.trt_engines.export import export, manifest_weights  # noqa: E402
from qwen_stack.trt_engines.layer_graphs import GraphSpec, ShapeLimits  # noqa: E402


def small_checkpoint(path: Path, quick: bool) -> None:
    """hidden 512 (256 quick), 4 layers (3 DeltaNet + 1 attention), 16 experts top-4."""
    import transformers as tf
    hidden = 256 if quick else 512
    d = text_config_dict(moe=True, hidden=hidden, heads=8, kv_heads=2, head_dim=64, lin_k_heads=4, lin_v_heads=8,
                         lin_k_dim=64, lin_v_dim=64, experts=16, top_k=4, vocab=1024)
    d.update(moe_intermediate_size=hidden // 2, shared_expert_intermediate_size=hidden)
    model = tf.Qwen3_5MoeForCausalLM(tf.Qwen3_5MoeTextConfig(**d))
    randomise(model, 0)
    model.to(torch.bfloat16).save_pretrained(str(path))


def _median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _dir_bytes(d: Path, pattern: str) -> int:
    return sum(f.stat().st_size for f in d.rglob(pattern))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="hidden 256 and fewer timed runs")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator
    runs = 3 if a.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small_checkpoint(root / "bf16", a.quick)
        t0 = time.perf_counter()
        quantize_checkpoint(root / "bf16", root / "nvfp4", EXCLUDE_PRESETS["all-linears"], measure_error=False)
        t_quant = time.perf_counter() - t0
        rows = []
        for variant in ("trt", "lut"):
            t0 = time.perf_counter()
            m = export(root / "nvfp4", root / f"onnx_{variant}", variants=(variant,),
                       limits=ShapeLimits(4, 128, 1024, 16), say=lambda _m: None)
            rows.append((f"export-onnx --variant {variant}", time.perf_counter() - t0,
                         _dir_bytes(root / f"onnx_{variant}", "*.onnx"), len(m["graphs"])))
        print(f"\n1. export ({'hidden 256' if a.quick else 'hidden 512'}, 4 layers, 16 experts top-4, all-linears NVFP4)")
        print(f"{'step':<32} {'seconds':>8} {'MB':>8} {'files':>6}")
        print(f"{'baseline: bf16 checkpoint':<32} {'':>8} {_dir_bytes(root / 'bf16', '*.safetensors') / 1e6:>8.2f} {'':>6}")
        print(f"{'baseline: quantize (NVFP4 ckpt)':<32} {t_quant:>8.2f} "
              f"{_dir_bytes(root / 'nvfp4', '*.safetensors') / 1e6:>8.2f} {'':>6}")
        for name, secs, nbytes, n in rows:
            print(f"{name:<32} {secs:>8.2f} {nbytes / 1e6:>8.2f} {n:>6}")

        manifest = export(root / "nvfp4", root / "onnx", limits=ShapeLimits(4, 128, 1024, 16), say=lambda _m: None)
        engine = load_model(root / "nvfp4", dtype=torch.float32,
                            source=manifest_weights(manifest).dequantized_source(), progress=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = a.threads
        print("\n2. parity vs the PyTorch engine (max |graph - engine| / max |engine| over all outputs) and time per call")
        print(f"{'graph':<26} {'(B, T, P)':<13} {'trt (onnx.ref)':>14} {'lut (ort)':>10} {'ort ms':>8} {'torch ms':>9}")
        for entry in manifest["graphs"]:
            spec = GraphSpec.from_manifest(entry)
            sess = ort.InferenceSession(str(root / "onnx" / entry["files"]["lut"]["path"]), opts,
                                        providers=["CPUExecutionProvider"])
            ref_eval = ReferenceEvaluator(str(root / "onnx" / entry["files"]["trt"]["path"]))
            names = [o.name for o in sess.get_outputs()]
            for b, t, past in [(1, 1, 64), (1, 48, 0)]:
                inputs = random_inputs(engine, spec, b, t, past, seed=0)
                want = reference_outputs(engine, spec, inputs)
                lut = dict(zip(names, sess.run(None, inputs)))
                trt_like = dict(zip(ref_eval.output_names, ref_eval.run(None, inputs)))
                e_lut = max(max_relative_error(lut[k], want[k]) for k in want)
                e_trt = max(max_relative_error(trt_like[k], want[k]) for k in want)
                ort_ms = _median_ms(lambda: sess.run(None, inputs), runs)
                torch_ms = _median_ms(lambda: reference_outputs(engine, spec, inputs), runs)
                shape = (b, 1 if spec.kind == "deltanet_decode" else t, past)
                print(f"{spec.name:<26} {str(shape):<13} {e_trt:>14.1e} {e_lut:>10.1e} {ort_ms:>8.2f} {torch_ms:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
