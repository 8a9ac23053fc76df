"""What the planner knows of the world for grounding and object goals (ROS-free).

The ROS shell stores the latest CameraInfo, LaserScan, odometry, camera pan and perception's
object memory (perception/objects, qwen_stack_interfaces/DetectedObjects) here as plain values;
the planner thread reads them. `object_locator = "perception"`: go_to_object, obstacles,
detect_objects and describe_state's "objects" come from that memory (odom frame); "none": no
object is known by name (go_to_point on the camera image only). Nothing here reads the
simulator's ground truth.
"""
from __future__ import annotations

import math
import threading
import time

from qwen_stack.geometry import CameraIntrinsics, Pose2D
from qwen_stack.perception.memory import memory_report
from qwen_stack.qwen_node.agent.grounding import CameraMount, GroundedGoal, LaserReading, ground_point, object_key

# perception/objects older than this (receipt, monotonic) no longer says what is in view now
IN_VIEW_FRESH_S = 1.5
# detect_objects' fresh answer: a message received this long after the call (two of perception's frames at
# 5 Hz: a new object beside a known one of its colour is listed from its second sighting)
FRESH_AFTER_S = 0.45


class SensorWorldView:
    def __init__(self, mount: CameraMount, laser_xy: tuple[float, float], object_locator: str,
                 sensor_wait_s: float = 3.0):
        self.mount, self.laser_xy, self.object_locator = mount, laser_xy, object_locator
        self.sensor_wait_s = sensor_wait_s   # how long a reader waits for a sensor that has not spoken yet
        self._lock = threading.Lock()
        self.intrinsics: CameraIntrinsics | str | None = None   # str: why the last CameraInfo is unusable
        self.laser: LaserReading | None = None
        self.odom: Pose2D | None = None
        self.pan = 0.0
        # perception's memory: dicts with name, colour, shape, x, y, solid, confidence, last_seen, in_view
        self.objects: list[dict] = []
        self.objects_stamp: float | None = None        # sensor time of the latest perception/objects
        self._objects_received: float | None = None    # monotonic receipt time of it

    # --- writers (ROS callbacks) ---
    def set_intrinsics(self, k: list[float], width: int, height: int) -> None:
        """CameraInfo; one that cannot describe a camera (zero focal length: uncalibrated) is kept as its error,
        so grounding refuses with the reason instead of dividing by zero."""
        with self._lock:
            self.intrinsics = CameraIntrinsics.from_camera_info(k, width, height)

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

    def set_objects(self, objects: list[dict], stamp: float) -> None:
        """perception/objects as plain dicts (see agent_node.detected_objects_to_dicts)."""
        with self._lock:
            self.objects = [dict(o) for o in objects]
            self.objects_stamp = stamp
            self._objects_received = time.monotonic()

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
        if isinstance(cam, str):
            return f"the camera's CameraInfo cannot be used ({cam}): cannot ground an image point"
        if odom is None:
            return "no odometry received yet"
        return ground_point(x_1000, y_1000, cam, self.mount, pan, laser, odom, standoff)

    def _memory(self) -> tuple[list[dict], float | None, float | None] | str:
        if self.object_locator != "perception":
            return "no object locator is configured (object_locator: none); use go_to_point on the camera image"
        self._wait_for(lambda: self.objects_stamp is not None)
        with self._lock:
            if self.objects_stamp is None:
                return "perception has not published perception/objects yet (is perception_node running?)"
            return list(self.objects), self.objects_stamp, self._objects_received

    def obstacles(self, exclude: set[str]) -> list[tuple[float, float]]:
        """Remembered objects standing on the floor (odom frame), except `exclude`; floor areas are
        not obstacles and the held object is not in memory. Empty without perception."""
        mem = self._memory()
        if isinstance(mem, str):
            return []
        return [(o["x"], o["y"]) for o in mem[0] if o["solid"] and o["name"] not in exclude]

    def is_floor_area(self, name: str) -> bool:
        mem = self._memory()
        key = object_key(name)
        return not isinstance(mem, str) and any(o["name"] == key and not o["solid"] for o in mem[0])

    def locate_object(self, name: str) -> tuple[float, float] | str:
        mem = self._memory()
        if isinstance(mem, str):
            return mem
        key = object_key(name)
        for o in mem[0]:
            if o["name"] == key:
                return o["x"], o["y"]
        known = sorted(o["name"] for o in mem[0])
        return (f"no object named {name!r} in memory (known: {known}); look around first: rotate or look_at, "
                f"then detect_objects")

    def detect_objects(self, fresh_wait_s: float = 2.0) -> dict:
        """The detect_objects result: names in view now and the whole memory (shared contract).
        fresh_wait_s > 0: wait up to that long for perception's answer to a frame taken after the
        call, so that `in_view` is what the camera sees now, not before the last motion."""
        asked = time.monotonic()
        while time.monotonic() < asked + fresh_wait_s:
            with self._lock:
                if self._objects_received is not None and self._objects_received > asked + FRESH_AFTER_S:
                    break
            time.sleep(0.02)
        mem = self._memory()
        if isinstance(mem, str):
            return {"error": mem}
        objects, stamp, received = mem
        age = time.monotonic() - received if received is not None else math.inf
        fresh = age <= IN_VIEW_FRESH_S
        # seen_s_ago: sensor time of the message minus last sighting, plus how long ago it arrived
        now = (stamp or 0.0) + max(0.0, age)
        with self._lock:
            odom = self.odom
        entries = [dict(o, in_view=o["in_view"] and fresh) for o in objects]
        return memory_report(entries, (odom.x, odom.y) if odom is not None else None, now)

    def object_memory(self) -> list[dict]:
        """describe_state's "objects": the memory entries of detect_objects (empty without perception)."""
        return self.detect_objects(fresh_wait_s=0.0).get("memory", [])

