"""NVFP4 checkpoints in the ModelOpt (Hugging Face "unified") layout: write, read, exclusions.

On disk, per quantized linear ``X`` (safetensors, names as in the source checkpoint):

* ``X.weight``          uint8 [out, in/2]          two E2M1 codes per byte, even element low
* ``X.weight_scale``    float8_e4m3fn [out, in/16] block scales
* ``X.weight_scale_2``  float32 []                 global scale = amax / (6 * 448)
* ``X.input_scale``     float32 []                 activation global scale (see below)

plus ``hf_quant_config.json`` (``{"producer": ..., "quantization": {"quant_algo": "NVFP4",
"kv_cache_quant_algo": null, "group_size": 16, "exclude_modules": [...]}}``) and, in
``config.json``, the ``quantization_config`` block ModelOpt's export adds (``quant_method:
"modelopt"``, ``config_groups``, ``ignore``). Everything not quantized is copied unchanged.

Which layers stay in higher precision: presets of glob exclusions (``EXCLUDE_PRESETS``). The
default, ``all-linears``, is ModelOpt's ``NVFP4_DEFAULT_CFG`` behaviour (every linear except its
default-disabled router / shared-expert gate / conv1d / lm_head) plus the layers NVIDIA's Qwen3.5
NVFP4 releases keep in BF16 (embeddings, vision tower, MTP head, DeltaNet a/b). It is the layout
that reproduces NVIDIA's published size for Qwen3.6-35B-A3B-NVFP4: 3.06x smaller than BF16, and
``qwen-stack plan`` gives 3.05x for it against 2.83x for ``mlp-only``.

* quantized: routed experts (``mlp.experts.*``, >90% of an MoE model's weights; each token reads
  only K of E of them, and saving their memory is the point of the format), the shared expert and
  dense MLPs, attention ``q/k/v/o_proj`` and the large DeltaNet projections ``in_proj_qkv``,
  ``in_proj_z``, ``out_proj`` (ordinary GEMMs over the hidden state).
* kept: the router ``mlp.gate`` (a 4-bit error flips top-k choices; it is tiny),
  ``mlp.shared_expert_gate`` ([1, D] sigmoid gate), DeltaNet ``in_proj_a`` / ``in_proj_b`` (they
  drive the per-head decay and beta of the recurrence, whose errors compound over the sequence;
  [Hv, D], tiny), ``conv1d`` (not a GEMM), ``embed_tokens`` and ``lm_head`` (they shape the input
  and output distributions directly), the vision tower ``visual`` (small; image features are
  sensitive) and the multi-token-prediction head ``mtp`` (draft model only).

``lm_head`` has its own switch (``quantize_checkpoint(lm_head=True)``, ``qwen-stack quantize --lm-head
nvfp4``), whatever the patterns say: at batch 1 it is the largest single read of a decode step (vocab x
hidden; 55% of the NVFP4 bench model's bytes per token when kept in bf16), and the engine runs it through
the fused kernel when it is packed. Default: kept. Measured on the trained brain (``bench/nvfp4_lm_head.py``:
models/brain-nvfp4, 20 held-out conversations, 9,935 assistant positions, teacher-forced): its NVFP4 error
(per-layer 0.094) reaches the logits undamped (relative L2 0.054, KL 5.5e-4 nats) and changes 0.72% of the
argmax tokens (teacher-forced accuracy 0.9289 -> 0.9281). Small, but measured only on a 1,352-row vocabulary
(a real one has 248K rows, more near-ties), and ModelOpt and every published NVFP4 Qwen checkpoint keep it;
so it is opt-in, for the decode speed (bench/engine.py --quant: compiled decode ~1.5x bf16 without it,
~2.2-2.5x with it).

``mlp-only`` additionally keeps attention and the whole DeltaNet block (``NVFP4_MLP_ONLY_CFG``, the
layout of some NVIDIA Qwen3.5 NVFP4 cards, e.g. the 9B); ``experts-only`` quantizes the routed
experts alone (the layout of community Qwen3.5-397B NVFP4 checkpoints).

Non-linear tensors (1-D norms, conv, embeddings) are never candidates; a 2-D ``*.weight`` whose
input width is not a multiple of 16 stays as it is (reported).

The writer never writes what the engine's loader refuses (``plan_quantization``): the routed experts
of one layer are one fused module, so they are quantized all together or kept all together (one
expert's ``down_proj`` with an input width not a multiple of 16, or one excluded expert, keeps the
whole group, reported with the reason; padding, as ModelOpt does, would change the shapes
config.json implies); and a 2-D weight the engine builds as a plain layer whatever the checkpoint
holds (``embed_tokens``, the vision tower) stays as it is even when no exclusion names it. After writing, the output is checked with the loader's own presence-and-shape pass.

``input_scale``: ModelOpt calibrates it from activations for W4A4 kernels. This writer does no
calibration; it stores 1.0 and marks the file ``"activation_calibration": "none"`` in the
producer block. The engine here is weight-only and never reads it; a W4A4 runtime needs a
calibrated checkpoint.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .nvfp4 import BLOCK_SIZE, NVFP4Tensor, dequantize_nvfp4, quantize_nvfp4

PRODUCER = {"name": "qwen_stack", "version": "0.1.0", "activation_calibration": "none"}

# glob patterns (fnmatch) over module names, i.e. tensor names without ".weight"
SENSITIVE_EXCLUDE: tuple[str, ...] = (
    "lm_head",
    "*embed_tokens",
    "*.mlp.gate",
    "*.mlp.shared_expert_gate",
    "*.linear_attn.in_proj_a",
    "*.linear_attn.in_proj_b",
    "*.linear_attn.conv1d",
    "*visual*",
    "mtp*",
    "*.mtp.*",
)
_MIXERS = ("*.self_attn.*", "*.linear_attn.*")
_NON_EXPERT_MLP = ("*.mlp.shared_expert.*", "*.mlp.gate_proj", "*.mlp.up_proj", "*.mlp.down_proj")
EXCLUDE_PRESETS: dict[str, tuple[str, ...]] = {
    "mlp-only": SENSITIVE_EXCLUDE + _MIXERS,
    "all-linears": SENSITIVE_EXCLUDE,
    "experts-only": SENSITIVE_EXCLUDE + _MIXERS + _NON_EXPERT_MLP,
}
DEFAULT_PRESET = "all-linears"
DEFAULT_EXCLUDE = EXCLUDE_PRESETS[DEFAULT_PRESET]
LM_HEAD = "lm_head"     # the output layer's module name (the same in every Qwen3.5 layout)


class CheckpointError(ValueError):
    """A checkpoint directory or file that cannot be read or written as asked."""


# ---------------------------------------------------------------------------------------------
# exclusions


def is_excluded(module: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when module matches an exact name, a glob, or a ModelOpt prefix wildcard ("a.b*")."""
    return any(module == p or fnmatch.fnmatchcase(module, p) for p in patterns)


# ---------------------------------------------------------------------------------------------
# config files


@dataclass(frozen=True)
class NVFP4QuantConfig:
    quant_algo: str
    group_size: int
    exclude_modules: tuple[str, ...]
    producer: dict = field(default_factory=dict)


def hf_quant_config(exclude_modules: list[str], producer: dict | None = None) -> dict:
    """The hf_quant_config.json body, laid out as ModelOpt's export writes it."""
    return {
        "producer": dict(producer or PRODUCER),
        "quantization": {
            "quant_algo": "NVFP4",
            "kv_cache_quant_algo": None,
            "group_size": BLOCK_SIZE,
            "exclude_modules": sorted(exclude_modules),
        },
    }


def config_json_quantization(hf_cfg: dict) -> dict:
    """config.json's ``quantization_config``, in ModelOpt's llm-compressor-style layout."""
    q = hf_cfg["quantization"]
    group = {"dynamic": False, "num_bits": 4, "type": "float", "group_size": q["group_size"]}
    return {
        "config_groups": {"group_0": {"input_activations": dict(group), "weights": dict(group), "targets": ["Linear"]}},
        "ignore": list(q["exclude_modules"]),
        "quant_algo": q["quant_algo"],
        "producer": hf_cfg["producer"],
        "quant_method": "modelopt",
    }


def read_quant_config(model_dir: str | os.PathLike) -> NVFP4QuantConfig | None:
    """NVFP4 config of a checkpoint dir, from hf_quant_config.json or config.json; None if unquantized.

    Raises CheckpointError for a quantized checkpoint in another format (this reader is NVFP4-only).
    """
    d = Path(model_dir)
    hf_path, cfg_path = d / "hf_quant_config.json", d / "config.json"
    if hf_path.exists():
        body = _read_json(hf_path)
        q = body.get("quantization")
        if not isinstance(q, dict):
            raise CheckpointError(f"{hf_path}: no 'quantization' object")
        algo, group, exclude = q.get("quant_algo"), q.get("group_size", BLOCK_SIZE), q.get("exclude_modules") or []
        producer = body.get("producer") or {}
    elif cfg_path.exists():
        qc = _read_json(cfg_path).get("quantization_config")
        if qc is None:
            return None
        if qc.get("quant_method") != "modelopt":
            raise CheckpointError(
                f"{cfg_path}: quantization_config.quant_method is {qc.get('quant_method')!r}; only ModelOpt NVFP4 is supported"
            )
        algo, exclude, producer = qc.get("quant_algo"), qc.get("ignore") or [], qc.get("producer") or {}
        groups = [g.get("weights", {}).get("group_size") for g in (qc.get("config_groups") or {}).values()]
        group = next((g for g in groups if g), BLOCK_SIZE)
    else:
        raise CheckpointError(f"{d}: no config.json or hf_quant_config.json")
    where = hf_path if hf_path.exists() else cfg_path
    if not isinstance(exclude, list) or not all(isinstance(m, str) for m in exclude):
        raise CheckpointError(f"{where}: exclude_modules / ignore must be a list of module names, got {exclude!r}")
    if isinstance(group, bool) or not isinstance(group, int):
        raise CheckpointError(f"{where}: group_size must be an integer, got {group!r}")
    if algo != "NVFP4":
        raise CheckpointError(f"{d}: quant_algo is {algo!r}; only 'NVFP4' is supported")
    if group != BLOCK_SIZE:
        raise CheckpointError(f"{d}: group_size {group} not supported (NVFP4 uses {BLOCK_SIZE})")
    return NVFP4QuantConfig(algo, int(group), tuple(exclude), producer)


def _read_json(path: Path) -> dict:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise CheckpointError(f"{path}: must hold a JSON object")
    return body


def _safe_open(f: Path):
    try:
        return safe_open(str(f), framework="pt")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...: all mean "cannot read"
        raise CheckpointError(f"{f}: cannot be read as safetensors (truncated or not a safetensors file?): "
                              f"{exc}") from exc


def _get_tensor(handle, f: Path, name: str) -> torch.Tensor:
    try:
        return handle.get_tensor(name)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{f}: cannot read tensor {name!r}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# reading


def safetensors_files(model_dir: str | os.PathLike) -> list[Path]:
    """The checkpoint's shard files, via model.safetensors.index.json when present."""
    d = Path(model_dir)
    index = d / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(_read_json(index).get("weight_map", {}).values()))
        files = [d / n for n in names]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise CheckpointError(f"{index}: shard files missing: {missing}")
        return files
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{d}: no *.safetensors files")
    return files


class NVFP4CheckpointReader:
    """Lazy tensor access to a (possibly sharded) checkpoint, NVFP4-aware.

    ``quantized_modules`` are the modules with a uint8 ``weight`` and ``weight_scale`` /
    ``weight_scale_2``; ``nvfp4(module)`` returns their packed tensor (validated), ``tensor(name)``
    any stored tensor as is, ``dense(name)`` a stored tensor with quantized weights dequantized.
    """

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = Path(model_dir)
        self.quant_config = read_quant_config(self.model_dir)
        self._where: dict[str, Path] = {}
        self._handles: dict[Path, Any] = {}
        for f in safetensors_files(self.model_dir):
            h = self._open(f)
            for k in h.keys():
                self._where[k] = f
        suffix = ".weight_scale_2"
        self.quantized_modules = sorted(
            k[: -len(suffix)] for k in self._where if k.endswith(suffix) and self.is_quantized(k[: -len(suffix)])
        )

    def _open(self, f: Path):
        if f not in self._handles:
            self._handles[f] = _safe_open(f)
        return self._handles[f]

    def keys(self) -> list[str]:
        return sorted(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self._where[name]).get_slice(name).get_shape())

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self._where:
            raise KeyError(f"{self.model_dir}: no tensor {name!r}")
        return _get_tensor(self._open(self._where[name]), self._where[name], name)

    def is_quantized(self, module: str) -> bool:
        return f"{module}.weight_scale_2" in self._where and f"{module}.weight" in self._where

    def nvfp4(self, module: str) -> NVFP4Tensor:
        """Packed weight of a quantized module, checked against the NVFP4 layout."""
        w, s, g = (self.tensor(f"{module}.{n}") for n in ("weight", "weight_scale", "weight_scale_2"))
        if w.dtype == torch.int8:  # some exporters store the packed bytes as I8
            w = w.view(torch.uint8)
        if s.dtype == torch.uint8:  # ... or the E4M3 scales as raw bytes
            s = s.view(torch.float8_e4m3fn)
        if w.dtype != torch.uint8 or s.dtype != torch.float8_e4m3fn or w.dim() != 2:
            raise CheckpointError(
                f"{module}: expected weight uint8 [out, in/2] and weight_scale float8_e4m3fn, got "
                f"{w.dtype} {tuple(w.shape)} and {s.dtype} {tuple(s.shape)}"
            )
        if s.shape != (w.shape[0], w.shape[1] * 2 // BLOCK_SIZE):
            raise CheckpointError(
                f"{module}: weight_scale shape {tuple(s.shape)} does not match weight {tuple(w.shape)} "
                f"(expected {(w.shape[0], w.shape[1] * 2 // BLOCK_SIZE)})"
            )
        if g.numel() != 1:
            raise CheckpointError(f"{module}: weight_scale_2 must be one value, has shape {tuple(g.shape)}")
        return NVFP4Tensor(w, s, g.float().reshape(()))

    def dense(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor as a float one: a quantized module's ``.weight`` is dequantized."""
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module is not None and self.is_quantized(module):
            return dequantize_nvfp4(self.nvfp4(module), dtype or torch.float32)
        t = self.tensor(name)
        return t if dtype is None else t.to(dtype)


# ---------------------------------------------------------------------------------------------
# writing


@dataclass
class QuantizeReport:
    """What ``quantize_checkpoint`` did: tensors by kind, bytes, per-layer relative error."""

    quantized: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # 2-D linear weights kept by an exclusion
    not_divisible: list[str] = field(default_factory=list)  # 2-D weights whose input width % 16 != 0
    # kept so that the loader accepts the output: routed experts kept with their group (module -> why),
    # and weights the engine builds as plain layers (embeddings, lm_head, vision tower)
    group_kept: dict[str, str] = field(default_factory=dict)
    engine_plain: list[str] = field(default_factory=list)
    copied: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_in_quantized: int = 0  # source bytes of the weights that were quantized
    bytes_out_quantized: int = 0  # their bytes in NVFP4 (codes + scales + scalars)
    rel_error: dict[str, float] = field(default_factory=dict)


class _ShardWriter:
    """Accumulates tensors and writes model-0000i-of-0000N.safetensors plus the index."""

    def __init__(self, out_dir: Path, shard_bytes: int):
        self.out_dir, self.shard_bytes = out_dir, shard_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.shards: list[list[str]] = []
        self.total = 0

    def add(self, name: str, t: torch.Tensor) -> None:
        n = t.numel() * t.element_size()
        if self.pending and self.pending_bytes + n > self.shard_bytes:
            self._flush()
        self.pending[name] = t.contiguous()
        self.pending_bytes += n
        self.total += n

    def _flush(self) -> None:
        i = len(self.shards)
        save_file(self.pending, str(self.out_dir / f".shard-{i}.tmp"), metadata={"format": "pt"})
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        if self.pending or not self.shards:
            self._flush()
        n = len(self.shards)
        if n == 1:
            os.replace(self.out_dir / ".shard-0.tmp", self.out_dir / "model.safetensors")
            return
        weight_map = {}
        for i, names in enumerate(self.shards):
            fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.replace(self.out_dir / f".shard-{i}.tmp", self.out_dir / fname)
            weight_map.update({k: fname for k in names})
        index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


_EXPERT = re.compile(r"^(?P<group>.*\.experts)\.\d+\.(?:gate_proj|up_proj|down_proj)$")
_FLOAT_DTYPES = ("BF16", "F16", "F32", "F64")    # safetensors dtype names of quantizable sources


def engine_module_kinds(model_dir: str | os.PathLike) -> tuple[set[str], set[str]] | None:
    """(modules the engine may load in NVFP4, modules it always builds as plain layers), as checkpoint
    module names, from the model config.json describes (built on the meta device); None when config.json
    does not describe a model the engine runs (then nothing is restricted)."""
    from .config import ConfigError, load_config
    from .loader import checkpoint_name
    from .model import LayerBuilders, Qwen35ForGeneration, plain_experts, plain_lm_head, plain_linear

    try:
        cfg = load_config(model_dir)
    except ConfigError:
        return None
    flexible: set[str] = set()

    def linear(name, in_features, out_features, bias):
        flexible.add(cfg.text_prefix + name)
        return plain_linear(name, in_features, out_features, bias)

    def experts(name, num_experts, hidden, intermediate):
        flexible.update(f"{cfg.text_prefix}{name}.{e}.{p}" for e in range(num_experts)
                        for p in ("gate_proj", "up_proj", "down_proj"))
        return plain_experts(name, num_experts, hidden, intermediate)

    def lm_head(hidden, vocab):
        flexible.add(LM_HEAD)
        return plain_lm_head(hidden, vocab)

    with torch.device("meta"):
        model = Qwen35ForGeneration(cfg, LayerBuilders(linear=linear, experts=experts, lm_head=lm_head))
    loaded = {checkpoint_name(cfg, n)[: -len(".weight")] for n, _ in model.named_parameters() if n.endswith(".weight")}
    if cfg.text.tie_word_embeddings:
        loaded.add(cfg.text_prefix + "embed_tokens")
    return flexible, loaded - flexible


def plan_quantization(tensors: dict[str, tuple[tuple[int, ...], str]], exclude, engine_kinds=None,
                      lm_head: bool = False) -> dict[str, str]:
    """tensor name -> (shape, safetensors dtype) ==> module -> "nvfp4" or the reason it stays in source precision
    ("excluded", "not_divisible", "engine_plain", or "group: <why>" for routed experts kept with their group).
    Only 2-D floating ``*.weight`` tensors are candidates. ``lm_head`` alone decides the output layer's fate
    (in NVFP4 when true, else "excluded"), whatever the patterns say."""
    plain = engine_kinds[1] if engine_kinds else set()
    plan: dict[str, str] = {}
    for name, (shape, dtype) in tensors.items():
        if len(shape) != 2 or not name.endswith(".weight") or dtype not in _FLOAT_DTYPES:
            continue
        module = name[: -len(".weight")]
        excluded = not lm_head if module == LM_HEAD else is_excluded(module, exclude)
        plan[module] = ("excluded" if excluded else "engine_plain" if module in plain else
                        "not_divisible" if shape[-1] % BLOCK_SIZE else "nvfp4")
    groups: dict[str, list[str]] = {}
    for module in plan:
        m = _EXPERT.match(module)
        if m:
            groups.setdefault(m["group"], []).append(module)
    for group, members in groups.items():
        kept = [m for m in members if plan[m] != "nvfp4"]
        if kept and len(kept) < len(members):      # the loader fuses a group: one format for all of it
            why = f"group: {kept[0]} is {plan[kept[0]].replace('_', ' ')}, so all {len(members)} expert weights of {group} stay"
            for m in members:
                if plan[m] == "nvfp4":
                    plan[m] = why
    return plan


def _tied_embedding(src: Path, tensors: dict) -> str:
    """The embedding matrix a tied lm_head reads (checkpoint name), for quantizing lm_head from it."""
    from .config import ConfigError, load_config

    try:
        cfg = load_config(src)
    except ConfigError as exc:
        raise CheckpointError(f"--model {src}: no lm_head.weight, and config.json does not say what ties it: {exc}") from exc
    name = f"{cfg.text_prefix}embed_tokens.weight"
    if not cfg.text.tie_word_embeddings or name not in tensors:
        raise CheckpointError(f"--model {src}: no lm_head.weight to quantize (and no tied {name})")
    if tensors[name][1] not in _FLOAT_DTYPES or tensors[name][0][-1] % BLOCK_SIZE:
        raise CheckpointError(f"lm_head cannot be quantized: the tied {name} {tensors[name]} is not a float "
                              f"matrix of a width divisible by {BLOCK_SIZE}")
    return name


def check_loadable(model_dir: str | os.PathLike) -> None:
    """The loader's presence-and-shape pass over an NVFP4 checkpoint (no data read); CheckpointError if it
    would refuse the folder. A folder whose config.json the engine does not run is not checked."""
    from .config import ConfigError, load_config
    from .loader import CheckpointError as LoaderError
    from .loader import FusedExpertsSource, SafetensorsSource, load_model
    from .nvfp4_loader import ModelOptLayoutSource, nvfp4_layer_builders

    try:
        cfg = load_config(model_dir)
    except ConfigError:
        return
    try:
        source = FusedExpertsSource(ModelOptLayoutSource(SafetensorsSource(model_dir)))
        load_model(model_dir, builders=nvfp4_layer_builders(source, cfg.text_prefix), source=source,
                   progress=False, check_only=True)
    except (LoaderError, ValueError) as exc:
        raise CheckpointError(f"{model_dir}: the written checkpoint would not load: {exc}") from exc


def quantize_checkpoint(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    exclude: tuple[str, ...] | list[str] = DEFAULT_EXCLUDE,
    *,
    progress: Callable[[str], None] | None = None,
    shard_bytes: int = 4 << 30,
    measure_error: bool = True,
    overwrite: bool = False,
    lm_head: bool = False,
) -> QuantizeReport:
    """Write an NVFP4 (ModelOpt layout) copy of a bf16/fp16/fp32 safetensors checkpoint.

    Streams one tensor at a time (peak memory ~ one shard of output plus one source tensor).
    Non-safetensors files (config, tokenizer, processor) are copied; config.json gains
    ``quantization_config``. Raises CheckpointError on bad directories or an already quantized source.

    lm_head: the output layer in NVFP4 too (else kept, as ModelOpt does). Recorded as every quantized module is:
    ``lm_head`` is then absent from ``exclude_modules`` / ``ignore`` and stored as codes and scales. A model that
    ties lm_head to the embeddings gets its own packed ``lm_head.weight`` (quantized from the embedding matrix,
    which stays as it is for the lookup) and ``tie_word_embeddings: false`` in config.json.
    """
    src, dst = Path(model_dir), Path(out_dir)
    say = progress or (lambda _msg: None)
    if not src.is_dir():
        raise CheckpointError(f"--model {src}: not a directory")
    if src.resolve() == dst.resolve():
        raise CheckpointError("--out must differ from --model")
    if (src / "config.json").exists() or (src / "hf_quant_config.json").exists():
        try:
            already = read_quant_config(src) is not None
        except CheckpointError:  # quantized in another format
            already = True
        if already:
            raise CheckpointError(f"--model {src}: already quantized; give a bf16/fp16/fp32 checkpoint")
    files = safetensors_files(src)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise CheckpointError(f"--out {dst}: exists and is not empty")
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in ("model.safetensors.index.json", "hf_quant_config.json"):
            shutil.copy2(f, dst / f.name)

    report = QuantizeReport()
    writer = _ShardWriter(dst, shard_bytes)
    handles: dict[Path, Any] = {f: _safe_open(f) for f in files}
    names = [(f, k) for f in files for k in handles[f].keys()]
    tensors = {}
    for f, k in names:
        try:
            sl = handles[f].get_slice(k)
            tensors[k] = (tuple(sl.get_shape()), sl.get_dtype())
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{f}: cannot read tensor {k!r}: {exc}") from exc
    plan = plan_quantization(tensors, tuple(exclude), engine_module_kinds(src), lm_head=lm_head)
    tied_source = None                               # the embedding matrix a tied lm_head is quantized from
    if lm_head and f"{LM_HEAD}.weight" not in tensors:
        tied_source = _tied_embedding(src, tensors)
    elif lm_head and plan.get(LM_HEAD) != "nvfp4":
        raise CheckpointError(f"lm_head cannot be quantized: {plan.get(LM_HEAD, 'not a 2-D floating weight')}")
    for module, why in plan.items():
        if why == "excluded":
            report.excluded.append(module)
        elif why == "not_divisible":
            report.not_divisible.append(module)
        elif why == "engine_plain":
            report.engine_plain.append(module)
        elif why != "nvfp4":
            report.group_kept[module] = why[len("group: "):]
    for why in sorted(set(report.group_kept.values())):
        say(f"kept in source precision: {why}")
    say(f"quantizing {len(names)} tensors from {src} ({len(files)} shard(s)) to NVFP4 in {dst}")

    def write_nvfp4(module: str, t: torch.Tensor, where: str) -> None:
        q = quantize_nvfp4(t)
        writer.add(f"{module}.weight", q.packed)
        writer.add(f"{module}.weight_scale", q.block_scale)
        writer.add(f"{module}.weight_scale_2", q.global_scale.reshape(()))
        writer.add(f"{module}.input_scale", torch.ones((), dtype=torch.float32))
        report.quantized.append(module)
        out_bytes = q.nbytes() + 4
        report.bytes_in_quantized += t.numel() * t.element_size()
        report.bytes_out_quantized += out_bytes
        report.bytes_out += out_bytes
        msg = f"{where} {list(t.shape)} -> nvfp4"
        if measure_error:
            tf = t.float()
            err = float((dequantize_nvfp4(q) - tf).norm() / tf.norm().clamp_min(1e-30))
            report.rel_error[module] = err
            msg += f"  rel_err {err:.4f}"
        say(msg)

    for i, (f, name) in enumerate(names):
        t = _get_tensor(handles[f], f, name)
        nbytes = t.numel() * t.element_size()
        report.bytes_in += nbytes
        module = name[: -len(".weight")]
        shape = tuple(t.shape)
        if name == tied_source:
            write_nvfp4(LM_HEAD, t, f"[{i + 1}/{len(names)}] {LM_HEAD}.weight (tied: from {name})")
        if name.endswith(".weight") and module in plan:
            if plan[module] == "not_divisible":
                say(f"[{i + 1}/{len(names)}] {name}: kept, input width {shape[-1]} is not a multiple of {BLOCK_SIZE}")
            elif plan[module] == "engine_plain":
                say(f"[{i + 1}/{len(names)}] {name}: kept, the engine builds it as a plain layer")
            elif plan[module] == "nvfp4":
                write_nvfp4(module, t, f"[{i + 1}/{len(names)}] {name}")
                continue
        writer.add(name, t)
        report.copied += 1
        report.bytes_out += nbytes
    writer.close()

    exclude_modules = sorted(set(report.excluded) | set(report.not_divisible) | set(report.group_kept)
                             | set(report.engine_plain))
    hf_cfg = hf_quant_config(exclude_modules)
    (dst / "hf_quant_config.json").write_text(json.dumps(hf_cfg, indent=4))
    cfg_path = dst / "config.json"
    if cfg_path.exists():
        cfg = _read_json(cfg_path)
        cfg["quantization_config"] = config_json_quantization(hf_cfg)
        if lm_head:                                  # lm_head is its own (packed) tensor now, also for transformers
            for section in (cfg, cfg.get("text_config")):
                if isinstance(section, dict) and (section is cfg or "tie_word_embeddings" in section):
                    section["tie_word_embeddings"] = False
        cfg_path.write_text(json.dumps(cfg, indent=2))
    check_loadable(dst)
    say(
        f"done: {len(report.quantized)} linears in NVFP4, {len(exclude_modules)} kept, {report.copied} tensors copied; "
        f"{report.bytes_in / 1e6:.1f} MB -> {report.bytes_out / 1e6:.1f} MB"
    )
    return report
