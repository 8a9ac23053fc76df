"""qwen_stack.images: the one JPEG encoder (camera, sim, console video, OpenAI backend) against the one decoder."""
from __future__ import annotations

import numpy as np

from qwen_stack.images import decode_compressed, decode_raw, encode_jpeg


def _picture() -> np.ndarray:
    rgb = np.zeros((24, 40, 3), np.uint8)       # [H, W, 3]
    rgb[:, :20] = (230, 30, 30)                 # red left half, blue right half
    rgb[:, 20:] = (30, 30, 230)
    return rgb


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to JPEG loss, away from the red/blue edge (chroma subsampling blurs 8 columns around it)."""
    inner = np.r_[0:12, 28:40]
    return int(np.abs(a[:, inner].astype(int) - b[:, inner].astype(int)).max()) < 30


def test_jpeg_round_trip_keeps_colours_in_rgb_order():
    jpeg = encode_jpeg(_picture(), 90)
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    back = decode_compressed(jpeg)
    assert back.shape == (24, 40, 3)
    assert _close(back, _picture())                                      # not swapped: red stays red


def test_padded_bgr_rows_decode_then_encode():
    bgr = _picture()[..., ::-1]
    step = 40 * 3 + 8                                             # 8 bytes of padding per row
    rows = np.zeros((24, step), np.uint8)
    rows[:, :120] = bgr.reshape(24, 120)
    rgb = decode_raw(40, 24, "bgr8", step, rows.tobytes())
    assert not isinstance(rgb, str)
    assert np.array_equal(rgb, _picture())
    assert _close(decode_compressed(encode_jpeg(rgb, 90)), _picture())


def test_malformed_buffers_are_reported_not_encoded():
    assert isinstance(decode_raw(40, 24, "rgb8", 120, b"\x00" * 100), str)
    assert isinstance(decode_raw(40, 24, "yuv422", 80, b"\x00" * 80 * 24), str)
