"""recorder_node parameters: the shipped YAML is the defaults, every parameter is commented, bad values are
refused with a message naming the parameter."""
from __future__ import annotations

import pytest
import yaml

from qwen_stack.parameter_schema import schema_for
from qwen_stack.paths import SOURCE_ROOT, config_file
from qwen_stack.recorder.config import RecorderConfig, RecorderConfigError


def shipped() -> dict:
    return yaml.safe_load(config_file("recorder.yaml").read_text())["/**"]["ros__parameters"]


def test_shipped_yaml_equals_the_defaults_and_every_parameter_is_commented():
    assert RecorderConfig.from_dict(shipped()) == RecorderConfig()
    lines = config_file("recorder.yaml").read_text().splitlines()
    for name in shipped():
        line = next(ln for ln in lines if ln.strip().startswith(name + ":"))
        assert "#" in line, f"{name} has no comment"
    # the launcher checks recorder_node's parameters against the same dataclass
    assert set(schema_for("recorder_node").defaults) >= set(shipped())


@pytest.mark.parametrize("name, value, why", [
    ("output_dir", "", "must name a folder"),
    ("output_dir", str(SOURCE_ROOT / "bags"), "inside the source checkout"),
    ("recording_name", "a/b", "folder name"),
    ("recording_name", "..", "folder name"),
    ("topics", ["ok", "not a topic"], "not a valid topic name"),
    ("topics", ["odom", "odom"], "twice"),
    ("camera_topic", "odom", "also in topics"),
    ("camera_topic", "bad name", "not a valid topic name"),
    ("camera_rate", -1.0, "or 0"),
    ("annotated_image_topic", "camera/image_raw/compressed", "list it once"),
    ("annotated_image_topic", "odom", "list it once"),
    ("annotated_image_rate", 0.01, "or 0"),
    ("camera_rate", float("nan"), "must be a number"),
    ("split_size_mb", 0.0, "must be in"),
    ("split_duration_s", 0.5, "must be in"),
    ("budget_mb", 100.0, "must be in"),          # less than two files of 512 MB
    ("flush_period_s", 0.0, "must be in"),
    ("flush_period_s", 60.0, "must be in"),
    ("compression", "gzip", "one of"),
    ("queue_depth", 0, "integer in"),
    ("queue_depth", 2.5, "integer in"),
    ("discovery_period_s", 0.0, "must be in"),
])
def test_bad_value_is_refused_naming_the_parameter(name, value, why):
    with pytest.raises(RecorderConfigError) as exc:
        RecorderConfig(**{name: value})
    assert f"'{name}'" in str(exc.value) and why in str(exc.value)


def test_unknown_parameter_is_refused():
    with pytest.raises(RecorderConfigError, match="unknown recorder parameters: \\['split_size'\\]"):
        RecorderConfig.from_dict({"split_size": 3})


def test_nothing_to_record_is_refused():
    with pytest.raises(RecorderConfigError, match="'topics'.*nothing to record"):
        RecorderConfig(topics=[], camera_topic="")


def test_limits_follow_the_parameters():
    lim = RecorderConfig(split_size_mb=4.0, split_duration_s=30.0, budget_mb=16.0, flush_period_s=0.5,
                         compression="lz4").limits()
    assert (lim.split_bytes, lim.split_seconds, lim.budget_bytes, lim.flush_period_s, lim.compression) == \
        (4 * 2**20, 30.0, 16 * 2**20, 0.5, "lz4")
    assert lim.chunk_bytes <= lim.split_bytes // 4
    assert RecorderConfig(budget_mb=0.0).limits().budget_bytes == 0
