"""`qwen-stack quantize --model DIR --out DIR [--exclude PATTERN ...]`: write an NVFP4 checkpoint.

``--preset`` picks the exclusions (``nvfp4_checkpoint.EXCLUDE_PRESETS``, reasons in that module's
docstring): ``all-linears`` (default; NVIDIA's published Qwen3.5 layout: experts, attention and
large DeltaNet projections in NVFP4; router, gates, DeltaNet a/b, embeddings, lm_head, vision tower
and MTP head kept), ``mlp-only`` or ``experts-only``; ``--exclude`` adds glob patterns over module names;
``--preset none`` applies only the ``--exclude`` patterns. Whatever the patterns, the output always loads:
a layer's routed experts are quantized all together or kept all together, and weights the engine builds as
plain layers (embeddings, vision tower) stay as they are; the summary counts both. ``--lm-head nvfp4`` puts
the output layer in NVFP4 too (default ``keep``: why, with the measured accuracy, in nvfp4_checkpoint's
docstring).
"""
from __future__ import annotations

import argparse
import statistics
import sys

from .nvfp4_checkpoint import (
    DEFAULT_PRESET,
    EXCLUDE_PRESETS,
    LM_HEAD,
    CheckpointError,
    is_excluded,
    quantize_checkpoint,
)

DEFAULT_LM_HEAD = "keep"    # measured accuracy and why: nvfp4_checkpoint's docstring


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwen-stack quantize", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="source checkpoint dir (bf16/fp16/fp32 safetensors + config.json)")
    p.add_argument("--out", required=True, help="output dir for the NVFP4 checkpoint (must be empty or new)")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep modules matching this glob in source precision (repeatable), e.g. '*.self_attn.*'",
    )
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=[*EXCLUDE_PRESETS, "none"],
        help=f"which layers stay in source precision (default {DEFAULT_PRESET}, NVIDIA's published layout)",
    )
    p.add_argument(
        "--lm-head",
        choices=("keep", "nvfp4"),
        default=DEFAULT_LM_HEAD,
        help=f"the output layer in source precision or in NVFP4 too (default {DEFAULT_LM_HEAD}; recorded in "
        "hf_quant_config.json's exclude_modules; a tied lm_head gets its own packed tensor, the embedding stays)",
    )
    p.add_argument("--shard-size-gb", type=float, default=4.0, help="max output shard size in GB (default 4)")
    p.add_argument("--no-error", action="store_true", help="skip the per-layer relative error measurement")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p


def quantize_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.shard_size_gb <= 0:
        print("qwen-stack quantize: --shard-size-gb must be > 0", file=sys.stderr)
        return 2
    if args.lm_head == "nvfp4" and is_excluded(LM_HEAD, args.exclude):
        print("qwen-stack quantize: --lm-head nvfp4 contradicts an --exclude pattern that names lm_head", file=sys.stderr)
        return 2
    exclude = tuple(args.exclude) + (() if args.preset == "none" else EXCLUDE_PRESETS[args.preset])
    progress = None if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        report = quantize_checkpoint(
            args.model,
            args.out,
            exclude,
            progress=progress,
            shard_bytes=int(args.shard_size_gb * 1e9),
            measure_error=not args.no_error,
            overwrite=args.overwrite,
            lm_head=args.lm_head == "nvfp4",
        )
    except CheckpointError as exc:
        print(f"qwen-stack quantize: {exc}", file=sys.stderr)
        return 2
    ratio = report.bytes_out_quantized / max(report.bytes_in_quantized, 1)
    print(
        f"quantized {len(report.quantized)} linears ({report.bytes_in_quantized / 1e6:.1f} MB -> "
        f"{report.bytes_out_quantized / 1e6:.1f} MB, {ratio:.3f}x); kept {len(report.excluded)} excluded, "
        f"{len(report.not_divisible)} non-divisible, {len(report.group_kept)} routed-expert weights with their "
        f"group and {len(report.engine_plain)} the engine loads unquantized; checkpoint {report.bytes_in / 1e6:.1f} MB -> "
        f"{report.bytes_out / 1e6:.1f} MB ({report.bytes_out / max(report.bytes_in, 1):.3f}x)"
    )
    if report.rel_error:
        errs = list(report.rel_error.values())
        print(f"per-layer relative error: mean {statistics.fmean(errs):.4f}, max {max(errs):.4f} over {len(errs)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(quantize_main())
