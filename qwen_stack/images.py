"""sensor_msgs image payloads <-> RGB arrays (ROS-free: the fields, not the message). One decoder for every
part that reads camera images (the agent's frame window, perception, the console's video) and one JPEG encoder
for every part that writes them; errors are strings a node can report."""
from __future__ import annotations

import cv2
import numpy as np


def decode_raw(width: int, height: int, encoding: str, step: int, data: bytes) -> np.ndarray | str:
    """sensor_msgs/Image fields -> RGB [H, W, 3] uint8, or an error string."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding)
    if channels is None:
        return f"unsupported image encoding {encoding!r}"
    if width <= 0 or height <= 0 or step < width * channels or len(data) < step * height:
        return f"image buffer does not match {width}x{height} {encoding} (step {step}, {len(data)} bytes)"
    rows = np.frombuffer(data, np.uint8, count=step * height).reshape(height, step)
    img = rows[:, :width * channels].reshape(height, width, channels)   # img: [H, W, C]
    if encoding == "bgr8":
        img = img[:, :, ::-1]
    elif encoding == "rgba8":
        img = img[:, :, :3]
    elif encoding == "bgra8":
        img = img[:, :, 2::-1]
    elif encoding == "mono8":
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes | None:
    """RGB [H, W, 3] uint8 -> JPEG bytes (OpenCV writes BGR, hence the flip); None if OpenCV cannot encode it."""
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return jpeg.tobytes() if ok else None


def decode_compressed(data: bytes) -> np.ndarray | str:
    """sensor_msgs/CompressedImage data (JPEG/PNG) -> RGB [H, W, 3] uint8, or an error string."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return "compressed image could not be decoded"
    return np.ascontiguousarray(bgr[:, :, ::-1])
