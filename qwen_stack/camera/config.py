"""camera_node settings: one dataclass, validated, every field documented in config/camera.yaml."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields


class CameraConfigError(ValueError):
    """A camera parameter that cannot be used; the message names it."""


@dataclass(frozen=True)
class CameraConfig:
    source: str = "pattern"
    fps: float = 30.0
    width: int = 640
    height: int = 480
    frame_id: str = "camera_optical_frame"
    encoding: str = "rgb8"
    jpeg_quality: int = 80
    publish_raw: bool = True
    publish_compressed: bool = True
    qos: str = "sensor_data"
    horizontal_fov_deg: float = 60.0
    retry_period_s: float = 1.0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise CameraConfigError(f"camera parameter '{name}' = {getattr(self, name)!r}: {why}")

        if not isinstance(self.source, str) or not self.source.strip():
            bad("source", "must name a source (pattern, a device, a file, a folder or a URL)")
        if not (math.isfinite(self.fps) and 0 < self.fps <= 240):
            bad("fps", "must be in (0, 240]")
        if not 16 <= self.width <= 7680:
            bad("width", "must be in [16, 7680]")
        if not 16 <= self.height <= 4320:
            bad("height", "must be in [16, 4320]")
        if not self.frame_id:
            bad("frame_id", "must not be empty")
        if self.encoding not in ("rgb8", "bgr8"):
            bad("encoding", "must be 'rgb8' or 'bgr8'")
        if not 1 <= self.jpeg_quality <= 100:
            bad("jpeg_quality", "must be in [1, 100]")
        if self.qos not in ("sensor_data", "reliable"):
            bad("qos", "must be 'sensor_data' or 'reliable'")
        if not (math.isfinite(self.horizontal_fov_deg) and 1 <= self.horizontal_fov_deg <= 179):
            bad("horizontal_fov_deg", "must be in [1, 179]")
        if not (math.isfinite(self.retry_period_s) and self.retry_period_s > 0):
            bad("retry_period_s", "must be > 0")
        if not (self.publish_raw or self.publish_compressed):
            bad("publish_raw", "publish_raw and publish_compressed are both false: nothing to publish")

    @classmethod
    def from_dict(cls, values: dict) -> "CameraConfig":
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise CameraConfigError(f"unknown camera parameters: {sorted(unknown)}")
        return cls(**values)

    def intrinsics(self) -> tuple[float, float, float, float]:
        """Pinhole fx, fy, cx, cy from the horizontal field of view (square pixels)."""
        fx = (self.width / 2.0) / math.tan(math.radians(self.horizontal_fov_deg) / 2.0)
        return fx, fx, (self.width - 1) / 2.0, (self.height - 1) / 2.0
