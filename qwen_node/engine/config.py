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
    mtp_num_hidden_layers: int = 0  # multi-token-prediction layers stored in the checkpoint (not run; the memory plan counts them)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)


_VISION = dict(
    depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16, temporal_patch_size=2,
    spatial_merge_size=2, in_channels=3, num_position_embeddings=2304,
)
_COMMON_TEXT = dict(
    full_attention_interval=4, head_dim=256, num_key_value_heads=2, linear_num_key_heads=16, linear_key_head_dim=128,
    linear_value_head_dim=128, linear_conv_kernel_dim=4, vocab_size=248320, tie_word_embeddings=False,
    mtp_num_hidden_layers=1, max_position_embeddings=262144,
)


def _preset(arch: str, vision_out: int, **text) -> dict:
    return {
        "architectures": [arch],
        "text_config": {**_COMMON_TEXT, **text},
        "vision_config": {**_VISION, "out_hidden_size": vision_out},
    }


# The published Qwen3.5 configs (config.json of Qwen/Qwen3.5-397B-A17B, -122B-A10B, -35B-A3B, -27B), by name:
# ModelConfig.from_name (gpt-fast's ModelArgs.from_name) for tools that plan for a model without its files.
PRESETS: dict[str, dict] = {
    "397B-A17B": _preset(
        "Qwen3_5MoeForConditionalGeneration", 4096, hidden_size=4096, num_hidden_layers=60, num_attention_heads=32,
        linear_num_value_heads=64, num_experts=512, num_experts_per_tok=10, moe_intermediate_size=1024,
        shared_expert_intermediate_size=1024,
    ),
    "122B-A10B": _preset(
        "Qwen3_5MoeForConditionalGeneration", 3072, hidden_size=3072, num_hidden_layers=48, num_attention_heads=32,
        linear_num_value_heads=64, num_experts=256, num_experts_per_tok=8, moe_intermediate_size=1024,
        shared_expert_intermediate_size=1024,
    ),
    "35B-A3B": _preset(
        "Qwen3_5MoeForConditionalGeneration", 2048, hidden_size=2048, num_hidden_layers=40, num_attention_heads=16,
        linear_num_value_heads=32, num_experts=256, num_experts_per_tok=8, moe_intermediate_size=512,
        shared_expert_intermediate_size=512,
    ),
    "27B": _preset(
        "Qwen3_5ForConditionalGeneration", 5120, hidden_size=5120, num_hidden_layers=64, num_attention_heads=24,
        num_key_value_heads=4, linear_num_value_heads=48, intermediate_size=17408,
    ),
}


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

    @staticmethod
    def from_name(name: str) -> "ModelConfig":
        """A published Qwen3.5 model: "35B-A3B", "Qwen3.5-35B-A3B" or "Qwen/Qwen3.5-35B-A3B"."""
        key = preset_key(name)
        if key is None:
            raise ConfigError(f"{name!r} is not a published Qwen3.5 model; known: {', '.join(PRESETS)}")
        return parse_config(PRESETS[key])


def preset_key(name: str) -> str | None:
    """The PRESETS key a model name refers to, or None."""
    key = name.removeprefix("Qwen/").removeprefix("Qwen3.5-")
    return key if key in PRESETS else None


# JSON types each Python kind accepts: no conversions, so "false" is not a bool and 4.5 is not an int
_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _typed(value, kind, field: str, low=None):
    """value checked against kind (bool is not an int or a number; an int is a valid number) and the lower
    bound low (inclusive); raises ConfigError naming the field."""
    ok = (isinstance(value, bool) if kind is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
          isinstance(value, kind) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"config.json: field {field}={value!r} must be {_KIND_NAMES[kind]}")
    if low is not None and value < low:
        raise ConfigError(f"config.json: field {field}={value!r} must be >= {low}")
    return float(value) if kind is float else value


def _take(d: dict, name: str, kind, where: str, default=..., low=None):
    if name not in d or d[name] is None:
        if default is ...:
            raise ConfigError(f"config.json: missing field {where}{name}")
        return default
    return _typed(d[name], kind, where + name, low)


def _section(d: dict, name: str, where: str) -> dict:
    """An optional nested object (rope_parameters, ...): {} when absent, ConfigError when not an object."""
    value = d.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"config.json: field {where}{name}={value!r} must be an object")
    return value


def _int_list(value, field: str) -> list[int]:
    if not isinstance(value, list):
        raise ConfigError(f"config.json: field {field}={value!r} must be a list")
    return [_typed(v, int, f"{field}[{i}]", low=0) for i, v in enumerate(value)]


def _parse_text(d: dict, moe: bool, where: str, tie_default: bool) -> TextConfig:
    rope_name = "rope_parameters" if d.get("rope_parameters") is not None else "rope_scaling"
    rope = _section(d, rope_name, where)
    rw = f"{where}{rope_name}."
    n_layers = _take(d, "num_hidden_layers", int, where, low=1)
    hidden = _take(d, "hidden_size", int, where, low=1)
    n_heads = _take(d, "num_attention_heads", int, where, low=1)
    layer_types = d.get("layer_types")
    if layer_types is None:
        interval = _take(d, "full_attention_interval", int, where, 4, low=1)
        layer_types = ["linear_attention" if (i + 1) % interval else "full_attention" for i in range(n_layers)]
    if not isinstance(layer_types, list):
        raise ConfigError(f"config.json: field {where}layer_types={layer_types!r} must be a list")
    if len(layer_types) != n_layers:
        raise ConfigError(f"config.json: field {where}layer_types has {len(layer_types)} entries, "
                          f"num_hidden_layers is {n_layers}")
    for i, t in enumerate(layer_types):
        if t not in ("linear_attention", "full_attention"):
            raise ConfigError(f"config.json: field {where}layer_types[{i}]={t!r} is not "
                              f"'linear_attention' or 'full_attention'")
    if "head_dim" not in d and hidden % n_heads:
        raise ConfigError(f"config.json: field {where}head_dim is missing and hidden_size={hidden} is not a multiple "
                          f"of num_attention_heads={n_heads}")
    # rotary settings live in rope_parameters (older files: at the top level)
    rope_theta = (_take(rope, "rope_theta", float, rw, low=0.0) if "rope_theta" in rope
                  else _take(d, "rope_theta", float, where, 10000.0, low=0.0))
    rotary = (_take(rope, "partial_rotary_factor", float, rw) if "partial_rotary_factor" in rope
              else _take(d, "partial_rotary_factor", float, where, 0.25))
    if not 0 < rotary <= 1:
        raise ConfigError(f"config.json: field {where}partial_rotary_factor={rotary} must be in (0, 1]")
    cfg = TextConfig(
        vocab_size=_take(d, "vocab_size", int, where, low=1),
        hidden_size=hidden,
        num_hidden_layers=n_layers,
        layer_types=list(layer_types),
        num_attention_heads=n_heads,
        num_key_value_heads=_take(d, "num_key_value_heads", int, where, low=1),
        head_dim=_take(d, "head_dim", int, where, hidden // n_heads, low=1),
        linear_num_key_heads=_take(d, "linear_num_key_heads", int, where, low=1),
        linear_num_value_heads=_take(d, "linear_num_value_heads", int, where, low=1),
        linear_key_head_dim=_take(d, "linear_key_head_dim", int, where, low=1),
        linear_value_head_dim=_take(d, "linear_value_head_dim", int, where, low=1),
        linear_conv_kernel_dim=_take(d, "linear_conv_kernel_dim", int, where, 4, low=1),
        rope_theta=rope_theta,
        partial_rotary_factor=rotary,
        mrope_section=_int_list(rope.get("mrope_section", [11, 11, 10]), rw + "mrope_section"),
        rms_norm_eps=_take(d, "rms_norm_eps", float, where, 1e-6, low=0.0),
        hidden_act=_take(d, "hidden_act", str, where, "silu"),
        attention_bias=_take(d, "attention_bias", bool, where, False),
        tie_word_embeddings=_take(d, "tie_word_embeddings", bool, where, tie_default),
        max_position_embeddings=_take(d, "max_position_embeddings", int, where, 262144, low=1),
        mtp_num_hidden_layers=_take(d, "mtp_num_hidden_layers", int, where, 0, low=0),
    )
    if moe:
        cfg.num_experts = _take(d, "num_experts", int, where, low=1)
        cfg.num_experts_per_tok = _take(d, "num_experts_per_tok", int, where, low=1)
        cfg.moe_intermediate_size = _take(d, "moe_intermediate_size", int, where, low=1)
        cfg.shared_expert_intermediate_size = _take(d, "shared_expert_intermediate_size", int, where, low=1)
        if not 0 < cfg.num_experts_per_tok <= cfg.num_experts:
            raise ConfigError(f"config.json: field {where}num_experts_per_tok={cfg.num_experts_per_tok} "
                              f"must be in 1..num_experts ({cfg.num_experts})")
    else:
        cfg.intermediate_size = _take(d, "intermediate_size", int, where, low=1)
    if cfg.hidden_act != "silu":
        raise ConfigError(f"config.json: field {where}hidden_act={cfg.hidden_act!r} is not supported (only 'silu')")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ConfigError(f"config.json: field {rw}rope_type={rope_type!r} is not supported (only 'default')")
    if len(cfg.mrope_section) != 3 or 2 * sum(cfg.mrope_section) != cfg.rotary_dim:
        raise ConfigError(f"config.json: field {rw}mrope_section={cfg.mrope_section} must have "
                          f"3 entries summing to rotary_dim/2 = {cfg.rotary_dim // 2}")
    if n_heads % cfg.num_key_value_heads or cfg.linear_num_value_heads % cfg.linear_num_key_heads:
        raise ConfigError(f"config.json: {where}num_attention_heads must be a multiple of num_key_value_heads and "
                          f"linear_num_value_heads a multiple of linear_num_key_heads")
    return cfg


def _parse_vision(d: dict) -> VisionConfig:
    w = "vision_config."
    rope = _section(d, "rope_parameters", w)
    cfg = VisionConfig(
        depth=_take(d, "depth", int, w, low=1),
        hidden_size=_take(d, "hidden_size", int, w, low=1),
        intermediate_size=_take(d, "intermediate_size", int, w, low=1),
        num_heads=_take(d, "num_heads", int, w, low=1),
        out_hidden_size=_take(d, "out_hidden_size", int, w, low=1),
        num_position_embeddings=_take(d, "num_position_embeddings", int, w, low=1),
        in_channels=_take(d, "in_channels", int, w, 3, low=1),
        patch_size=_take(d, "patch_size", int, w, 16, low=1),
        temporal_patch_size=_take(d, "temporal_patch_size", int, w, 2, low=1),
        spatial_merge_size=_take(d, "spatial_merge_size", int, w, 2, low=1),
        hidden_act=_take(d, "hidden_act", str, w, "gelu_pytorch_tanh"),
        rope_theta=_take(rope, "rope_theta", float, w + "rope_parameters.", 10000.0, low=0.0),
    )
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"config.json: field {w}hidden_size={cfg.hidden_size} must be a multiple of "
                          f"num_heads={cfg.num_heads}")
    return cfg


def parse_config(raw: dict) -> ModelConfig:
    """config.json contents -> ModelConfig; raises ConfigError naming the offending field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config.json: must hold a JSON object, got {type(raw).__name__}")
    archs = raw.get("architectures") or []
    if not archs:
        raise ConfigError("config.json: missing field architectures")
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"config.json: field architectures={archs!r} must be a list of names")
    arch = archs[0]
    if arch not in ARCHITECTURES:
        raise ConfigError(f"config.json: field architectures={archs!r} is not supported; "
                          f"supported: {sorted(ARCHITECTURES)}")
    has_vision, moe, prefix = ARCHITECTURES[arch]
    if "text_config" in raw:
        text = _parse_text(_section(raw, "text_config", ""), moe, "text_config.",
                           _take(raw, "tie_word_embeddings", bool, "", False))
    elif has_vision:
        raise ConfigError(f"config.json: missing field text_config (required for {arch})")
    else:
        text = _parse_text(raw, moe, "", False)
    vision = None
    if has_vision:
        if "vision_config" not in raw:
            raise ConfigError(f"config.json: missing field vision_config (required for {arch})")
        vision = _parse_vision(_section(raw, "vision_config", ""))
        if vision.out_hidden_size != text.hidden_size:
            raise ConfigError(f"config.json: vision_config.out_hidden_size={vision.out_hidden_size} must equal "
                              f"text hidden_size={text.hidden_size}")
    return ModelConfig(
        architecture=arch, text=text, vision=vision, text_prefix=prefix,
        image_token_id=_take(raw, "image_token_id", int, "", 248056, low=0),
        video_token_id=_take(raw, "video_token_id", int, "", 248057, low=0),
        vision_start_token_id=_take(raw, "vision_start_token_id", int, "", 248053, low=0),
        vision_end_token_id=_take(raw, "vision_end_token_id", int, "", 248054, low=0),
    )


def load_config(model_dir: str | Path) -> ModelConfig:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found (a model folder needs config.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return parse_config(raw)
    except ConfigError as exc:     # name the file itself, not just "config.json"
        raise ConfigError(str(exc).replace("config.json: ", f"{path}: ", 1)) from None
