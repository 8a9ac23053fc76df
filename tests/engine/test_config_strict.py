"""config.json is read strictly: every field has a JSON type and a range, and a value of the wrong kind is an
error naming the field and the file (never converted: "false" is not false, 4.5 heads are not 4); unreadable
checkpoint files are errors naming the file, from the Python API and from `qwen-stack generate`."""
from __future__ import annotations

import copy
import json
import shutil

import pytest

from qwen_stack.qwen_node.engine.cli import generate_main
from qwen_stack.qwen_node.engine.config import ConfigError, load_config, parse_config
from qwen_stack.qwen_node.engine.loader import CheckpointError, SafetensorsSource, load_model

from tiny_checkpoints import make_checkpoint, text_config_dict, vision_config_dict


@pytest.fixture(scope="module")
def raw():
    import transformers as tf

    d = tf.Qwen3_5MoeConfig(text_config=text_config_dict(), vision_config=vision_config_dict()).to_dict()
    return {**d, "architectures": ["Qwen3_5MoeForConditionalGeneration"]}     # what save_pretrained adds


def test_the_base_config_parses(raw):
    cfg = parse_config(copy.deepcopy(raw))
    assert cfg.text.num_attention_heads == 4 and cfg.text.attention_bias is False


# (path into config.json, bad value, field named in the message)
BAD = [
    (("text_config", "rope_parameters"), "default", "text_config.rope_parameters"),
    (("text_config", "attention_bias"), "false", "text_config.attention_bias"),
    (("text_config", "num_attention_heads"), 4.5, "text_config.num_attention_heads"),
    (("text_config", "num_attention_heads"), True, "text_config.num_attention_heads"),
    (("text_config", "vocab_size"), "320", "text_config.vocab_size"),
    (("text_config", "hidden_size"), 0, "text_config.hidden_size"),
    (("text_config", "num_experts"), -2, "text_config.num_experts"),
    (("text_config", "rms_norm_eps"), "1e-6", "text_config.rms_norm_eps"),
    (("text_config", "max_position_embeddings"), 1.5e5, "text_config.max_position_embeddings"),
    (("text_config", "layer_types"), "linear_attention", "text_config.layer_types"),
    (("text_config", "hidden_act"), 1, "text_config.hidden_act"),
    (("text_config", "rope_parameters", "rope_theta"), "1e4", "text_config.rope_parameters.rope_theta"),
    (("text_config", "rope_parameters", "partial_rotary_factor"), 2.0, "partial_rotary_factor"),
    (("text_config", "rope_parameters", "mrope_section"), [1, "a", 1], "text_config.rope_parameters.mrope_section[1]"),
    (("text_config", "rope_parameters", "rope_type"), "yarn", "text_config.rope_parameters.rope_type"),
    (("text_config",), [1, 2], "text_config"),
    (("tie_word_embeddings",), "true", "tie_word_embeddings"),
    (("image_token_id",), "248056", "image_token_id"),
    (("vision_config", "depth"), 2.0, "vision_config.depth"),
    (("vision_config", "patch_size"), "16", "vision_config.patch_size"),
    (("vision_config",), "none", "vision_config"),
    (("architectures",), "Qwen3_5MoeForConditionalGeneration", "architectures"),
]


@pytest.mark.parametrize("path,value,named", BAD, ids=[f"{'.'.join(p)}={v!r}" for p, v, _ in BAD])
def test_a_field_of_the_wrong_kind_is_named(raw, tmp_path, path, value, named):
    bad = copy.deepcopy(raw)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("[", r"\[")):
        parse_config(bad)
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=str(tmp_path / "config.json")):     # the file is named too
        load_config(tmp_path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("strict") / "ckpt"
    make_checkpoint(folder, "Qwen3_5ForCausalLM", seed=5, layer_types=("linear_attention", "full_attention"))
    return folder


def _copy(checkpoint, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(checkpoint, out)
    return out


def test_a_truncated_safetensors_file_is_named(checkpoint, tmp_path):
    bad = _copy(checkpoint, tmp_path)
    f = bad / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{f}: cannot be read as safetensors"):
        SafetensorsSource(bad)
    with pytest.raises(CheckpointError, match=str(f)):
        load_model(bad, progress=False)


def test_a_file_that_is_not_safetensors_is_named(checkpoint, tmp_path):
    bad = _copy(checkpoint, tmp_path)
    (bad / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot be read"):
        load_model(bad, progress=False)


def test_an_index_that_places_a_tensor_in_the_wrong_shard_is_named(checkpoint, tmp_path):
    from safetensors import safe_open

    bad = _copy(checkpoint, tmp_path)
    names = list(safe_open(str(bad / "model.safetensors"), "pt").keys())
    shutil.move(bad / "model.safetensors", bad / "part-1.safetensors")
    weight_map = {n: "part-1.safetensors" for n in names}
    weight_map["model.layers.0.ghost.weight"] = "part-1.safetensors"
    (bad / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"part-1\.safetensors: lacks tensor 'model\.layers\.0\.ghost\.weight'"):
        SafetensorsSource(bad)
    (bad / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json: not a JSON object"):
        SafetensorsSource(bad)


def test_generate_reports_a_truncated_file_in_one_line(checkpoint, tmp_path, capsys):
    bad = _copy(checkpoint, tmp_path)
    f = bad / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    assert generate_main(["--model", str(bad), "--prompt", "hi", "--max-new-tokens", "1"]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_published_models_by_name_parse_with_the_engines_parser():
    from qwen_stack.qwen_node.engine.config import PRESETS, ConfigError, ModelConfig

    for key in PRESETS:
        for name in (key, f"Qwen3.5-{key}", f"Qwen/Qwen3.5-{key}"):
            cfg = ModelConfig.from_name(name)
            assert cfg.vision is not None and cfg.text.mtp_num_hidden_layers == 1
            assert cfg.text.layer_types.count("full_attention") * 4 == cfg.text.num_hidden_layers   # 3:1 pattern
    assert ModelConfig.from_name("35B-A3B").text.num_experts == 256
    assert ModelConfig.from_name("27B").text.num_experts == 0
    with pytest.raises(ConfigError, match="not a published Qwen3.5 model; known: 397B-A17B"):
        ModelConfig.from_name("Qwen3.5-1T")
