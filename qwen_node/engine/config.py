"""Model configuration read from a Hugging Face `config.json` (Qwen3.5 / Qwen3.5-MoE).

One flat dataclass for the text decoder and one for the vision tower, gpt-fast style. Field names
follow the checkpoint's `config.json` so a reader can grep from one to the other. `parse_config`
rejects a missing or malformed field with a message naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# architecture name in config.json -> (has a vision tower, has MoE blocks, checkpoint prefix of the text model)
ARCHITECTURES = {
    "Qwen3_5MoeForConditionalGeneration": (True, True, "model.language_model."),
    "Qwen3_5MoeForCausalLM": (False, True, "model."),
    "Qwen3_5ForConditionalGeneration": (True, False, "model.language_model."),
    "Qwen3_5ForCausalLM": (False, False, "model."),
}


class ConfigError(ValueError):
    """config.json is missing a field, has a bad value, or names an unsupported architecture."""


@dataclass
class VisionConfig:
    depth: int                      # number of ViT blocks
    hidden_size: int                # ViT width
    intermediate_size: int          # ViT MLP width
    num_heads: int                  # ViT attention heads (head_dim = hidden_size // num_heads)
    out_hidden_size: int            # merger output width = text hidden_size
    num_position_embeddings: int    # learned square position table (side = sqrt of this)
    in_channels: int = 3
    patch_size: int = 16            # spatial patch (pixels)
    temporal_patch_size: int = 2    # frames per patch
    spatial_merge_size: int = 2     # 2x2 patches -> one LLM token
    hidden_act: str = "gelu_pytorch_tanh"
    rope_theta: float = 10000.0


@dataclass
class TextConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    layer_types: list[str]          # "linear_attention" (Gated DeltaNet) or "full_attention" per layer
    # gated full attention
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    # gated DeltaNet
    linear_num_key_heads: int
    linear_num_value_heads: int
    linear_key_head_dim: int
    linear_value_head_dim: int
    linear_conv_kernel_dim: int = 4
    # feed-forward: MoE (num_experts > 0) or dense (intermediate_size)
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    intermediate_size: int = 0
    # rotary
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.25
    mrope_section: list[int] = field(default_factory=lambda: [11, 11, 10])   # T, H, W frequency counts
    rms_norm_eps: float = 1e-6
    hidden_act: str = "silu"
    attention_bias: bool = False
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 262144

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)


@dataclass
class ModelConfig:
    architecture: str
    text: TextConfig
    vision: VisionConfig | None
    text_prefix: str                # checkpoint name prefix of the text model ("model.language_model.")
    image_token_id: int = 248056
    video_token_id: int = 248057
    vision_start_token_id: int = 248053
    vision_end_token_id: int = 248054


def _take(d: dict, name: str, kind, where: str, default=...):
    if name not in d or d[name] is None:
        if default is ...:
            raise ConfigError(f"config.json: missing field {where}{name}")
        return default
    value = d[name]
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config.json: field {where}{name}={value!r} is not a valid {kind.__name__}") from exc


def _parse_text(d: dict, moe: bool, where: str, tie_default: bool) -> TextConfig:
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    n_layers = _take(d, "num_hidden_layers", int, where)
    hidden = _take(d, "hidden_size", int, where)
    n_heads = _take(d, "num_attention_heads", int, where)
    layer_types = d.get("layer_types")
    if layer_types is None:
        interval = _take(d, "full_attention_interval", int, where, 4)
        layer_types = ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(n_layers)]
    if len(layer_types) != n_layers:
        raise ConfigError(f"config.json: field {where}layer_types has {len(layer_types)} entries, "
                          f"num_hidden_layers is {n_layers}")
    for i, t in enumerate(layer_types):
        if t not in ("linear_attention", "full_attention"):
            raise ConfigError(f"config.json: field {where}layer_types[{i}]={t!r} is not "
                              f"'linear_attention' or 'full_attention'")
    cfg = TextConfig(
        vocab_size=_take(d, "vocab_size", int, where),
        hidden_size=hidden,
        num_hidden_layers=n_layers,
        layer_types=list(layer_types),
        num_attention_heads=n_heads,
        num_key_value_heads=_take(d, "num_key_value_heads", int, where),
        head_dim=_take(d, "head_dim", int, where, hidden // n_heads),
        linear_num_key_heads=_take(d, "linear_num_key_heads", int, where),
        linear_num_value_heads=_take(d, "linear_num_value_heads", int, where),
        linear_key_head_dim=_take(d, "linear_key_head_dim", int, where),
        linear_value_head_dim=_take(d, "linear_value_head_dim", int, where),
        linear_conv_kernel_dim=_take(d, "linear_conv_kernel_dim", int, where, 4),
        rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))),
        partial_rotary_factor=float(rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 0.25))),
        mrope_section=list(rope.get("mrope_section", [11, 11, 10])),
        rms_norm_eps=_take(d, "rms_norm_eps", float, where, 1e-6),
        hidden_act=_take(d, "hidden_act", str, where, "silu"),
        attention_bias=_take(d, "attention_bias", bool, where, False),
        tie_word_embeddings=_take(d, "tie_word_embeddings", bool, where, tie_default),
        max_position_embeddings=_take(d, "max_position_embeddings", int, where, 262144),
    )
    if moe:
        cfg.num_experts = _take(d, "num_experts", int, where)
        cfg.num_experts_per_tok = _take(d, "num_experts_per_tok", int, where)
        cfg.moe_intermediate_size = _take(d, "moe_intermediate_size", int, where)
        cfg.shared_expert_intermediate_size = _take(d, "shared_expert_intermediate_size", int, where)
        if not 0 < cfg.num_experts_per_tok <= cfg.num_experts:
            raise ConfigError(f"config.json: field {where}num_experts_per_tok={cfg.num_experts_per_tok} "
                              f"must be in 1..num_experts ({cfg.num_experts})")
    else:
        cfg.intermediate_size = _take(d, "intermediate_size", int, where)
    if cfg.hidden_act != "silu":
        raise ConfigError(f"config.json: field {where}hidden_act={cfg.hidden_act!r} is not supported (only 'silu')")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ConfigError(f"config.json: field {where}rope_parameters.rope_type={rope_type!r} is not supported")
    if len(cfg.mrope_section) != 3 or 2 * sum(cfg.mrope_section) != cfg.rotary_dim:
        raise ConfigError(f"config.json: field {where}rope_parameters.mrope_section={cfg.mrope_section} must have "
                          f"3 entries summing to rotary_dim/2 = {cfg.rotary_dim // 2}")
    if n_heads % cfg.num_key_value_heads or cfg.linear_num_value_heads % cfg.linear_num_key_heads:
        raise ConfigError(f"config.json: {where}num_attention_heads must be a multiple of num_key_value_heads and "
                          f"linear_num_value_heads a multiple of linear_num_key_heads")
    return cfg


def _parse_vision(d: dict) -> VisionConfig:
    w = "vision_config."
    rope = d.get("rope_parameters") or {}
    return VisionConfig(
        depth=_take(d, "depth", int, w),
        hidden_size=_take(d, "hidden_size", int, w),
        intermediate_size=_take(d, "intermediate_size", int, w),
        num_heads=_take(d, "num_heads", int, w),
        out_hidden_size=_take(d, "out_hidden_size", int, w),
        num_position_embeddings=_take(d, "num_position_embeddings", int, w),
        in_channels=_take(d, "in_channels", int, w, 3),
        patch_size=_take(d, "patch_size", int, w, 16),
        temporal_patch_size=_take(d, "temporal_patch_size", int, w, 2),
        spatial_merge_size=_take(d, "spatial_merge_size", int, w, 2),
        hidden_act=_take(d, "hidden_act", str, w, "gelu_pytorch_tanh"),
        rope_theta=float(rope.get("rope_theta", 10000.0)),
    )


def parse_config(raw: dict) -> ModelConfig:
    """config.json contents -> ModelConfig; raises ConfigError naming the offending field."""
    archs = raw.get("architectures") or []
    if not archs:
        raise ConfigError("config.json: missing field architectures")
    arch = archs[0]
    if arch not in ARCHITECTURES:
        raise ConfigError(f"config.json: field architectures={archs!r} is not supported; "
                          f"supported: {sorted(ARCHITECTURES)}")
    has_vision, moe, prefix = ARCHITECTURES[arch]
    if "text_config" in raw:
        text = _parse_text(raw["text_config"], moe, "text_config.", bool(raw.get("tie_word_embeddings", False)))
    elif has_vision:
        raise ConfigError(f"config.json: missing field text_config (required for {arch})")
    else:
        text = _parse_text(raw, moe, "", False)
    vision = None
    if has_vision:
        if "vision_config" not in raw:
            raise ConfigError(f"config.json: missing field vision_config (required for {arch})")
        vision = _parse_vision(raw["vision_config"])
        if vision.out_hidden_size != text.hidden_size:
            raise ConfigError(f"config.json: vision_config.out_hidden_size={vision.out_hidden_size} must equal "
                              f"text hidden_size={text.hidden_size}")
    return ModelConfig(
        architecture=arch, text=text, vision=vision, text_prefix=prefix,
        image_token_id=int(raw.get("image_token_id", 248056)),
        video_token_id=int(raw.get("video_token_id", 248057)),
        vision_start_token_id=int(raw.get("vision_start_token_id", 248053)),
        vision_end_token_id=int(raw.get("vision_end_token_id", 248054)),
    )


def load_config(model_dir: str | Path) -> ModelConfig:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found (a model folder needs config.json)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    return parse_config(raw)
