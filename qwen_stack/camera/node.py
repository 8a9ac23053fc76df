"""camera_node: publishes a frame source as Image, CompressedImage (JPEG) and CameraInfo.

Thin shell: settings come from CameraConfig, frames from camera.sources. A source that
cannot be opened ends the node with a message naming it (exit code 2); a source that stops
mid-run is reported on /diagnostics and reopened, and nothing is published meanwhile.
"""
from __future__ import annotations

import sys

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from qwen_stack import topics
from qwen_stack.camera.config import CameraConfig, CameraConfigError
from qwen_stack.camera.sources import RetryingSource, SourceError, open_source
from qwen_stack.images import encode_jpeg
from qwen_stack.node_main import run_node
from qwen_stack.node_parameters import settings_from_node


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera")
        self.config = settings_from_node(self, CameraConfig)
        cfg = self.config
        self.source = RetryingSource(open_source(cfg.source, cfg.width, cfg.height), cfg.retry_period_s)

        qos = qos_profile_sensor_data if cfg.qos == "sensor_data" else QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.pub_raw = self.create_publisher(Image, topics.CAMERA_IMAGE, qos) if cfg.publish_raw else None
        self.pub_jpeg = (self.create_publisher(CompressedImage, topics.CAMERA_COMPRESSED, qos)
                         if cfg.publish_compressed else None)
        self.pub_info = self.create_publisher(CameraInfo, topics.CAMERA_INFO, qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.info = self._camera_info()
        self.published = 0
        self.create_timer(1.0 / cfg.fps, self._tick)
        self.create_timer(1.0, self._diagnostics)
        self.get_logger().info(
            f"streaming {self.source.source.description} at {cfg.width}x{cfg.height} {cfg.fps:g} Hz ({cfg.qos})")

    def _camera_info(self) -> CameraInfo:
        cfg = self.config
        fx, fy, cx, cy = cfg.intrinsics()
        info = CameraInfo(width=cfg.width, height=cfg.height, distortion_model="plumb_bob")
        info.d = [0.0] * 5
        info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        info.header.frame_id = cfg.frame_id
        return info

    def _tick(self) -> None:
        frame = self.source.read()  # [H, W, 3] RGB uint8, or None while the source is down
        if frame is None:
            return
        cfg = self.config
        stamp = self.get_clock().now().to_msg()
        if self.pub_raw is not None:
            data = frame if cfg.encoding == "rgb8" else np.ascontiguousarray(frame[..., ::-1])
            msg = Image(height=cfg.height, width=cfg.width, encoding=cfg.encoding, is_bigendian=0, step=cfg.width * 3)
            msg.header.stamp, msg.header.frame_id = stamp, cfg.frame_id
            msg.data = data.tobytes()
            self.pub_raw.publish(msg)
        if self.pub_jpeg is not None:
            jpeg = encode_jpeg(frame, cfg.jpeg_quality)
            if jpeg is not None:
                msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
                msg.header.stamp, msg.header.frame_id = stamp, cfg.frame_id
                msg.data = jpeg
                self.pub_jpeg.publish(msg)
        self.info.header.stamp = stamp
        self.pub_info.publish(self.info)
        self.published += 1

    def _diagnostics(self) -> None:
        down = self.source.stopped_since is not None
        status = DiagnosticStatus(
            level=DiagnosticStatus.ERROR if down else DiagnosticStatus.OK,
            name=f"{self.get_fully_qualified_name()}: camera",
            message=self.source.last_error if down else "streaming",
            hardware_id=self.config.source)
        status.values = [KeyValue(key="frames_published", value=str(self.published)),
                         KeyValue(key="source", value=self.source.source.description)]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)
        if down:
            self.get_logger().warning(f"source down: {self.source.last_error}; retrying", throttle_duration_sec=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node("camera_node", CameraNode, argv=args, config_errors=(SourceError, CameraConfigError),
                    on_stop=lambda node: node.source.source.close())


if __name__ == "__main__":
    sys.exit(main())
