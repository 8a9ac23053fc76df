"""What the planner knows of the world for grounding and object goals (ROS-free).

The ROS shell stores the latest CameraInfo, LaserScan, odometry, camera pan and (in the
simulator only) true poses here as plain values; the planner thread reads them.
`object_locator = "sim_ground_truth"` is a TEST DOUBLE of perception: object positions come
from the simulator's ground truth (topics.SIM_OBJECTS), converted to the odom frame with the
true and the odometry base pose. A real robot uses go_to_point (grounding) instead.
"""
from __future__ import annotations

import math
import threading
import time

from qwen_stack.qwen_node.agent.grounding import (
    CameraIntrinsics, CameraMount, GroundedGoal, LaserReading, Pose2D, ground_point, world_to_odom)


class SensorWorldView:
    def __init__(self, mount: CameraMount, laser_xy: tuple[float, float], object_locator: str,
                 sensor_wait_s: float = 3.0):
        self.mount, self.laser_xy, self.object_locator = mount, laser_xy, object_locator
        self.sensor_wait_s = sensor_wait_s   # how long a reader waits for a sensor that has not spoken yet
        self._lock = threading.Lock()
        self.intrinsics: CameraIntrinsics | None = None
        self.laser: LaserReading | None = None
        self.odom: Pose2D | None = None
        self.pan = 0.0
        self.true_base: Pose2D | None = None           # sim ground truth (world frame)
        self.true_objects: dict[str, tuple[float, float]] = {}   # world frame
        self.solid_objects: set[str] = set()           # objects that stand on the floor (not areas, not held)
        self._odom_at_truth: Pose2D | None = None      # odometry when true_base was received

    # --- writers (ROS callbacks) ---
    def set_intrinsics(self, k: list[float], width: int, height: int) -> None:
        with self._lock:
            self.intrinsics = CameraIntrinsics.from_k(k, width, height)

    def set_laser(self, angle_min: float, angle_increment: float, ranges: list[float], range_min: float,
                  range_max: float) -> None:
        with self._lock:
            self.laser = LaserReading(self.laser_xy, angle_min, angle_increment, ranges, range_min, range_max)

    def set_odom(self, x: float, y: float, yaw: float) -> None:
        with self._lock:
            self.odom = Pose2D(x, y, yaw)

    def set_pan(self, pan: float) -> None:
        with self._lock:
            self.pan = pan

    def set_true_base(self, x: float, y: float, yaw: float) -> None:
        with self._lock:
            self.true_base = Pose2D(x, y, yaw)
            self._odom_at_truth = self.odom

    def set_true_objects(self, objects: dict[str, tuple[float, float]], solid: set[str] | None = None) -> None:
        with self._lock:
            self.true_objects = dict(objects)
            self.solid_objects = set(objects) if solid is None else set(solid)

    # --- readers (planner thread) ---
    def _wait_for(self, ready) -> None:
        """Give sensors that have not spoken yet (a node just started) a moment."""
        end = time.monotonic() + self.sensor_wait_s
        while time.monotonic() < end:
            with self._lock:
                if ready():
                    return
            time.sleep(0.02)

    def robot_pose(self) -> Pose2D | str:
        self._wait_for(lambda: self.odom is not None)
        with self._lock:
            return self.odom if self.odom is not None else "no odometry received yet"

    def ground_point(self, x_1000: float, y_1000: float, standoff: float) -> GroundedGoal | str:
        self._wait_for(lambda: self.intrinsics is not None and self.odom is not None)
        with self._lock:
            cam, laser, odom, pan = self.intrinsics, self.laser, self.odom, self.pan
        if cam is None:
            return "no CameraInfo received yet: cannot ground an image point"
        if odom is None:
            return "no odometry received yet"
        return ground_point(x_1000, y_1000, cam, self.mount, pan, laser, odom, standoff)

    def obstacles(self, exclude: set[str]) -> list[tuple[float, float]]:
        """Known objects standing on the floor (odom frame), except `exclude` and held ones; floor
        areas are not obstacles. Empty without the ground-truth locator."""
        if self.object_locator != "sim_ground_truth":
            return []
        with self._lock:
            truth, odom, objects = self.true_base, self._odom_at_truth, dict(self.true_objects)
            solid = set(self.solid_objects)
        if truth is None or odom is None:
            return []
        return [world_to_odom(xy, truth, odom) for n, xy in objects.items() if n in solid and n not in exclude]

    def locate_object(self, name: str) -> tuple[float, float] | str:
        if self.object_locator != "sim_ground_truth":
            return "no object locator is configured (object_locator: none); use go_to_point on the camera image"
        self._wait_for(lambda: self.true_base is not None and self._odom_at_truth is not None and bool(self.true_objects))
        with self._lock:
            truth, odom, objects = self.true_base, self._odom_at_truth, dict(self.true_objects)
        if truth is None or odom is None:
            return "the simulator's ground truth has not been received yet"
        key = name.strip().lower().replace(" ", "_")
        if key not in objects:
            return f"no object named {name!r}; known: {sorted(objects)}"
        return world_to_odom(objects[key], truth, odom)


def yaw_of_quaternion(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
