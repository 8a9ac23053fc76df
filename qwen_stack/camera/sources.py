"""Frame sources for camera_node, free of ROS: each yields RGB uint8 frames [H, W, 3] of the configured size.

A source that cannot be opened raises `SourceError` naming it; a source that stops mid-run
returns None from `read()` (never a partial or garbage frame) and can be reopened.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
COUNTER_BITS = 24      # frame counter drawn into the test pattern (robust to JPEG)
COUNTER_CELL = 16      # pixels per counter bit (square cells along the top row)


class SourceError(RuntimeError):
    """A frame source that cannot be used; the message names the source."""


def _fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    # frame: [h, w, 3] uint8 RGB -> [height, width, 3]
    if frame.shape[0] != height or frame.shape[1] != width:
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return frame


def _valid(frame: object) -> bool:
    return isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 \
        and frame.shape[2] == 3 and frame.size > 0


class FrameSource:
    """Base class: `read()` returns the next RGB frame or None when the source has stopped."""

    description = "source"

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def reopen(self) -> None:
        """Try to recover a stopped source; raises SourceError if it still cannot be opened."""

    def close(self) -> None:
        pass


class PatternSource(FrameSource):
    """Moving colour bars with the frame number encoded as black/white cells on the top row."""

    description = "test pattern"

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.count = 0
        x = np.arange(width, dtype=np.float32)[None, :]
        y = np.arange(height, dtype=np.float32)[:, None]
        self._base = np.stack([x / width * 255 + 0 * y, y / height * 255 + 0 * x,
                               np.full((height, width), 128, np.float32)], axis=-1).astype(np.uint8)

    def read(self) -> np.ndarray:
        frame = self._base.copy()
        bar = (self.count * 4) % self.width
        frame[:, bar:bar + max(4, self.width // 20)] = (255, 255, 255)
        encode_counter(frame, self.count)
        self.count += 1
        return frame


def encode_counter(frame: np.ndarray, value: int) -> None:
    """Draw `value` (mod 2**COUNTER_BITS) as white/black cells on the top row (in place)."""
    for bit in range(COUNTER_BITS):
        x0 = bit * COUNTER_CELL
        if x0 + COUNTER_CELL > frame.shape[1]:
            break
        frame[:COUNTER_CELL, x0:x0 + COUNTER_CELL] = 255 if (value >> bit) & 1 else 0


def decode_counter(frame: np.ndarray) -> int:
    """Read back the counter drawn by `encode_counter` (works after JPEG compression)."""
    value = 0
    bits = min(COUNTER_BITS, frame.shape[1] // COUNTER_CELL)
    for bit in range(bits):
        x0 = bit * COUNTER_CELL
        cell = frame[2:COUNTER_CELL - 2, x0 + 2:x0 + COUNTER_CELL - 2]
        if cell.mean() > 127:
            value |= 1 << bit
    return value


class CaptureSource(FrameSource):
    """OpenCV VideoCapture: V4L2 devices, video files (looped) and network URLs."""

    def __init__(self, target: str | int, width: int, height: int, loop: bool, description: str) -> None:
        super().__init__(width, height)
        self.target, self.loop, self.description = target, loop, description
        self.cap: cv2.VideoCapture | None = None
        self.reopen()

    def reopen(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}")
        if isinstance(self.target, int):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        ok, frame = cap.read()
        if not ok or not _valid(frame):
            cap.release()
            raise SourceError(f"{self.description} opened but gives no frames")
        self.cap, self._first = cap, frame

    def read(self) -> np.ndarray | None:
        if self.cap is None:
            return None
        if self._first is not None:
            frame, self._first = self._first, None
        else:
            ok, frame = self.cap.read()
            if not ok and self.loop:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self.cap.read()
            if not ok or not _valid(frame):
                return None
        return _fit(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), self.width, self.height)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        self._first = None


class FolderSource(FrameSource):
    """Images of a folder, sorted by name, looped. Unreadable files are skipped, never published."""

    def __init__(self, folder: Path, width: int, height: int) -> None:
        super().__init__(width, height)
        self.folder, self.description = folder, f"image folder {folder}"
        self.reopen()

    def reopen(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"cannot open {self.description}: not a folder")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"cannot open {self.description}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.index = 0

    def read(self) -> np.ndarray | None:
        for _ in range(len(self.files)):
            path = self.files[self.index % len(self.files)]
            self.index += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if _valid(frame):
                return _fit(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), self.width, self.height)
        return None  # every file unreadable now (e.g. folder emptied): report as stopped


_DEVICE = re.compile(r"^(?:/dev/video(\d+)|v4l2:(\d+))$")


def open_source(source: str, width: int, height: int) -> FrameSource:
    """Open the source named by `source` (see config/camera.yaml); raises SourceError naming it."""
    source = source.strip()
    if source == "pattern":
        return PatternSource(width, height)
    match = _DEVICE.match(source)
    if match:
        index = int(match.group(1) or match.group(2))
        if source.startswith("/dev/") and not os.path.exists(source):
            raise SourceError(f"cannot open V4L2 device {source}: no such device")
        return CaptureSource(index, width, height, loop=False, description=f"V4L2 device {source}")
    if re.match(r"^(rtsp|rtmp|https?)://", source):
        return CaptureSource(source, width, height, loop=False, description=f"stream {source}")
    path = Path(source).expanduser()
    if path.is_dir():
        return FolderSource(path, width, height)
    if path.is_file():
        return CaptureSource(str(path), width, height, loop=True, description=f"video file {path}")
    raise SourceError(f"cannot open source {source!r}: not 'pattern', a device, a URL, or an existing file or folder")


class RetryingSource:
    """Wraps a source: when it stops, report it and reopen every `retry_period_s` (pure, clock injected)."""

    def __init__(self, source: FrameSource, retry_period_s: float, clock=time.monotonic) -> None:
        self.source, self.retry_period_s, self.clock = source, retry_period_s, clock
        self.stopped_since: float | None = None
        self.last_error = ""
        self._next_retry = 0.0

    def read(self) -> np.ndarray | None:
        now = self.clock()
        if self.stopped_since is not None:
            if now < self._next_retry:
                return None
            self._next_retry = now + self.retry_period_s
            try:
                self.source.reopen()
            except SourceError as exc:
                self.last_error = str(exc)
                return None
        frame = self.source.read()
        if frame is None or not _valid(frame):
            if self.stopped_since is None:
                self.stopped_since = now
                self._next_retry = now + self.retry_period_s
                self.last_error = f"{self.source.description} stopped delivering frames"
            return None
        self.stopped_since = None
        return frame
