"""Frame sources without ROS: hand-checked frames, bad sources, stop-and-retry."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from qwen_stack.camera.config import CameraConfig, CameraConfigError
from qwen_stack.camera.sources import (FolderSource, PatternSource, RetryingSource, SourceError, decode_counter,
                                       encode_counter, open_source)


def test_pattern_frames_have_size_and_counter():
    src = open_source("pattern", 320, 240)
    frames = [src.read() for _ in range(3)]
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    assert [decode_counter(f) for f in frames] == [0, 1, 2]
    assert not np.array_equal(frames[0][100:], frames[2][100:]), "pattern must move"


@pytest.mark.parametrize("value", [0, 1, 5, 1234567, 2**24 - 1])
def test_counter_survives_jpeg(value):
    frame = np.full((64, 640, 3), 90, np.uint8)
    encode_counter(frame, value)
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok and decode_counter(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == value


def test_folder_source_loops_sorted_and_skips_unreadable(tmp_path):
    for i, colour in enumerate([(0, 0, 255), (0, 255, 0)]):  # BGR on disk: red, green
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((10, 20, 3), colour, np.uint8))
    (tmp_path / "01b.png").write_bytes(b"not an image")
    src = open_source(str(tmp_path), 40, 20)
    assert isinstance(src, FolderSource)
    reds = [tuple(src.read()[5, 5]) for _ in range(4)]
    assert reds == [(255, 0, 0), (0, 255, 0), (255, 0, 0), (0, 255, 0)]  # RGB, resized, garbage skipped


def test_video_file_loops(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(3):
        writer.write(np.full((24, 32, 3), 60 * (i + 1), np.uint8))
    writer.release()
    src = open_source(str(path), 32, 24)
    means = [int(src.read().mean()) for _ in range(6)]
    assert means[:3] == means[3:], "a video file loops"
    assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("bad, words", [
    ("/nonexistent/thing", "'/nonexistent/thing'"),
    ("/dev/video99", "/dev/video99"),
])
def test_unopenable_sources_name_themselves(bad, words):
    with pytest.raises(SourceError, match=words.replace("/", ".")):
        open_source(bad, 64, 48)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path), 64, 48)


class _FlakySource(PatternSource):
    """Test double: a pattern that stops after `good` frames and stays down for `down` reopen attempts."""

    def __init__(self, good: int, down: int):
        super().__init__(32, 16)
        self.good, self.down, self.reopens = good, down, 0

    def read(self):
        if self.good <= 0:
            return None
        self.good -= 1
        return super().read()

    def reopen(self):
        self.reopens += 1
        if self.reopens <= self.down:
            raise SourceError("still down")
        self.good = 100


def test_retrying_source_reports_and_recovers():
    now = [0.0]
    src = RetryingSource(_FlakySource(good=2, down=1), retry_period_s=1.0, clock=lambda: now[0])
    assert src.read() is not None and src.read() is not None
    assert src.read() is None and src.stopped_since == 0.0 and "stopped" in src.last_error
    now[0] = 0.5
    assert src.read() is None and src.source.reopens == 0, "no retry before the period"
    now[0] = 1.0
    assert src.read() is None and src.last_error == "still down"
    now[0] = 2.0
    frame = src.read()
    assert frame is not None and src.stopped_since is None


@pytest.mark.parametrize("field, value", [
    ("fps", 0.0), ("fps", float("nan")), ("width", 8), ("height", 99999), ("encoding", "mono8"),
    ("jpeg_quality", 0), ("qos", "fast"), ("horizontal_fov_deg", 180.0), ("retry_period_s", 0.0), ("source", " "),
])
def test_bad_config_names_the_parameter(field, value):
    with pytest.raises(CameraConfigError, match=f"'{field}'"):
        CameraConfig(**{field: value})


def test_unknown_parameter_rejected():
    with pytest.raises(CameraConfigError, match="unknown"):
        CameraConfig.from_dict({"fsp": 3.0})


def test_intrinsics_from_fov():
    fx, fy, cx, cy = CameraConfig(width=640, height=480, horizontal_fov_deg=90.0).intrinsics()
    assert fx == pytest.approx(320.0) and fy == fx and cx == 319.5 and cy == 239.5
