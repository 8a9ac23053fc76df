"""Rolling window of camera frames and their conversion to prompt images (ROS-free).

Frames are RGB uint8 arrays [H, W, 3] with a stamp in seconds. A prompt gets the latest frame,
or a short clip sampled at `fps` from the window, each downscaled to a pixel budget.
"""
from __future__ import annotations

import math
import threading
from collections import deque

import cv2
import numpy as np


def fit_pixel_budget(img: np.ndarray, max_pixels: int) -> np.ndarray:
    """Downscale (keeping the aspect ratio) so that H * W <= max_pixels; never upscale."""
    h, w = img.shape[:2]
    if h * w <= max_pixels:
        return img
    s = math.sqrt(max_pixels / (h * w))
    nh, nw = max(1, int(h * s)), max(1, int(w * s))
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)


class FrameWindow:
    """Thread-safe: camera callbacks add, the planner thread reads."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._frames: deque[tuple[float, np.ndarray]] = deque()
        self._lock = threading.Lock()

    def add(self, stamp: float, frame: np.ndarray) -> None:
        with self._lock:
            if self._frames and stamp < self._frames[-1][0]:
                self._frames.clear()  # time went backwards (sim reset): start over
            self._frames.append((stamp, frame))
            while self._frames and self._frames[0][0] < stamp - self.window_s:
                self._frames.popleft()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def latest_stamp(self) -> float | None:
        with self._lock:
            return self._frames[-1][0] if self._frames else None

    def clip(self, n_frames: int, fps: float, max_pixels: int) -> list[np.ndarray]:
        """Up to n_frames frames ending at the latest, 1/fps apart (oldest first)."""
        with self._lock:
            frames = list(self._frames)
        if not frames:
            return []
        picked: list[np.ndarray] = []
        t_next = frames[-1][0]
        for stamp, frame in reversed(frames):
            if len(picked) == n_frames:
                break
            if stamp <= t_next + 1e-9:
                picked.append(frame)
                t_next = stamp - 1.0 / fps
        return [fit_pixel_budget(f, max_pixels) for f in reversed(picked)]
