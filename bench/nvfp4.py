"""NVFP4 benchmark: error, checkpoint and resident bytes vs BF16, matmul time vs BF16 on CPU.

    .venv/bin/python bench/nvfp4.py [--threads N] [--quick]

Prints four tables, each with its baseline measured in the same run:
1. per-layer relative error ||W' - W|| / ||W|| on Gaussian weights: ours and ModelOpt's;
2. a small random Qwen3.5-MoE checkpoint quantized with ``qwen-stack quantize``: file bytes and
   resident weight bytes after loading, NVFP4 vs BF16 (all, and the quantized layers alone);
3. y = x W^T on CPU: tiled NVFP4 (dequantize a tile of rows inside the matmul), the naive
   reference (dequantize the whole weight, then matmul), what the engine runs (one token: the fused
   C kernel, kernels/nvfp4_matvec.c; more: tiled) and BF16 / FP32 ``F.linear``;
4. end-to-end logits of the tiny model, NVFP4 vs unquantized, with a control: the same model with
   Gaussian noise of NVFP4's relative size added to the same weights.
Times are medians of repeated runs; nothing here is asserted.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "nvfp4"))

from qwen_stack.qwen_node.engine.loader import load_model  # noqa: E402
from qwen_stack.qwen_node.engine.nvfp4 import (  # noqa: E402
    NVFP4Linear,
    dequantize_nvfp4,
    nvfp4_linear,
    nvfp4_linear_reference,
    nvfp4_matvec,
    quantize_nvfp4,
)
from qwen_stack.qwen_node.engine.nvfp4_checkpoint import quantize_checkpoint  # noqa: E402
from qwen_stack.qwen_node.engine.nvfp4_loader import (  # noqa: E402
    NVFP4Experts,
    NVFP4ExpertWeights,
    load_model_auto,
    resident_weight_bytes,
)


def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[c if isinstance(c, str) else f"{c:.4g}" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for j, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def modelopt_quantizer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import modelopt.torch.quantization.qtensor.nvfp4_tensor as nv
    nv.fp4_compatible = lambda: False  # CPU-only torch: skip ModelOpt's CUDA capability probe
    return nv.NVFP4QTensor


def error_table(quick: bool) -> None:
    NVFP4QTensor = modelopt_quantizer()
    shapes = [(512, 2048), (2048, 512), (2048, 2048)] + ([] if quick else [(4096, 4096)])
    rows = []
    gen = torch.Generator().manual_seed(0)
    for out_f, in_f in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            w = torch.randn(out_f, in_f, generator=gen).to(dtype)
            wf = w.float()
            ours = float((dequantize_nvfp4(quantize_nvfp4(w)) - wf).norm() / wf.norm())
            qt, s, g = NVFP4QTensor.quantize(w.clone(), 16)
            theirs = float((qt.dequantize(dtype=torch.float32, scale=s, double_scale=g, block_sizes={-1: 16}) - wf).norm() / wf.norm())
            rows.append([f"{out_f}x{in_f}", str(dtype).removeprefix("torch."), ours, theirs])
    table("1. per-layer relative error, Gaussian weights", ["weight", "dtype", "ours", "ModelOpt"], rows)


def sizes_table(work: Path) -> tuple[Path, Path]:
    from conftest import save_tiny_qwen35_moe  # the tests' tiny-checkpoint builder, with bigger dims

    src, dst = work / "bf16", work / "nvfp4"
    save_tiny_qwen35_moe(src, text_overrides=BENCH_TEXT)
    report = quantize_checkpoint(src, dst, measure_error=False)
    file_bytes = lambda d: sum(f.stat().st_size for f in d.glob("*.safetensors"))  # noqa: E731
    plain = load_model(src, dtype=torch.bfloat16, progress=False)
    quant = load_model_auto(dst, dtype=torch.bfloat16, progress=False)
    r_plain, r_quant = resident_weight_bytes(plain), resident_weight_bytes(quant)
    q_weights_bf16 = sum(
        m.weight.numel() * 2 * 2 for m in quant.modules() if isinstance(m, (NVFP4Linear, NVFP4ExpertWeights))
    )  # each packed byte holds two weights, 2 bytes each in bf16
    rows = [
        ["checkpoint files (all tensors)", file_bytes(src), file_bytes(dst), file_bytes(dst) / file_bytes(src)],
        ["checkpoint, quantized layers", report.bytes_in_quantized, report.bytes_out_quantized,
         report.bytes_out_quantized / report.bytes_in_quantized],
        ["resident weights (all)", r_plain["total"], r_quant["total"], r_quant["total"] / r_plain["total"]],
        ["resident, quantized layers", q_weights_bf16, r_quant["nvfp4"], r_quant["nvfp4"] / q_weights_bf16],
    ]
    table(f"2. bytes, BF16 vs NVFP4 ({len(report.quantized)} NVFP4 linears, tiny Qwen3.5-MoE, hidden 256, 16 experts)",
          ["what", "bf16 B", "nvfp4 B", "ratio"], rows)
    return src, dst


def matmul_table(repeats: int, quick: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    shapes = [(2048, 2048), (512, 2048), (2048, 512)] + ([] if quick else [(8192, 2048)])
    rows = []
    for out_f, in_f in shapes:
        w = torch.randn(out_f, in_f, generator=gen) * 0.02
        q = quantize_nvfp4(w)
        w_bf16 = dequantize_nvfp4(q, torch.bfloat16)
        w_fp32 = dequantize_nvfp4(q, torch.float32)
        for tokens in (1, 128):
            x = torch.randn(tokens, in_f, generator=gen)
            xb = x.to(torch.bfloat16)
            t_bf16 = median_time(lambda: F.linear(xb, w_bf16), repeats)
            t_fp32 = median_time(lambda: F.linear(x, w_fp32), repeats)
            t_tiled = median_time(lambda: nvfp4_linear(xb, q), repeats)
            t_tiled32 = median_time(lambda: nvfp4_linear(x, q), repeats)
            t_naive = median_time(lambda: nvfp4_linear_reference(xb, q), repeats)
            # one token: the fused C kernel (what decode runs); several: the tiled path is what prefill runs
            t_fused = median_time(lambda: nvfp4_matvec(xb, q.packed, q.block_scale, q.global_scale), repeats) \
                if tokens == 1 else t_tiled
            rows.append([f"{out_f}x{in_f}", str(tokens), t_bf16 * 1e3, t_fp32 * 1e3, t_tiled * 1e3, t_tiled32 * 1e3,
                         t_naive * 1e3, t_fused * 1e3, t_fused / t_bf16])
    table(
        f"3. y = x W^T on CPU ({torch.get_num_threads()} threads), median ms",
        ["W [out x in]", "tokens", "bf16", "fp32", "nvfp4 tiled bf16", "nvfp4 tiled fp32", "nvfp4 naive bf16",
         "nvfp4 engine bf16", "engine/bf16"],
        rows,
    )


BENCH_TEXT = dict(hidden_size=256, moe_intermediate_size=128, shared_expert_intermediate_size=128, num_experts=16, vocab_size=512)


def hf_init_checkpoint(work: Path) -> tuple[Path, Path]:
    """The same architecture with transformers' own initialisation (weights N(0, 0.02), norms at 1)."""
    from conftest import TINY_TEXT, TINY_VISION
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    torch.manual_seed(0)
    text = {**TINY_TEXT, **BENCH_TEXT}
    model = Qwen3_5MoeForConditionalGeneration(
        Qwen3_5MoeConfig(text_config=text, vision_config={**TINY_VISION, "out_hidden_size": text["hidden_size"]})
    )
    src, dst = work / "hf_init_bf16", work / "hf_init_nvfp4"
    model.to(torch.bfloat16).save_pretrained(str(src))
    quantize_checkpoint(src, dst, measure_error=False)
    return src, dst


def logits_errors(src: Path, dst: Path) -> list[list]:
    ids = torch.randint(0, 512, (2, 32), generator=torch.Generator().manual_seed(2))
    plain = load_model(src, dtype=torch.float32, progress=False)
    quant = load_model_auto(dst, dtype=torch.float32, progress=False)
    # control: Gaussian noise with NVFP4's relative size on exactly the weights NVFP4 replaced
    noisy = copy.deepcopy(plain)
    modules = dict(noisy.named_modules())
    gen = torch.Generator().manual_seed(3)
    for name, m in quant.named_modules():
        if isinstance(m, NVFP4Linear):
            targets = [(modules[name].weight, m.qweight.dequantize())]
        elif isinstance(m, NVFP4Experts):
            targets = [(modules[name].gate_up_proj, m.gate_up_proj.dequantize(torch.float32)),
                       (modules[name].down_proj, m.down_proj.dequantize(torch.float32))]
        else:
            continue
        for p, deq in targets:
            rel = float((deq - p).norm() / p.norm())
            with torch.no_grad():
                p.add_(torch.randn(p.shape, generator=gen) * p.std() * rel)
    with torch.no_grad():
        ref, got, ctl = plain(ids), quant(ids), noisy(ids)
    rel = lambda a: float((a - ref).norm() / ref.norm())  # noqa: E731
    top1 = lambda a: float((a.argmax(-1) == ref.argmax(-1)).float().mean())  # noqa: E731
    return [[rel(got), top1(got)], [rel(ctl), top1(ctl)]]


def logits_table(models: list[tuple[str, Path, Path]]) -> None:
    rows = []
    for label, src, dst in models:
        (q_err, q_top1), (c_err, c_top1) = logits_errors(src, dst)
        rows += [[label, "NVFP4 (default preset)", q_err, q_top1], [label, "control: same-size Gaussian noise", c_err, c_top1]]
    table("4. end-to-end logits vs the unquantized model (fp32, 2 x 32 tokens)",
          ["tiny model", "weights", "rel L2 error", "top-1 agreement"], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    error_table(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = sizes_table(Path(tmp))
        matmul_table(5 if args.quick else 20, args.quick)
        hf_src, hf_dst = hf_init_checkpoint(Path(tmp))
        logits_table([("test init (N(0,1/fan_in), random norms)", src, dst), ("transformers init (N(0,0.02))", hf_src, hf_dst)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
