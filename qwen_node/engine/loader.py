"""Load a Qwen3.5 checkpoint folder (config.json + safetensors) into our model, lazily.

THE LOAD-TIME HOOK (for NVFP4 and other weight formats)
--------------------------------------------------------
1. Tensors come from a `TensorSource`: a "checkpoint tensor name -> tensor" view with `has(name)`,
   `shape(name)` and `get(name)`. `SafetensorsSource` reads `model.safetensors` or the shards listed in
   `model.safetensors.index.json` through memory-mapped `safe_open` handles, one tensor at a time.
   `FusedExpertsSource` wraps any source and adds *virtual* names for fused routed experts:
       <p>.experts.gate_up_proj[.<leaf>]  = stack_e(cat(<p>.experts.{e}.gate_proj.<leaf>, <p>.experts.{e}.up_proj.<leaf>))
       <p>.experts.down_proj[.<leaf>]     = stack_e(<p>.experts.{e}.down_proj.<leaf>)
   (<leaf> defaults to "weight"; 0-d tensors such as weight_scale_2 are stacked, giving [E, 2] / [E]).
   A format that stores extra tensors (weight_scale, weight_scale_2, input_scale) needs no change here:
   its modules simply declare parameters with those names.
2. Every linear layer of the decoder (attention q/k/v/o, DeltaNet in_proj_qkv/z/b/a and out_proj,
   router, shared expert and its gate) is created by `builders.linear(name, in, out, bias)` and the routed
   experts by `builders.experts(name, E, D, I)` (see model.LayerBuilders); `name` is the module name
   relative to the text model, e.g. "layers.3.self_attn.q_proj". Pass `builders=` to `load_model` to
   return, e.g., an NVFP4 linear (packed uint8 `weight`, `weight_scale`, `weight_scale_2`, `input_scale`)
   for the names the checkpoint quantizes; its `forward(x)` must behave like `nn.Linear`'s.
3. The model is built on the meta device under the target dtype, then each parameter (and persistent
   buffer) of each module is read from the source under `checkpoint_name(param_name)` and cast to the dtype
   the module declared for it. So a quantized module keeps uint8 / float8 / fp32 tensors by declaring
   them with those dtypes; plain modules get the requested model dtype.
Loading checks every tensor's presence and shape against the model built from config.json before
reading any data, and fails with `CheckpointError` naming the tensor.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Iterable, Protocol

import torch
from torch import nn

from .config import ModelConfig, load_config
from .model import LayerBuilders, Qwen35ForGeneration


class CheckpointError(ValueError):
    """A tensor is missing, has the wrong shape, or the checkpoint files are inconsistent or unreadable;
    the message names the file."""


class TensorSource(Protocol):
    def names(self) -> Iterable[str]: ...
    def has(self, name: str) -> bool: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def get(self, name: str) -> torch.Tensor: ...


class SafetensorsSource:
    """Lazy, memory-mapped view of model.safetensors or an index of shards. Unreadable files (truncated,
    not safetensors) and index entries their shard lacks raise CheckpointError naming the file."""

    def __init__(self, model_dir: str | Path):
        from safetensors import safe_open
        d = Path(model_dir)
        self._dir = d
        index = d / "model.safetensors.index.json"
        single = d / "model.safetensors"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                raise CheckpointError(f"{index}: not a JSON object ({exc})") from exc
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise CheckpointError(f"{index}: no 'weight_map' object of tensor name -> shard file")
            files = sorted(set(weight_map.values()))
        elif single.is_file():
            weight_map, files = None, [single.name]
        else:
            raise CheckpointError(f"{d}: neither model.safetensors nor model.safetensors.index.json found")
        self._handles = {}
        for f in files:
            if not (d / f).is_file():
                raise CheckpointError(f"{d / f}: shard listed in the index is missing")
            try:
                self._handles[f] = safe_open(str(d / f), framework="pt")
            except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...: all mean "cannot read"
                raise CheckpointError(f"{d / f}: cannot be read as safetensors (truncated or not a safetensors "
                                      f"file?): {exc}") from exc
        if weight_map is None:
            weight_map = {k: files[0] for k in self._handles[files[0]].keys()}
        else:
            for f, h in self._handles.items():
                stored = set(h.keys())
                lacking = [k for k, v in weight_map.items() if v == f and k not in stored]
                if lacking:
                    raise CheckpointError(f"{d / f}: lacks tensor {lacking[0]!r} that {index.name} places there"
                                          + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""))
        self._where = weight_map

    def names(self):
        return self._where.keys()

    def has(self, name):
        return name in self._where

    def _read(self, name, what):
        f = self._where[name]
        try:
            return what(self._handles[f])
        except Exception as exc:  # noqa: BLE001 - the file, not the caller, is at fault
            raise CheckpointError(f"{self._dir / f}: cannot read tensor {name!r}: {exc}") from exc

    def shape(self, name):
        return self._read(name, lambda h: tuple(h.get_slice(name).get_shape()))

    def get(self, name):
        return self._read(name, lambda h: h.get_tensor(name))


_FUSED = re.compile(r"^(?P<p>.*\.experts)\.(?P<kind>gate_up_proj|down_proj)(?:\.(?P<leaf>\w+))?$")


class FusedExpertsSource:
    """Adds virtual fused-expert names on top of a source that stores experts one by one (as Qwen publishes)."""

    def __init__(self, base: TensorSource):
        self.base = base

    def names(self):
        return self.base.names()

    def _parts(self, name):
        """Per-expert names that make up a virtual fused tensor: list over experts of lists of names."""
        m = _FUSED.match(name)
        if m is None:
            return None
        p, kind, leaf = m["p"], m["kind"], m["leaf"] or "weight"
        parts = []
        e = 0
        while self.base.has(f"{p}.{e}.down_proj.{leaf}") or self.base.has(f"{p}.{e}.gate_proj.{leaf}"):
            if kind == "gate_up_proj":
                parts.append([f"{p}.{e}.gate_proj.{leaf}", f"{p}.{e}.up_proj.{leaf}"])
            else:
                parts.append([f"{p}.{e}.down_proj.{leaf}"])
            e += 1
        return parts or None

    def has(self, name):
        return self.base.has(name) or self._parts(name) is not None

    def missing_parts(self, name, num_experts: int) -> list[str]:
        """Per-expert tensors a fused name needs that the checkpoint lacks."""
        m = _FUSED.match(name)
        if m is None:
            return [name]
        p, kind, leaf = m["p"], m["kind"], m["leaf"] or "weight"
        projs = ["gate_proj", "up_proj"] if kind == "gate_up_proj" else ["down_proj"]
        return [f"{p}.{e}.{pr}.{leaf}" for e in range(num_experts) for pr in projs
                if not self.base.has(f"{p}.{e}.{pr}.{leaf}")]

    def shape(self, name):
        if self.base.has(name):
            return self.base.shape(name)
        parts = self._parts(name)
        first = [self.base.shape(n) for n in parts[0]]              # shapes of one expert's pieces
        if len(first) == 1:
            inner = first[0]
        elif first[0] == ():
            inner = (len(first),)
        else:
            inner = (sum(s[0] for s in first),) + tuple(first[0][1:])
        return (len(parts),) + tuple(inner)

    def get(self, name):
        if self.base.has(name):
            return self.base.get(name)
        rows = []
        for names in self._parts(name):
            ts = [self.base.get(n) for n in names]
            rows.append(torch.stack(ts) if ts[0].dim() == 0 and len(ts) > 1 else
                        ts[0] if len(ts) == 1 else torch.cat(ts, dim=0))
        return torch.stack(rows)


def checkpoint_name(cfg: ModelConfig, param: str) -> str:
    """Our parameter name -> the tensor name in the checkpoint."""
    if param.startswith("text."):
        return cfg.text_prefix + param[len("text."):]
    if param.startswith("visual."):
        return "model.visual." + param[len("visual."):]
    return param  # lm_head.weight


def _tensors_of(model: nn.Module):
    """(module, local name, full name, tensor) for every parameter and persistent buffer."""
    for mod_name, mod in model.named_modules():
        for local, t in list(mod._parameters.items()) + [
                (n, b) for n, b in mod._buffers.items() if n not in mod._non_persistent_buffers_set]:
            if t is not None:
                yield mod, local, f"{mod_name}.{local}" if mod_name else local, t


def hf_tensors(model):
    """(checkpoint name, tensor) for every tensor the engine model's checkpoint holds, in transformers' names,
    routed experts one by one as Qwen publishes them. The tensors are views of the model's own (detached):
    writing into one writes the model's weight. The inverse of loading: train-brain saves through it."""
    for _, _, full, t in _tensors_of(model):
        name = checkpoint_name(model.config, full)
        t = t.detach()
        m = _FUSED.match(name)
        if m is None:
            yield name, t
            continue
        half = t.shape[1] // 2
        for e in range(t.shape[0]):          # gate rows first in the fused gate_up_proj (engine/model.py)
            if m["kind"] == "gate_up_proj":
                yield f"{m['p']}.{e}.gate_proj.weight", t[e, :half]
                yield f"{m['p']}.{e}.up_proj.weight", t[e, half:]
            else:
                yield f"{m['p']}.{e}.down_proj.weight", t[e]


def load_model(model_dir: str | Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
               builders: LayerBuilders | None = None, source: TensorSource | None = None,
               progress: bool = True, check_only: bool = False) -> Qwen35ForGeneration:
    """Build the model described by config.json and fill it from the checkpoint. Raises ConfigError or
    CheckpointError with the offending field or tensor named. check_only: stop after checking every
    tensor's presence and shape (no data read) and return the model on the meta device."""
    cfg = load_config(model_dir)
    src = source if source is not None else FusedExpertsSource(SafetensorsSource(model_dir))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = Qwen35ForGeneration(cfg, builders)
    finally:
        torch.set_default_dtype(previous)

    # 1) check presence and shapes of everything before reading any data
    plan, missing = [], []
    for mod, local, full, t in _tensors_of(model):
        name = checkpoint_name(cfg, full)
        if full == "lm_head.weight" and not src.has(name) and cfg.text.tie_word_embeddings:
            name = cfg.text_prefix + "embed_tokens.weight"
        if isinstance(src, FusedExpertsSource) and _FUSED.match(name) and not src.base.has(name):
            lacking = src.missing_parts(name, cfg.text.num_experts)
            if lacking:
                missing += [f"{n} (fused into {name})" for n in lacking]
                continue
        if not src.has(name):
            missing.append(name)
            continue
        shape = src.shape(name)
        if tuple(shape) != tuple(t.shape):
            raise CheckpointError(f"{model_dir}: tensor {name!r}: checkpoint shape {tuple(shape)} does not match the "
                                  f"shape {tuple(t.shape)} that config.json implies for {full}")
        plan.append((mod, local, name, t.dtype, isinstance(t, nn.Parameter)))
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise CheckpointError(f"{model_dir}: checkpoint is missing tensor {missing[0]!r}; missing: {missing[:5]}{more}")
    if check_only:
        return model

    # 2) read one tensor at a time (memory-mapped), cast to the declared dtype, move to the device
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(plan), desc=f"loading {Path(model_dir).name}", unit="tensor", file=sys.stderr)
    for mod, local, name, declared, is_param in plan:
        value = src.get(name).to(device=device, dtype=declared)
        if is_param:
            mod._parameters[local] = nn.Parameter(value, requires_grad=False)
        else:
            mod._buffers[local] = value
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return model
