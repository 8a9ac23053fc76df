"""One camera frame through perception (pure): checks, blobs, detections, memory, annotation.

    perceiver = Perceiver(cfg)
    result = perceiver.process(rgb, stamp, intrinsics, pan, robot_pose, laser)

Bad input never raises and never invents objects: a frame without intrinsics, of the wrong
shape, or without odometry returns no detections and a diagnostic naming the problem; a laser
scan that is missing or older than `sensor_timeout` is not used (the camera alone ranges then)
and says so in `notes`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from qwen_stack.perception.camera_geometry import CameraPose, LaserScan2D, project_points
from qwen_stack.perception.config import PerceptionConfig
from qwen_stack.perception.detection import Detection, estimate
from qwen_stack.geometry import CameraIntrinsics, Pose2D
from qwen_stack.perception.memory import ObjectMemory
from qwen_stack.perception.segmentation import find_blobs

BOX_COLOURS = {"red": (230, 40, 40), "orange": (255, 140, 0), "yellow": (240, 220, 20), "green": (30, 200, 60),
               "blue": (40, 90, 255), "grey": (200, 200, 210)}


@dataclass
class FrameResult:
    detections: list[Detection] = field(default_factory=list)
    names: list[str] = field(default_factory=list)   # memory name of each detection
    error: str = ""                     # why the frame was not used ("" = used)
    notes: list[str] = field(default_factory=list)   # degraded but used (e.g. laser stale)


class Perceiver:
    def __init__(self, cfg: PerceptionConfig):
        self.cfg = cfg
        self.memory = ObjectMemory(cfg)
        self.cut_at_bottom: list[tuple[int, int, int, int]] = []   # boxes of blobs left out in the last frame

    def camera_pose(self, pan: float) -> CameraPose:
        r = self.cfg.robot
        return CameraPose.at(r.camera_xyz, r.base_height, r.camera_lens_x, r.camera_pitch, pan)

    def detect(self, rgb: np.ndarray, cam: CameraIntrinsics, pan: float, laser: LaserScan2D | None) -> list[Detection]:
        """Detections (base frame) in one frame; no memory update."""
        h, w = rgb.shape[:2]
        if (cam.width, cam.height) != (w, h):
            cam = cam.scaled_to(w, h)
        pose = self.camera_pose(pan)
        min_px = max(4, int(round(self.cfg.min_blob_pixels * (w * h) / (320 * 240))))
        out = []
        self.cut_at_bottom = []
        for blob in find_blobs(rgb, self.cfg.colours, min_px):
            if blob.touches_bottom:
                # cut by the image's lower edge: within half a metre, foot unseen (about to be grasped,
                # or held); no honest position. Seen whole from farther; its box hides spots meanwhile.
                self.cut_at_bottom.append((blob.left, blob.top, blob.right, blob.bottom))
                continue
            d = estimate(blob, cam, pose, self.cfg, laser)
            if d is None or d.distance > self.cfg.max_range:
                continue
            if d.solid and math.hypot(d.x, d.y) < self.cfg.robot.footprint_radius:
                continue                     # the robot's own body or the object it holds
            out.append(d)
        return out

    def process(self, rgb, stamp: float, cam: CameraIntrinsics | None, pan: float | None, robot: Pose2D | None,
                laser: LaserScan2D | None, pan_stamp: float | None = None) -> FrameResult:
        res = FrameResult()
        err = check_frame(rgb)
        if err:
            res.error = err
            return res
        if cam is None:
            res.error = "no CameraInfo received: cannot turn pixels into directions"
            return res
        if robot is None:
            res.error = "no odometry received: cannot place objects in the odom frame"
            return res
        if pan is None:
            if self.cfg.robot.camera_pan_joint:
                res.error = (f"no joint_states with {self.cfg.robot.camera_pan_joint!r} received: "
                             "camera direction unknown")
                return res
            pan = 0.0
        if laser is not None and abs(stamp - laser.stamp) > self.cfg.sensor_timeout:
            res.notes.append(f"laser scan is {abs(stamp - laser.stamp):.1f} s from the frame: ranging by camera only")
            laser = None
        elif laser is None:
            res.notes.append("no laser scan: ranging by camera only")
        res.detections = self.detect(rgb, cam, pan, laser)
        h, w = rgb.shape[:2]
        cam_s = cam if (cam.width, cam.height) == (w, h) else cam.scaled_to(w, h)
        entries = self.memory.update(res.detections, robot, stamp,
                                     self._clear_view_test(cam_s, pan, robot, res.detections, laser))
        res.names = [e.name for e in entries]
        return res

    def _clear_view_test(self, cam: CameraIntrinsics, pan: float, robot: Pose2D, detections: list[Detection],
                         laser: LaserScan2D | None):
        pose = self.camera_pose(pan)
        cfg = self.cfg
        margin = cfg.gone_view_margin * cam.width

        def clear(ox: float, oy: float) -> bool:
            bx, by = robot.to_base(ox, oy)
            dist = math.hypot(bx - pose.origin[0], by - pose.origin[1])
            if dist > cfg.gone_max_range or math.hypot(bx, by) < cfg.robot.footprint_radius + 0.1:
                return False
            uv, front = project_points(np.array([[bx, by, 0.02]]), cam, pose)
            u, v = uv[0]
            if not front[0] or not (margin <= u <= cam.width - margin and 0 <= v <= cam.height - 2):
                return False
            for d in detections:             # something nearer covers the spot
                l, t, r, b = d.box
                if l - 3 <= u <= r + 3 and v <= b + 3 and d.distance < dist - 0.1:
                    return False
            for l, t, r, b in self.cut_at_bottom:   # a near blob left out covers what is behind it
                if l - 3 <= u <= r + 3:
                    return False
            if laser is not None:
                lx, ly = laser.origin_xy
                rng = laser.range_at(math.atan2(by - ly, bx - lx), 0.05)
                if rng is not None and rng < math.hypot(bx - lx, by - ly) - 0.25:
                    return False             # a tall object stands in front of the spot
            return True

        return clear


def check_frame(rgb) -> str:
    """'' for a usable RGB frame, else what is wrong with it."""
    if not isinstance(rgb, np.ndarray):
        return f"frame is a {type(rgb).__name__}, not an image array"
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        return f"frame must be 8-bit RGB [H, W, 3], got {rgb.dtype} {list(rgb.shape)}"
    if rgb.shape[0] < 16 or rgb.shape[1] < 16:
        return f"frame of {rgb.shape[1]}x{rgb.shape[0]} pixels is too small"
    return ""


def annotate(rgb: np.ndarray, detections: list[Detection], names: list[str]) -> np.ndarray:
    """A copy of the frame with a box and a label per detection (RGB)."""
    out = rgb.copy()
    for d, name in zip(detections, names):
        l, t, r, b = d.box
        colour = BOX_COLOURS.get(d.colour, (255, 255, 255))
        cv2.rectangle(out, (l - 1, t - 1), (r + 1, b + 1), colour, 1)
        label = f"{name} {d.distance:.2f}m"
        cv2.putText(out, label, (max(0, l), max(9, t - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.32, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out
