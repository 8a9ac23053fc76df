"""`qwen-stack export-onnx --model DIR --out DIR [--layers 0,3] [--kinds moe,attention] [--variant trt|lut|both]`

Writes one ONNX graph per (layer, kind) for each variant (see nvfp4_onnx: "trt" carries the FP4 two-step
DequantizeLinear pattern TensorRT takes, "lut" decodes packed bytes with a lookup table so onnxruntime CPU
runs it) into OUT/<variant>/<layer name>.onnx, and OUT/manifest.json recording the model, its fingerprint,
the quantization, the opset, every graph's inputs/outputs/dynamic dims and each file's sha256 and size.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import onnx

from .layer_graphs import BUILDERS, KINDS, ShapeLimits, kinds_for_layer

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
EXTERNAL_DATA_BYTES = 1 << 30  # graphs with more initializer bytes keep them in a side file (protobuf 2 GB cap)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_sha256(path: Path) -> str:
    """sha256 of an ONNX graph: the .onnx file, then its external-data file when there is one."""
    h = hashlib.sha256()
    for f in (path, path.with_name(path.name + ".data")):
        if f.is_file():
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _save(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Save (external data for big graphs); returns the files written."""
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
        return [path, path.with_name(path.name + ".data")]
    onnx.save_model(model, str(path))
    return [path]


def parse_layers(text: str | None, n_layers: int) -> list[int]:
    if text in (None, "", "all"):
        return list(range(n_layers))
    try:
        layers = sorted({int(p) for p in text.split(",")})
    except ValueError:
        raise ValueError(f"--layers must be 'all' or comma-separated integers, got {text!r}") from None
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"--layers {bad} out of range: the model has {n_layers} layers (0..{n_layers - 1})")
    return layers


def export(model_dir: str | Path, out_dir: str | Path, layers: str | None = None, kinds: list[str] | None = None,
           variants: tuple[str, ...] = ("trt", "lut"), opset: int = 23, limits: ShapeLimits | None = None,
           preset: str | None = None, moe_form: str = "if", say=print) -> dict:
    """Export the graphs; returns the manifest (also written to OUT/manifest.json)."""
    from qwen_stack.qwen_node.engine.nvfp4_checkpoint import DEFAULT_PRESET, EXCLUDE_PRESETS

    from .checkpoint_weights import CheckpointWeights
    from .nvfp4_onnx import MIN_OPSET, VARIANTS

    limits = limits or ShapeLimits()
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"--variant {v!r}: expected one of {VARIANTS}")
        if opset < MIN_OPSET[v]:
            raise ValueError(f"--opset {opset}: the {v!r} variant needs opset >= {MIN_OPSET[v]}")
    bad = [k for k in kinds or [] if k not in KINDS]
    if bad:
        raise ValueError(f"--kinds {bad}: expected some of {KINDS}")
    t0 = time.perf_counter()
    preset = preset or DEFAULT_PRESET
    if preset not in EXCLUDE_PRESETS:
        raise ValueError(f"--preset {preset!r}: expected one of {sorted(EXCLUDE_PRESETS)}")
    weights = CheckpointWeights(model_dir, EXCLUDE_PRESETS[preset])
    cfg = weights.config.text
    out = Path(out_dir)
    for v in variants:
        (out / v).mkdir(parents=True, exist_ok=True)
    graphs = []
    for layer in parse_layers(layers, cfg.num_hidden_layers):
        for kind in kinds_for_layer(cfg, layer):
            if kinds and kind not in kinds:
                continue
            entry: dict = {"files": {}}
            for v in variants:
                t1 = time.perf_counter()
                extra = {"moe_form": moe_form} if kind == "moe" else {}
                model, spec = BUILDERS[kind](weights, layer, v, limits, opset, **extra)
                path = out / v / f"{spec.name}.onnx"
                files = _save(model, path)
                onnx.checker.check_model(str(path))  # by path: works past protobuf's 2 GB (external data)
                nbytes = sum(f.stat().st_size for f in files)
                entry["files"][v] = {"path": f"{v}/{path.name}", "sha256": onnx_sha256(path), "bytes": nbytes,
                                     "nodes": len(model.graph.node), "seconds": round(time.perf_counter() - t1, 3)}
                entry.update(dataclasses.asdict(spec))
                if v == "trt":
                    entry["nvfp4_weights"] = sum(t.data_type == onnx.TensorProto.FLOAT4E2M1 for t in model.graph.initializer)
                say(f"  {v}/{path.name}: {len(model.graph.node)} nodes, {nbytes / 1e3:.1f} kB")
            graphs.append(entry)
    if not graphs:
        raise ValueError("nothing to export: no layer has the requested --kinds")
    manifest = {
        "version": MANIFEST_VERSION,
        "model": {"dir": str(Path(model_dir).resolve()), "architecture": weights.config.architecture,
                  "fingerprint_sha256": weights.fingerprint()},
        "quantization": {"weights": weights.quantization, "format": "NVFP4 (E2M1 codes, E4M3 block scales of 16, "
                         "fp32 global scale)", "excluded_patterns": list(weights.exclude) if weights.quantized_at_export else None,
                         "preset": preset if weights.quantized_at_export else None},
        "opset": opset,
        "variants": list(variants),
        "limits": dataclasses.asdict(limits),
        "export_seconds": round(time.perf_counter() - t0, 3),
        "graphs": graphs,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(onnx_dir: str | Path) -> dict:
    path = Path(onnx_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `qwen-stack export-onnx` first)")
    manifest = json.loads(path.read_text())
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {manifest.get('version')!r}, expected {MANIFEST_VERSION}")
    return manifest


def manifest_weights(manifest: dict):
    """The CheckpointWeights an export used (same checkpoint, same preset): what a reference must load."""
    from qwen_stack.qwen_node.engine.nvfp4_checkpoint import EXCLUDE_PRESETS

    from .checkpoint_weights import CheckpointWeights
    preset = manifest["quantization"].get("preset")
    if preset is None:
        return CheckpointWeights(manifest["model"]["dir"])
    return CheckpointWeights(manifest["model"]["dir"], EXCLUDE_PRESETS[preset])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qwen-stack export-onnx", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint folder (NVFP4 or bf16/fp16/fp32; the latter is "
                   "quantized to NVFP4 at export with the same rules as `qwen-stack quantize`)")
    p.add_argument("--out", required=True, help="output folder for <variant>/*.onnx and manifest.json")
    p.add_argument("--layers", default="all", help="'all' or comma-separated layer indices")
    p.add_argument("--kinds", default="", help=f"comma-separated subset of {','.join(KINDS)} (default: all)")
    p.add_argument("--variant", choices=["trt", "lut", "both"], default="both",
                   help="trt: FP4 DequantizeLinear pattern for TensorRT; lut: onnxruntime-CPU decoder")
    p.add_argument("--preset", default=None, help="NVFP4 exclusion preset used when --model is not quantized "
                   "(as `qwen-stack quantize`; default mlp-only); an NVFP4 checkpoint keeps its own choice")
    p.add_argument("--moe-form", choices=["if", "per_expert"], default="if",
                   help="routed experts: 'if' (gathered for few tokens, all for many) or 'per_expert' "
                        "(one DequantizeLinear->MatMul chain per expert; see layer_graphs.build_moe)")
    p.add_argument("--opset", type=int, default=23, help="ONNX opset (>= 23 for the trt variant)")
    p.add_argument("--max-batch", type=int, default=4, help="largest batch in the TensorRT profiles")
    p.add_argument("--max-tokens", type=int, default=512, help="largest prefill call (tokens)")
    p.add_argument("--max-seq", type=int, default=4096, help="largest KV cache length")
    p.add_argument("--chunk", type=int, default=16, help="DeltaNet prefill chunk length (power of two)")
    a = p.parse_args(argv)
    variants = ("trt", "lut") if a.variant == "both" else (a.variant,)
    kinds = [k for k in a.kinds.split(",") if k] or None
    try:
        limits = ShapeLimits(a.max_batch, a.max_tokens, a.max_seq, a.chunk)
        print(f"exporting {a.model} -> {a.out} ({', '.join(variants)})")
        m = export(a.model, a.out, a.layers, kinds, variants, a.opset, limits, a.preset, a.moe_form)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"qwen-stack export-onnx: {exc}", file=sys.stderr)
        return 2
    total = sum(f["bytes"] for g in m["graphs"] for f in g["files"].values())
    print(f"wrote {len(m['graphs'])} graphs x {len(variants)} variants, {total / 1e6:.2f} MB, "
          f"in {m['export_seconds']:.2f} s; manifest {Path(a.out) / MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
