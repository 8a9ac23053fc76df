"""ROS-free parts of qwen_node: settings, frame window, message helpers, replay script, world view."""
from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from qwen_stack.paths import config_file
from qwen_stack.qwen_node.agent.backends.replay import ReplayBackend, load_replay_script
from qwen_stack.qwen_node.agent.grounding import CameraMount
from qwen_stack.qwen_node.agent.output_parser import parse_output
from qwen_stack.qwen_node.agent.planner import CancelToken
from qwen_stack.node_parameters import parameter_defaults
from qwen_stack.qwen_node.agent.config import AgentSettings, config_path
from qwen_stack.qwen_node.agent.tool_registry import ToolRegistry
from qwen_stack.images import decode_compressed, decode_raw
from qwen_stack.qwen_node.agent.frame_window import FrameWindow, fit_pixel_budget
from qwen_stack.qwen_node.agent.world_view import SensorWorldView

from .srv_files import srv_file_request_fields

MOUNT = CameraMount((0.1, 0.0, 0.15), pitch=0.0, base_height=0.05, lens_x=0.0)


def test_agent_yaml_has_every_setting_and_they_are_valid():
    params = yaml.safe_load(config_file("agent.yaml").read_text())["/**"]["ros__parameters"]
    # robot_file is the stack's (config/stack.yaml robot:, tests/foundation/test_robot_facts.py), not agent.yaml's
    assert set(params) == set(parameter_defaults(AgentSettings)) - {"robot_file"}
    AgentSettings(**params)
    text = config_file("agent.yaml").read_text()
    for name in params:  # every parameter carries a comment on its line
        line = next(l for l in text.splitlines() if l.strip().startswith(name + ":"))
        assert "#" in line, name


@pytest.mark.parametrize("bad, name", [
    (dict(backend="gpt"), "backend"), (dict(camera="usb"), "camera"), (dict(max_steps=0), "max_steps"),
    (dict(clip_fps=float("nan")), "clip_fps"), (dict(backend="local", model_dir=""), "model_dir"),
    (dict(openai_api_key_env="sk-abc123"), "openai_api_key_env"), (dict(robot_file=""), "robot_file"),
    (dict(clip_frames=20, clip_fps=1.0, frame_window_s=5.0), "clip_frames"),
    (dict(object_locator="magic"), "object_locator"), (dict(object_locator="sim_ground_truth"), "object_locator"),
    (dict(grounding_standoff_m=-1.0), "grounding_standoff_m"),
    (dict(layer_backend="cuda"), "layer_backend"), (dict(layer_backend="tensorrt"), "trt_engine_dir"),
    (dict(layer_backend="onnxruntime"), "onnx_dir"), (dict(trt_precision="int2"), "trt_precision"),
])
def test_bad_settings_are_rejected_naming_the_parameter(bad, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        AgentSettings(**bad)


REPLAY_CALLS = ["describe_state", "detect_objects", "look_at", "detect_objects", "look_at", "detect_objects",
                "look_at", "rotate", "detect_objects", "look_at", "detect_objects", "look_at", "detect_objects",
                "look_at", "go_to_object", "grasp", "go_to_object", "release", "describe_state"]


def test_replay_script_parses_cleanly_against_the_registry():
    reg = ToolRegistry.from_dict(yaml.safe_load(config_file("tools.yaml").read_text()), srv_file_request_fields,
                                 yaml.safe_load(config_file("safety_policy.yaml").read_text()))
    turns = load_replay_script(config_path("replay/fetch_red_cube.jsonl"))
    names = []
    for t in turns:
        turn = parse_output(t, reg.schemas())
        assert turn.errors == [], turn.errors
        names += [c.name for c in turn.calls]
    # it looks all round (perception's memory fills up) before it goes to the cube by name
    assert names == REPLAY_CALLS
    assert parse_output(turns[-1], reg.schemas()).calls == []


def test_replay_backend_streams_the_turns_in_chunks_and_stops_on_cancel():
    b = ReplayBackend(["abcdefghij", "xyz"], chunk_chars=3)
    chunks = []
    assert b.generate([], [], chunks.append, CancelToken()) == "abcdefghij"
    assert chunks == ["abc", "def", "ghi", "j"] and not b.is_model
    c = CancelToken()
    c.cancel("stop")
    assert b.generate([], [], chunks.append, c) == ""
    with pytest.raises(RuntimeError, match="only 2 turns"):
        b.generate([], [], chunks.append, CancelToken())


@pytest.mark.parametrize("line, msg", [("not json", "not JSON"), ('{"text": "x"}', '"output"')])
def test_bad_replay_scripts_are_refused(tmp_path, line, msg):
    p = tmp_path / "s.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(ValueError, match=msg):
        load_replay_script(p)


def test_decoders_agree_on_a_synthetic_image():
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(decode_raw(8, 6, "rgb8", 24, rgb.tobytes()), rgb)
    assert np.array_equal(decode_raw(8, 6, "bgr8", 24, rgb[:, :, ::-1].tobytes()), rgb)
    padded = np.zeros((6, 28), np.uint8)
    padded[:, :24] = rgb.reshape(6, 24)
    assert np.array_equal(decode_raw(8, 6, "rgb8", 28, padded.tobytes()), rgb)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert np.array_equal(decode_compressed(png.tobytes()), rgb)
    assert "unsupported" in decode_raw(8, 6, "yuv422", 16, b"")
    assert "does not match" in decode_raw(8, 6, "rgb8", 24, b"\0" * 10)
    assert "could not be decoded" in decode_compressed(b"junk")


def test_pixel_budget_and_clip_sampling():
    big = np.zeros((480, 640, 3), np.uint8)
    small = fit_pixel_budget(big, 100_000)
    assert small.shape[0] * small.shape[1] <= 100_000 and abs(small.shape[1] / small.shape[0] - 4 / 3) < 0.02
    assert fit_pixel_budget(big, 10**6) is big
    w = FrameWindow(window_s=2.0)
    for i in range(31):  # 10 Hz for 3 s: the window keeps the last 2 s
        w.add(i * 0.1, np.full((2, 2, 3), i, np.uint8))
    assert len(w) == 21
    clip = w.clip(3, fps=2.0, max_pixels=100)
    assert [int(f[0, 0, 0]) for f in clip] == [20, 25, 30]      # 0.5 s apart, oldest first
    assert [int(f[0, 0, 0]) for f in w.clip(1, 2.0, 100)] == [30]


def _memory_entry(name, x, y, in_view=True, solid=True, last_seen=10.0):
    colour, shape = name.split("_")[0], name.split("_")[1]
    return {"name": name, "colour": colour, "shape": shape, "solid": solid, "x": x, "y": y,
            "confidence": 0.934, "last_seen": last_seen, "in_view": in_view}


def test_world_view_locates_objects_from_perceptions_memory():
    wv = SensorWorldView(MOUNT, (0.05, 0.0), "perception", sensor_wait_s=0.05)
    assert "perception has not published" in wv.locate_object("red_cube")
    wv.set_odom(1.0, 0.0, 0.0)
    wv.set_objects([_memory_entry("red_cube", 2.0, 0.0, last_seen=9.0),
                    _memory_entry("blue_square", -1.0, 1.0, in_view=False, solid=False)], stamp=10.0)
    assert wv.locate_object("red cube") == pytest.approx((2.0, 0.0))
    missing = wv.locate_object("unicorn")
    assert missing == ("no object named 'unicorn' in memory (known: ['blue_square', 'red_cube']); look around "
                       "first: rotate or look_at, then detect_objects")
    assert wv.obstacles(set()) == [(2.0, 0.0)]           # floor areas are not obstacles
    assert wv.obstacles({"red_cube"}) == []
    assert wv.is_floor_area("blue square") and not wv.is_floor_area("red_cube") and not wv.is_floor_area("unicorn")
    report = wv.detect_objects(fresh_wait_s=0.0)
    assert report["in_view"] == ["red_cube"]
    assert report["memory"][0] == {"name": "red_cube", "colour": "red", "shape": "cube", "x": 2.0, "y": 0.0,
                                   "distance": 1.0, "confidence": 0.93, "seen_s_ago": 1.0}
    assert report["memory"][1]["distance"] == 2.24 and report["memory"][1]["seen_s_ago"] == 0.0
    assert wv.object_memory() == report["memory"]
    off = SensorWorldView(MOUNT, (0.05, 0.0), "none", sensor_wait_s=0.05)
    assert "no object locator" in off.locate_object("red_cube")
    assert "no object locator" in off.detect_objects(fresh_wait_s=0.0)["error"] and off.obstacles(set()) == []
    assert not off.is_floor_area("blue_square")


def test_an_uncalibrated_camera_info_is_refused_by_grounding_with_its_reason():
    wv = SensorWorldView(MOUNT, (0.05, 0.0), "perception", sensor_wait_s=0.05)
    wv.set_odom(0.0, 0.0, 0.0)
    assert "no CameraInfo received yet" in wv.ground_point(500, 800, 0.1)
    wv.set_intrinsics([0.0] * 9, 640, 480)          # what an uncalibrated driver publishes
    out = wv.ground_point(500, 800, 0.1)
    assert isinstance(out, str) and "uncalibrated camera" in out
    fy = 240 / math.tan(math.radians(30))
    wv.set_intrinsics([fy, 0, 320, 0, fy, 240, 0, 0, 1], 640, 480)
    assert not isinstance(wv.ground_point(500, 800, 0.1), str)    # a calibrated one grounds again


def test_detect_objects_waits_for_perceptions_answer_to_a_newer_frame():
    import threading

    wv = SensorWorldView(MOUNT, (0.05, 0.0), "perception", sensor_wait_s=0.05)
    wv.set_objects([_memory_entry("red_cube", 2.0, 0.0)], stamp=10.0)          # before the look_at ended
    later = threading.Timer(0.5, lambda: wv.set_objects([_memory_entry("red_cube", 2.0, 0.0, in_view=False)], 11.0))
    later.start()
    t0 = time.monotonic()
    report = wv.detect_objects(fresh_wait_s=3.0)
    assert 0.4 < time.monotonic() - t0 < 2.5
    assert report["in_view"] == []                   # the newer frame's answer, not the old one's
    t0 = time.monotonic()
    wv.detect_objects(fresh_wait_s=0.3)              # nothing newer comes: the latest after the wait
    assert time.monotonic() - t0 >= 0.3


def test_world_view_in_view_is_empty_when_perception_went_quiet(monkeypatch):
    import qwen_stack.qwen_node.agent.world_view as wv_mod

    wv = SensorWorldView(MOUNT, (0.05, 0.0), "perception", sensor_wait_s=0.05)
    wv.set_objects([_memory_entry("red_cube", 2.0, 0.0)], stamp=10.0)
    later = time.monotonic() + wv_mod.IN_VIEW_FRESH_S + 1.0
    monkeypatch.setattr(wv_mod.time, "monotonic", lambda: later)
    report = wv.detect_objects(fresh_wait_s=0.0)
    assert report["in_view"] == [] and report["memory"][0]["name"] == "red_cube"
    assert report["memory"][0]["seen_s_ago"] >= 2.5    # ages with the time since the last message
    assert report["memory"][0]["distance"] is None     # no odometry yet: no distance invented


def test_world_view_ground_point_needs_camera_info():
    off = SensorWorldView(MOUNT, (0.05, 0.0), "none", sensor_wait_s=0.05)
    assert "CameraInfo" in off.ground_point(500, 500, 0.3)


def test_the_default_model_dir_is_the_shipped_brain_from_any_working_directory(tmp_path, monkeypatch):
    from qwen_stack.paths import SOURCE_ROOT, project_path

    monkeypatch.chdir(tmp_path)
    model_dir = project_path(AgentSettings().model_dir)
    assert model_dir == SOURCE_ROOT / "models" / "brain-nvfp4" and (model_dir / "config.json").is_file()
    (tmp_path / "models" / "brain-nvfp4").mkdir(parents=True)       # the user's own folder of that name wins
    assert project_path("models/brain-nvfp4") == Path("models/brain-nvfp4")
    assert project_path("/no/such/model") == Path("/no/such/model")   # named as given in the loader's error
