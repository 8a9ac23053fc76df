"""`qwen-stack plan --model CONFIG --quant nvfp4|fp8|bf16 --context N --batch B`: deployment memory.

Counts every tensor a Qwen3.5 checkpoint holds from its config (``tensor_inventory``), prices each
by the quantization (NVFP4: 0.5 B codes + 1/16 B E4M3 scale per weight + two fp32 scalars per
linear; FP8: 1 B + two fp32 scalars; the rest BF16), with the same exclusion presets as
``qwen-stack quantize``, then adds what a running engine holds:

* KV cache, full-attention layers only: B * context * n_full * 2 (K, V) * Hkv * Dh * kv bytes;
* DeltaNet state per linear-attention layer: conv state [B, conv_dim, kernel-1] in the activation
  dtype and recurrent state [B, Hv, Dk, Dv] in fp32 (as the engine keeps them);
* activations: the live per-token tensors of the widest layer during a prefill chunk (residual,
  norm output, the mixer's or the MoE's projections and intermediates; attention by a
  memory-efficient kernel, i.e. no [T, S] score matrix), last-position fp32 logits, and the NVFP4
  dequantization tile. An estimate, not a measured peak.

MTP (multi-token prediction) weights are on disk in the published checkpoints but this engine does
not load them; they are listed and counted only in the checkpoint size (``--with-mtp`` counts them
as resident, as a runtime using them for speculative decoding would).

Presets are the published Qwen3.5 configs (engine/config.py PRESETS, ``ModelConfig.from_name``: config.json
of Qwen/Qwen3.5-397B-A17B, -122B-A10B, -35B-A3B and -27B, from memory of those files and their model cards).
A path to a config.json (or a folder holding one) is parsed by the engine's own parser (config.parse_config),
so the plan and the engine can never read one file differently.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import PRESETS, ConfigError, ModelConfig, parse_config, preset_key
from .nvfp4_checkpoint import DEFAULT_PRESET, EXCLUDE_PRESETS, is_excluded

GB, GIB = 1e9, 2**30

class PlanError(ValueError):
    """A config or an argument the planner cannot use (the message names it)."""


# ---------------------------------------------------------------------------------------------
# model shape from config.json


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layer_types: tuple[str, ...]
    heads: int
    kv_heads: int
    head_dim: int
    lin_k_heads: int
    lin_v_heads: int
    lin_k_dim: int
    lin_v_dim: int
    conv_kernel: int
    vocab: int
    tie_embeddings: bool
    mtp_layers: int
    num_experts: int  # 0 for dense
    top_k: int
    moe_intermediate: int
    shared_intermediate: int
    dense_intermediate: int
    vision: dict | None  # vision_config fields, None for text-only
    text_prefix: str  # "model.language_model." (conditional generation) or "model."

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def n_full(self) -> int:
        return sum(t == "full_attention" for t in self.layer_types)

    @property
    def n_linear(self) -> int:
        return sum(t == "linear_attention" for t in self.layer_types)

    @property
    def conv_dim(self) -> int:
        return 2 * self.lin_k_heads * self.lin_k_dim + self.lin_v_heads * self.lin_v_dim


def shape_of(cfg: ModelConfig) -> ModelShape:
    """The engine's parsed config (one parser, engine/config.py) -> the numbers the plan counts."""
    t, v = cfg.text, cfg.vision
    vision = None if v is None else {k: getattr(v, k) for k in (
        "depth", "hidden_size", "intermediate_size", "patch_size", "temporal_patch_size", "spatial_merge_size",
        "in_channels", "num_position_embeddings", "out_hidden_size")}
    return ModelShape(
        hidden=t.hidden_size, layer_types=tuple(t.layer_types), heads=t.num_attention_heads,
        kv_heads=t.num_key_value_heads, head_dim=t.head_dim, lin_k_heads=t.linear_num_key_heads,
        lin_v_heads=t.linear_num_value_heads, lin_k_dim=t.linear_key_head_dim, lin_v_dim=t.linear_value_head_dim,
        conv_kernel=t.linear_conv_kernel_dim, vocab=t.vocab_size, tie_embeddings=t.tie_word_embeddings,
        mtp_layers=t.mtp_num_hidden_layers, num_experts=t.num_experts, top_k=t.num_experts_per_tok,
        moe_intermediate=t.moe_intermediate_size, shared_intermediate=t.shared_expert_intermediate_size,
        dense_intermediate=t.intermediate_size, vision=vision, text_prefix=cfg.text_prefix)


def shape_from_config(raw: dict) -> ModelShape:
    """config.json contents -> ModelShape; PlanError names bad fields (the engine's parser's message)."""
    try:
        return shape_of(parse_config(raw))
    except ConfigError as exc:
        raise PlanError(str(exc)) from None


def load_shape(model: str) -> tuple[str, ModelShape]:
    """--model: a preset name (with or without "Qwen3.5-") or a config.json path / folder."""
    key = preset_key(model)
    if key is not None:
        return f"Qwen3.5-{key}", shape_of(ModelConfig.from_name(key))
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise PlanError(f"--model {model!r}: not a preset ({', '.join(PRESETS)}) and no config.json there")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PlanError(f"--model {path}: not valid JSON ({exc})") from exc
    return str(path), shape_from_config(raw)


# ---------------------------------------------------------------------------------------------
# tensor inventory


@dataclass(frozen=True)
class TensorEntry:
    """``count`` tensors named ``name`` (``{e}`` stands for the expert index) of one shape."""

    name: str
    shape: tuple[int, ...]
    count: int = 1
    part: str = "text"  # "text", "vision" or "mtp"

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * self.count

    @property
    def module(self) -> str:
        return self.name.removesuffix(".weight").replace("{e}", "0")

    def names(self) -> list[str]:
        return [self.name.format(e=e) for e in range(self.count)] if "{e}" in self.name else [self.name]


def _decoder_layer(s: ModelShape, p: str, kind: str, part: str) -> list[TensorEntry]:
    D = s.hidden
    T = lambda name, *shape, count=1: TensorEntry(f"{p}.{name}", tuple(shape), count, part)  # noqa: E731
    out = [T("input_layernorm.weight", D), T("post_attention_layernorm.weight", D)]
    if kind == "linear_attention":
        Hv, vd = s.lin_v_heads, s.lin_v_dim
        out += [
            T("linear_attn.in_proj_qkv.weight", s.conv_dim, D), T("linear_attn.in_proj_z.weight", Hv * vd, D),
            T("linear_attn.in_proj_b.weight", Hv, D), T("linear_attn.in_proj_a.weight", Hv, D),
            T("linear_attn.conv1d.weight", s.conv_dim, 1, s.conv_kernel), T("linear_attn.dt_bias", Hv),
            T("linear_attn.A_log", Hv), T("linear_attn.norm.weight", vd), T("linear_attn.out_proj.weight", D, Hv * vd),
        ]
    else:
        q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
        out += [
            T("self_attn.q_proj.weight", 2 * q, D), T("self_attn.k_proj.weight", kv, D), T("self_attn.v_proj.weight", kv, D),
            T("self_attn.o_proj.weight", D, q), T("self_attn.q_norm.weight", s.head_dim), T("self_attn.k_norm.weight", s.head_dim),
        ]
    if s.is_moe:
        E, I, Is = s.num_experts, s.moe_intermediate, s.shared_intermediate
        out += [
            T("mlp.gate.weight", E, D),
            T("mlp.experts.{e}.gate_proj.weight", I, D, count=E), T("mlp.experts.{e}.up_proj.weight", I, D, count=E),
            T("mlp.experts.{e}.down_proj.weight", D, I, count=E),
            T("mlp.shared_expert.gate_proj.weight", Is, D), T("mlp.shared_expert.up_proj.weight", Is, D),
            T("mlp.shared_expert.down_proj.weight", D, Is), T("mlp.shared_expert_gate.weight", 1, D),
        ]
    else:
        If = s.dense_intermediate
        out += [T("mlp.gate_proj.weight", If, D), T("mlp.up_proj.weight", If, D), T("mlp.down_proj.weight", D, If)]
    return out


def tensor_inventory(s: ModelShape) -> list[TensorEntry]:
    """Every tensor of the checkpoint, with its name, shape and part."""
    D, pre = s.hidden, s.text_prefix
    inv = [TensorEntry(f"{pre}embed_tokens.weight", (s.vocab, D)), TensorEntry(f"{pre}norm.weight", (D,))]
    if not s.tie_embeddings:
        inv.append(TensorEntry("lm_head.weight", (s.vocab, D)))
    for i, kind in enumerate(s.layer_types):
        inv += _decoder_layer(s, f"{pre}layers.{i}", kind, "text")
    for i in range(s.mtp_layers):
        inv += _decoder_layer(s, f"mtp.layers.{i}", "full_attention", "mtp")
    if s.mtp_layers:
        inv += [TensorEntry("mtp.fc.weight", (D, 2 * D), 1, "mtp")] + [
            TensorEntry(f"mtp.{n}.weight", (D,), 1, "mtp") for n in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm")
        ]
    if s.vision:
        v = s.vision
        H, Iv, m2 = v["hidden_size"], v["intermediate_size"], v["spatial_merge_size"] ** 2
        V = lambda name, *shape: TensorEntry(f"model.visual.{name}", tuple(shape), 1, "vision")  # noqa: E731
        inv += [
            V("patch_embed.proj.weight", H, v["in_channels"], v["temporal_patch_size"], v["patch_size"], v["patch_size"]),
            V("patch_embed.proj.bias", H), V("pos_embed.weight", v["num_position_embeddings"], H),
        ]
        for b in range(v["depth"]):
            inv += [
                V(f"blocks.{b}.norm1.weight", H), V(f"blocks.{b}.norm1.bias", H),
                V(f"blocks.{b}.attn.qkv.weight", 3 * H, H), V(f"blocks.{b}.attn.qkv.bias", 3 * H),
                V(f"blocks.{b}.attn.proj.weight", H, H), V(f"blocks.{b}.attn.proj.bias", H),
                V(f"blocks.{b}.norm2.weight", H), V(f"blocks.{b}.norm2.bias", H),
                V(f"blocks.{b}.mlp.linear_fc1.weight", Iv, H), V(f"blocks.{b}.mlp.linear_fc1.bias", Iv),
                V(f"blocks.{b}.mlp.linear_fc2.weight", H, Iv), V(f"blocks.{b}.mlp.linear_fc2.bias", H),
            ]
        inv += [
            V("merger.norm.weight", H), V("merger.norm.bias", H),
            V("merger.linear_fc1.weight", H * m2, H * m2), V("merger.linear_fc1.bias", H * m2),
            V("merger.linear_fc2.weight", v["out_hidden_size"], H * m2), V("merger.linear_fc2.bias", v["out_hidden_size"]),
        ]
    return inv


QUANTS = ("nvfp4", "fp8", "bf16")


def entry_format(e: TensorEntry, quant: str, exclude: tuple[str, ...]) -> str:
    """How a checkpoint in ``quant`` stores this tensor: "nvfp4", "fp8" or "bf16"."""
    linear = e.name.endswith(".weight") and len(e.shape) == 2 and e.shape[-1] % 16 == 0
    if quant == "bf16" or not linear or is_excluded(e.module, exclude):
        return "bf16"
    return quant


def entry_bytes(e: TensorEntry, fmt: str) -> int:
    if fmt == "nvfp4":  # codes + E4M3 block scales + weight_scale_2 + input_scale
        return e.count * (e.numel // e.count // 2 + e.numel // e.count // 16 + 8)
    if fmt == "fp8":  # codes + weight_scale + input_scale
        return e.count * (e.numel // e.count + 8)
    return 2 * e.numel


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class PlanRow:
    item: str
    detail: str
    bytes: int
    resident: bool = True  # counted in the deployment total


DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4}


def memory_plan(
    s: ModelShape,
    quant: str,
    context: int,
    batch: int,
    *,
    preset: str = DEFAULT_PRESET,
    kv_dtype: str = "bf16",
    prefill_chunk: int = 2048,
    with_vision: bool = True,
    with_mtp: bool = False,
) -> list[PlanRow]:
    if quant not in QUANTS:
        raise PlanError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if preset not in EXCLUDE_PRESETS:
        raise PlanError(f"--preset {preset!r}: choose one of {', '.join(EXCLUDE_PRESETS)}")
    if kv_dtype not in DTYPE_BYTES:
        raise PlanError(f"--kv-dtype {kv_dtype!r}: choose one of {', '.join(DTYPE_BYTES)}")
    for name, value in (("--context", context), ("--batch", batch), ("--prefill-chunk", prefill_chunk)):
        if value <= 0:
            raise PlanError(f"{name} must be > 0, got {value}")
    exclude = EXCLUDE_PRESETS[preset]
    groups: dict[tuple[str, str], list[int]] = {}  # (part, format) -> [params, bytes]
    for e in tensor_inventory(s):
        fmt = entry_format(e, quant, exclude)
        g = groups.setdefault((e.part, fmt), [0, 0])
        g[0] += e.numel
        g[1] += entry_bytes(e, fmt)
    rows = []
    labels = {"text": "text weights", "vision": "vision tower weights", "mtp": "MTP head weights"}
    for (part, fmt), (params, nbytes) in sorted(groups.items(), key=lambda kv: (list(labels).index(kv[0][0]), kv[0][1])):
        resident = part == "text" or (part == "vision" and with_vision) or (part == "mtp" and with_mtp)
        note = "" if resident else " (on disk only)"
        rows.append(PlanRow(f"{labels[part]}, {fmt}", f"{params / 1e9:.3f} B params{note}", nbytes, resident))

    act = 2  # activations in bf16
    kv = batch * context * s.n_full * 2 * s.kv_heads * s.head_dim * DTYPE_BYTES[kv_dtype]
    rows.append(PlanRow(
        "KV cache", f"{s.n_full} full-attn layers x {batch} x {context} tok x 2 x {s.kv_heads}x{s.head_dim} {kv_dtype}", kv
    ))
    conv = s.conv_dim * (s.conv_kernel - 1) * act
    rec = s.lin_v_heads * s.lin_k_dim * s.lin_v_dim * 4
    rows.append(PlanRow(
        "DeltaNet states", f"{s.n_linear} layers x {batch} x (conv {s.conv_dim}x{s.conv_kernel - 1} + fp32 {s.lin_v_heads}x{s.lin_k_dim}x{s.lin_v_dim})",
        batch * s.n_linear * (conv + rec),
    ))
    D = s.hidden
    mixer = max(
        (s.conv_dim + s.lin_v_heads * s.lin_v_dim + 2 * s.lin_v_heads) + s.conv_dim + s.lin_v_heads * s.lin_v_dim if s.n_linear else 0,
        (2 * s.heads * s.head_dim + 2 * s.kv_heads * s.head_dim) + s.heads * s.head_dim if s.n_full else 0,
    )
    mlp = (s.top_k * 3 * s.moe_intermediate + 3 * s.shared_intermediate + 2 * s.num_experts) if s.is_moe else 3 * s.dense_intermediate
    tokens = batch * min(prefill_chunk, context)
    per_token = act * (2 * D + max(mixer, mlp))
    tile = 1024 * max(D, s.moe_intermediate, s.dense_intermediate, s.lin_v_heads * s.lin_v_dim, s.heads * s.head_dim) * act
    activations = tokens * per_token + batch * s.vocab * 4 + (tile if quant == "nvfp4" else 0)
    rows.append(PlanRow(
        "activations (est.)", f"prefill chunk {tokens} tok x {per_token} B/tok + logits + dequant tile", activations
    ))
    return rows


def format_table(title: str, rows: list[PlanRow]) -> str:
    width = max(len(r.item) for r in rows)
    dwidth = max(len(r.detail) for r in rows)
    lines = [title, f"{'item':<{width}}  {'detail':<{dwidth}}  {'GB':>9}  {'GiB':>9}"]
    lines += [f"{r.item:<{width}}  {r.detail:<{dwidth}}  {r.bytes / GB:>9.3f}  {r.bytes / GIB:>9.3f}" for r in rows]
    weights = sum(r.bytes for r in rows if r.resident and "weights" in r.item)
    disk = sum(r.bytes for r in rows if "weights" in r.item)
    total = sum(r.bytes for r in rows if r.resident)
    lines.append("-" * (width + dwidth + 26))
    for label, value in (("checkpoint on disk", disk), ("resident weights", weights), ("total resident", total)):
        lines.append(f"{label:<{width}}  {'':<{dwidth}}  {value / GB:>9.3f}  {value / GIB:>9.3f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwen-stack plan", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help=f"preset ({', '.join(PRESETS)}) or config.json path/folder")
    p.add_argument("--quant", required=True, help="weights: nvfp4, fp8 or bf16")
    p.add_argument("--context", type=int, default=32768,
                   help="tokens per sequence, prompt + output (default 32768; the table's title says which)")
    p.add_argument("--batch", type=int, default=1, help="concurrent sequences (default 1)")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"quantized-layer preset, as for quantize (default {DEFAULT_PRESET})")
    p.add_argument("--kv-dtype", default="bf16", help="KV cache dtype: bf16, fp16, fp8 or fp32 (default bf16)")
    p.add_argument("--prefill-chunk", type=int, default=2048, help="prefill tokens per step per sequence (default 2048)")
    p.add_argument("--no-vision", action="store_true", help="do not load the vision tower")
    p.add_argument("--with-mtp", action="store_true", help="count the MTP head as resident")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        name, shape = load_shape(args.model)
        rows = memory_plan(
            shape, args.quant, args.context, args.batch, preset=args.preset, kv_dtype=args.kv_dtype,
            prefill_chunk=args.prefill_chunk, with_vision=not args.no_vision, with_mtp=args.with_mtp,
        )
    except PlanError as exc:
        print(f"qwen-stack plan: {exc}", file=sys.stderr)
        return 2
    preset = f", preset {args.preset}" if args.quant != "bf16" else ""
    print(format_table(f"{name}: {args.quant}{preset}, context {args.context}, batch {args.batch}", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
