"""Perception settings: one dataclass, every field commented, bad values rejected by name.

The ROS shell declares one parameter per scalar field; config/perception.yaml carries the same
names with comments. Colours are a table (name -> HSV ranges) that the YAML may extend. The robot
(camera and laser mounts, footprint, pick site) is not a perception setting: `robot` is the robot
description (config/robot.yaml), which the node reads from its robot_file parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from qwen_stack.node_parameters import NOT_A_PARAMETER, parameter_defaults as _declared
from qwen_stack.robot import ROBOT_FILE, RobotSpec, load_robot


class PerceptionConfigError(ValueError):
    """A perception parameter is invalid; the message names it."""


@dataclass(frozen=True)
class ColourClass:
    """A colour as OpenCV HSV ranges (H 0..180, S and V 0..255); a pixel belongs when any hue range holds."""
    name: str
    hue: tuple[tuple[int, int], ...]   # one or more [low, high] hue ranges (red wraps around 0)
    sat: tuple[int, int]
    val: tuple[int, int]


# The arena's colours (sim/scenarios): saturated paints plus the crate's bluish grey. The floor
# and the walls are unsaturated or yellowish-grey and match none; the sky is a lighter, more
# saturated and greener blue-grey than the crate. Blobs whose lowest point is above the horizon
# are dropped anyway: every object touches the floor.
DEFAULT_COLOURS: tuple[ColourClass, ...] = (
    ColourClass("red", ((0, 7), (172, 180)), (110, 255), (40, 255)),
    ColourClass("orange", ((9, 19),), (110, 255), (40, 255)),
    ColourClass("yellow", ((21, 34),), (110, 255), (40, 255)),
    ColourClass("green", ((40, 85),), (90, 255), (30, 255)),
    ColourClass("blue", ((95, 130),), (110, 255), (40, 255)),
    ColourClass("grey", ((113, 135),), (12, 45), (20, 170)),   # the sky: hue ~108, saturation ~52, brighter
)


@dataclass(frozen=True)
class PerceptionConfig:
    # --- segmentation ---
    min_blob_pixels: int = 12                 # blobs smaller than this (at 320x240; scaled by image area) are noise
    max_range: float = 4.0                    # m, detections farther than this are dropped (poor resolution)
    # --- classification ---
    crate_min_size: float = 0.2               # m, an object at least this wide or tall is a crate
    max_object_size: float = 0.45             # m, widest object footprint (a crate's diagonal): a laser surface longer is a wall
    flat_max_height: float = 0.045            # m, a blob lower than this is an area painted on the floor (cubes are 0.08)
    load_max_size: float = 0.16               # m, width and height of the largest load the gripper carries: its box about the
                                              # pick site when perception never saw what was grasped (else the load's measured size)
    name_min_confidence: float = 0.6          # share of sightings that must agree on a shape before it names the object
    # --- memory ---
    associate_radius: float = 0.35            # m, a detection this close to a remembered object of its colour is that object
    confirm_radius: float = 1.0               # m, a new object this close to a listed one of its colour is tentative (a range error of
                                              # one frame puts a copy of a known object just outside associate_radius)
    confirm_sightings: int = 2                # frames a tentative object must be seen in before it is listed
    confirm_within: float = 3.0               # s of sensor time: a tentative object not seen in that many frames by then is forgotten
    gone_after_frames: int = 6                # frames in a row in which a remembered spot is in view and empty before it is marked gone
    gone_view_margin: float = 0.1             # share of the image width kept free at the borders for the gone check
    gone_max_range: float = 2.5               # m, the gone check only trusts views of spots nearer than this
    sensor_timeout: float = 1.0               # s of sensor time: a laser scan or pan older than the frame by more is not used
    max_pan_rate: float = 0.3                 # rad/s, frames taken while the camera pans faster are skipped (pose too uncertain)
    max_turn_rate: float = 1.0                # rad/s, frames taken while the base turns faster are skipped
    colours: tuple[ColourClass, ...] = field(default_factory=lambda: DEFAULT_COLOURS, metadata=NOT_A_PARAMETER)
    # the robot: camera mount and tilt, laser mount, footprint (detections inside it are the robot itself or the
    # object it holds), pick site (a grasped object is taken from and released at it)
    robot: RobotSpec = field(default_factory=load_robot, metadata=NOT_A_PARAMETER)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> PerceptionConfigError:
            return PerceptionConfigError(f"perception parameter {name!r}: {why} (got {getattr(self, name)!r})")

        for name in ("max_range", "crate_min_size", "max_object_size",
                     "flat_max_height", "load_max_size", "associate_radius", "confirm_radius", "confirm_within", "gone_max_range", "sensor_timeout", "max_pan_rate",
                     "max_turn_rate"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise bad(name, "must be a finite number > 0")
        for name in ("min_blob_pixels", "confirm_sightings", "gone_after_frames"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise bad(name, "must be an integer > 0")
        if not 0 < self.name_min_confidence <= 1:
            raise bad("name_min_confidence", "must be in (0, 1]")
        if not 0 <= self.gone_view_margin < 0.5:
            raise bad("gone_view_margin", "must be in [0, 0.5)")
        if not self.colours:
            raise bad("colours", "needs at least one colour")
        for c in self.colours:
            for lo, hi in c.hue:
                if not 0 <= lo <= hi <= 180:
                    raise bad("colours", f"{c.name}: hue range [{lo}, {hi}] must lie in 0..180, low <= high")
            for what, (lo, hi) in (("sat", c.sat), ("val", c.val)):
                if not 0 <= lo <= hi <= 255:
                    raise bad("colours", f"{c.name}: {what} range [{lo}, {hi}] must lie in 0..255, low <= high")
            if not c.name.isidentifier():
                raise bad("colours", f"colour name {c.name!r} must be an identifier (it becomes part of object names)")



def colours_from_dict(doc: Mapping[str, Any]) -> tuple[ColourClass, ...]:
    """{name: {hue: [[lo, hi], ...] or [lo, hi], sat: [lo, hi], val: [lo, hi]}} -> ColourClass tuple."""
    out = []
    if not isinstance(doc, Mapping):
        raise PerceptionConfigError(f"perception parameter 'colours': expected a mapping, got {doc!r}")
    for name, spec in doc.items():
        try:
            hue = spec["hue"]
            hue = [hue] if hue and isinstance(hue[0], (int, float)) else hue
            out.append(ColourClass(str(name), tuple((int(a), int(b)) for a, b in hue),
                                   (int(spec["sat"][0]), int(spec["sat"][1])),
                                   (int(spec["val"][0]), int(spec["val"][1]))))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise PerceptionConfigError(f"perception parameter 'colours': {name!r} needs hue, sat and val "
                                        f"ranges ({type(exc).__name__}: {exc})") from None
    return tuple(out)


def config_from_dict(values: Mapping[str, Any], robot: RobotSpec | None = None) -> PerceptionConfig:
    """Build from plain values (ROS parameters) on `robot` (None: config/robot.yaml); unknown names are
    refused by name (a robot fact among them: it is the robot description's, not perception's)."""
    known = {f.name for f in fields(PerceptionConfig)} - {"robot"}
    unknown = set(values) - known
    if unknown:
        raise PerceptionConfigError(f"unknown perception parameter(s) {sorted(unknown)}; known: {sorted(known)} "
                                    f"(the robot's mounts and footprint come from robot_file)")
    kwargs = dict(values)
    if robot is not None:
        kwargs["robot"] = robot
    if "colours" in kwargs and not isinstance(kwargs["colours"], tuple):
        kwargs["colours"] = colours_from_dict(kwargs["colours"])
    try:
        return PerceptionConfig(**kwargs)
    except TypeError as exc:
        raise PerceptionConfigError(f"perception parameters: {exc}") from None


# Parameters of the ROS shell only (perception/node.py); the rest are PerceptionConfig's scalar fields.
NODE_PARAMETERS = {
    "max_rate": 5.0,            # frames per wall-clock second perception processes at most (a CPU budget)
    "odom_frame": "odom",       # frame_id of the published objects and markers
    "publish_annotated": True,  # publish perception/image_annotated
    "robot_file": ROBOT_FILE,   # the robot description (config/ name or path); the stack sets it
}


def parameter_defaults() -> dict[str, Any]:
    """name -> default of every ROS parameter perception_node declares (qwen_stack.parameter_schema):
    PerceptionConfig's fields but the colour table and the robot, and the node's own."""
    return {**_declared(PerceptionConfig), **NODE_PARAMETERS}
