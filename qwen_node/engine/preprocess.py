"""Image and video preprocessing as Qwen3.5's processor does it: resize to multiples of patch*merge (32)
within a pixel budget, scale to [-1, 1] (mean = std = 0.5), cut into 2x16x16 patches in merge-block order.

Index legend: F frames, C channels, P patch size, Tp temporal patch size, m merge size,
(t, h, w) grid in patches; one row per patch of C*Tp*P*P values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

PATCH, TEMPORAL_PATCH, MERGE = 16, 2, 2
IMAGE_MIN_PIXELS, IMAGE_MAX_PIXELS = 65536, 16777216          # Qwen3.5 preprocessor_config.json "size"
VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS = 128 * 32 * 32, 768 * 32 * 32


@dataclass
class VisionInput:
    patches: torch.Tensor           # [t*h*w, C*Tp*P*P] float32
    grid: tuple[int, int, int]      # (t, h, w) in patches
    timestamps: list[float] | None = None   # video: seconds per temporal patch pair

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w // (MERGE * MERGE)


def smart_resize(height: int, width: int, factor: int = PATCH * MERGE, min_pixels: int = IMAGE_MIN_PIXELS,
                 max_pixels: int = IMAGE_MAX_PIXELS) -> tuple[int, int]:
    """Nearest size with both sides multiples of `factor`, area within [min_pixels, max_pixels], aspect kept."""
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width} is empty")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image aspect ratio {max(height, width) / min(height, width):.0f} is above 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def _check_frame(img, where: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"{where}: expected an HxWx3 uint8 array, got shape {a.shape} dtype {a.dtype}")
    return a


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image
    if a.shape[:2] == (h, w):
        return a
    return np.asarray(Image.fromarray(a).resize((w, h), resample=Image.BICUBIC))


def patchify(frames: np.ndarray) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """frames: [F, H, W, 3] uint8, F a multiple of Tp, H and W multiples of P*m -> (patches, grid)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(255.0).sub(0.5).div(0.5)   # [F, H, W, C]
    x = x.permute(0, 3, 1, 2)                                                                 # [F, C, H, W]
    F_, C, H, W = x.shape
    t, h, w = F_ // TEMPORAL_PATCH, H // PATCH, W // PATCH
    x = x.reshape(t, TEMPORAL_PATCH, C, h // MERGE, MERGE, PATCH, w // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)          # t, h/m, w/m, m, m | C, Tp, P, P
    return x.reshape(t * h * w, C * TEMPORAL_PATCH * PATCH * PATCH).contiguous(), (t, h, w)


def preprocess_image(image, min_pixels: int = IMAGE_MIN_PIXELS, max_pixels: int = IMAGE_MAX_PIXELS) -> VisionInput:
    """HxWx3 uint8 image -> patches (the frame repeated to fill one temporal patch)."""
    a = _check_frame(image, "image")
    h, w = smart_resize(a.shape[0], a.shape[1], min_pixels=min_pixels, max_pixels=max_pixels)
    a = _resize(a, h, w)
    patches, grid = patchify(np.repeat(a[None], TEMPORAL_PATCH, axis=0))
    return VisionInput(patches, grid)


def sample_frame_indices(num_frames: int, video_fps: float, target_fps: float = 2.0, min_frames: int = 4,
                         max_frames: int = 768) -> list[int]:
    """Frames to keep for sampling at target_fps (at least min_frames, at most max_frames and num_frames)."""
    if num_frames < 1:
        raise ValueError("video has no frames")
    if video_fps <= 0 or target_fps <= 0:
        raise ValueError(f"fps must be positive (video {video_fps}, target {target_fps})")
    n = int(num_frames / video_fps * target_fps)
    n = min(max(n, min_frames), max_frames, num_frames)
    return [int(i) for i in np.arange(0, num_frames, num_frames / n)[:n]]


def preprocess_video(frames, video_fps: float, target_fps: float = 2.0, min_pixels: int = VIDEO_MIN_PIXELS,
                     max_pixels: int = VIDEO_MAX_PIXELS, min_frames: int = 4, max_frames: int = 768) -> VisionInput:
    """[F, H, W, 3] uint8 frames at video_fps -> patches of frames sampled at target_fps, padded to an even
    count by repeating the last one, with one timestamp (mean of the pair, seconds) per temporal patch."""
    frames = [_check_frame(f, f"video frame {i}") for i, f in enumerate(frames)]
    idx = sample_frame_indices(len(frames), video_fps, target_fps, min_frames, max_frames)
    if len(idx) % TEMPORAL_PATCH:
        idx += [idx[-1]] * (TEMPORAL_PATCH - len(idx) % TEMPORAL_PATCH)
    H, W = frames[0].shape[:2]
    if any(f.shape[:2] != (H, W) for f in frames):
        raise ValueError("video frames differ in size")
    h, w = smart_resize(H, W, min_pixels=min_pixels, max_pixels=max_pixels)
    picked = np.stack([_resize(frames[i], h, w) for i in idx])
    patches, grid = patchify(picked)
    secs = [i / video_fps for i in idx]
    stamps = [(secs[k] + secs[k + TEMPORAL_PATCH - 1]) / 2 for k in range(0, len(secs), TEMPORAL_PATCH)]
    return VisionInput(patches, grid, stamps)
