"""One camera frame through perception (pure): checks, blobs, detections, memory, annotation.

    perceiver = Perceiver(cfg)
    result = perceiver.process(rgb, stamp, intrinsics, pan, robot_pose, laser)

Bad input never raises and never invents objects: a frame without intrinsics, of the wrong
shape, or without odometry returns no detections and a diagnostic naming the problem; a laser
scan that is missing or older than `sensor_timeout` is not used (the camera alone ranges then)
and says so in `notes`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from qwen_stack.perception.camera_geometry import CameraPose, LaserScan2D, project_points
from qwen_stack.perception.config import PerceptionConfig
from qwen_stack.perception.detection import Detection, estimate
from qwen_stack.geometry import CameraIntrinsics, Pose2D
from qwen_stack.perception.memory import MemoryEntry, ObjectMemory
from qwen_stack.perception.segmentation import find_blobs

# A solid blob cut by the image's side within this many area widths of a remembered floor area of its colour is
# a sliver of that area (its outline cut so that it reads as a low box), not an object
AREA_SLIVER_REACH = 0.8

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
        # boxes of near blobs left out in the last frame (cut by the lower edge, or the held load): they
        # hide what stands behind them
        self.cut_at_bottom: list[tuple[int, int, int, int]] = []
        # while the gripper holds something: its colour ("" unknown) and the upright cylinder it fills at the
        # pick site
        self.load: tuple[str, float, float] | None = None     # (colour, radius, height), m

    def hold(self, robot: Pose2D, name: str) -> MemoryEntry | None:
        """The gripper reports `name` held: memory takes it off the floor, and from now on the pixels of
        its colour where the load projects are the load itself, not objects ahead (the camera sees
        a held cylinder's top as a flat blob in mid-image that would range ~1 m out)."""
        held = [e for e in self.memory.entries if e.held]
        if self.load is not None and held:
            return held[0]     # the same report again (a latched topic, a bridge): one load, unchanged
        e = self.memory.hold(robot, self.cfg.robot.pick_x, name)
        # The cylinder is tight on purpose: the camera is only ~3 cm above a held cylinder's top, so 1 cm of
        # height moves the top's image by ~10 rows, over objects 1-3 m ahead; a sliver of the load left
        # outside it touches it and goes with it (detect).
        if e is not None:      # its measured size, the magnet's 1 cm lift and 5 mm
            self.load = (e.colour, e.width / 2 + 0.01, e.height + 0.015)
        else:                  # nothing remembered there: the largest load, the colour from the name if it has one
            colour = name.split("_")[0]
            self.load = (colour if colour in {c.name for c in self.cfg.colours} else "",
                         self.cfg.load_max_size / 2 + 0.01, self.cfg.load_max_size + 0.015)
        return e

    def release(self, robot: Pose2D) -> MemoryEntry | None:
        """The gripper let go: the load is a floor object again, where the gripper put it."""
        self.load = None
        return self.memory.release(robot, self.cfg.robot.pick_x)

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
        masked_out, near_load = None, None
        load = self._load_mask(cam, pose) if self.load is not None else None
        if load is not None:   # the held load hides what is behind it; its own pixels are not an object
            masked_out = {c.name: load for c in self.cfg.colours if self.load[0] in ("", c.name)}
            near_load = cv2.dilate(load, np.ones((5, 5), np.uint8))
            x, y, bw, bh = cv2.boundingRect(load)
            self.cut_at_bottom.append((x, y, x + bw - 1, y + bh - 1))
        for blob in find_blobs(rgb, self.cfg.colours, min_px, masked_out):
            touches_load = near_load is not None and \
                bool(near_load[blob.top:blob.bottom + 1, blob.left:blob.right + 1][blob.mask].any())
            if touches_load and blob.colour in masked_out:
                # touching the load in the image: a sliver of it, or something of its colour partly hidden
                # behind it (no honest size or range; seen whole once the load is put down or turned away)
                self.cut_at_bottom.append((blob.left, blob.top, blob.right, blob.bottom))
                continue
            if blob.touches_bottom:
                # cut by the image's lower edge: within half a metre, foot unseen (about to be grasped,
                # or held); no honest position. Seen whole from farther; its box hides spots meanwhile.
                self.cut_at_bottom.append((blob.left, blob.top, blob.right, blob.bottom))
                continue
            d = estimate(blob, cam, pose, self.cfg, laser)
            if d is None or d.distance > self.cfg.max_range:
                continue
            if touches_load and not d.solid:
                # a floor area partly hidden by the load (any colour): its visible part gives a wrong centre
                # and size (placed from it, a square drifted 0.2 m and split in two), but it is there: seen
                # from 1 m straight ahead while a cylinder is held, this is all the camera gets of it
                d = dataclasses.replace(d, partial=True)
            if d.solid and math.hypot(d.x, d.y) < self.cfg.robot.footprint_radius:
                continue                     # the robot's own body or the object it holds
            out.append(d)
        return out

    def _load_mask(self, cam: CameraIntrinsics, pose: CameraPose) -> np.ndarray | None:
        """uint8 [H, W]: where the held load projects, as an upright cylinder about the pick site (its
        measured half width as radius, from the floor to its top); None when none of it is in view.
        Points of its surface at least 2 cm in front of the camera, their convex hull filled (the part
        nearer than that is below the view). A cylinder, not a box: a box's near corners, 4 cm from
        the lens, would project across the whole image."""
        _, radius, height = self.load
        a, z = np.meshgrid(np.linspace(0.0, 2 * math.pi, 24, endpoint=False), np.linspace(0.0, height, 6))
        pts = np.stack([self.cfg.robot.pick_x + radius * np.cos(a.ravel()), radius * np.sin(a.ravel()), z.ravel()],
                       axis=-1)
        depth = (pts - pose.origin) @ pose.rotation[:, 2]
        uv, _ = project_points(pts[depth > 0.02], cam, pose)
        if len(uv) < 3:
            return None
        mask = np.zeros((cam.height, cam.width), np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(np.clip(uv, -1e4, 1e4)).astype(np.int32)), 255)
        return mask if mask.any() else None

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
        h, w = rgb.shape[:2]
        res.detections = self._without_area_slivers(self.detect(rgb, cam, pan, laser), robot, w)
        cam_s = cam if (cam.width, cam.height) == (w, h) else cam.scaled_to(w, h)
        entries = self.memory.update(res.detections, robot, stamp,
                                     self._clear_view_test(cam_s, pan, robot, res.detections, laser))
        res.names = [e.name or "?" for e in entries]     # "?": seen in one frame, not listed yet
        return res

    def _without_area_slivers(self, detections: list[Detection], robot: Pose2D, width: int) -> list[Detection]:
        """Drops solid detections cut by the image's left or right side that lie on a remembered floor area of
        their colour: driving past a painted square, the side cuts its outline into a low box on its edge
        (simulator: a phantom "yellow_cube" in the yellow square). Their boxes still hide what is behind them."""
        areas = [e for e in self.memory.entries if not e.solid and not e.gone]
        out = []
        for d in detections:
            l, _, r, _ = d.box
            if d.solid and (l <= 0 or r >= width - 1):
                ox, oy = robot.to_odom(d.x, d.y)
                if any(a.colour == d.colour and math.hypot(ox - a.x, oy - a.y) <= AREA_SLIVER_REACH * a.width
                       for a in areas):
                    self.cut_at_bottom.append(d.box)
                    continue
            out.append(d)
        return out

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
