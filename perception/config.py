"""Perception settings: one dataclass, every field commented, bad values rejected by name.

The ROS shell declares one parameter per scalar field; config/perception.yaml carries the same
names with comments. Colours are a table (name -> HSV ranges) that the YAML may extend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


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
    # --- robot description (sim/world.py RobotSpec) ---
    base_height: float = 0.05                 # m, base_link above the floor (the wheel axle)
    camera_pan_axis_xyz: tuple = (0.10, 0.0, 0.15)  # m, camera pan axis origin in base_link
    camera_optical_offset: float = 0.02       # m, optical centre ahead of the pan axis along the (pitched) camera x
    camera_pitch: float = 0.2618              # rad, + looks down
    camera_pan_joint: str = "camera_pan_joint"  # joint_states name of the pan joint ("" = fixed camera at pan 0)
    laser_xyz: tuple = (0.05, 0.0, 0.11)      # m, laser origin in base_link
    robot_radius: float = 0.22                # m, detections whose centre falls inside this circle are the robot itself or the held object
    pick_x: float = 0.22                      # m, the gripper's pick point ahead of base_link: a grasped object is taken from, and released at, it
    # --- segmentation ---
    min_blob_pixels: int = 12                 # blobs smaller than this (at 320x240; scaled by image area) are noise
    max_range: float = 3.5                    # m, detections farther than this are dropped (poor resolution)
    # --- classification ---
    crate_min_size: float = 0.2               # m, an object at least this wide or tall is a crate
    max_object_size: float = 0.45             # m, widest object footprint (a crate's diagonal): a laser surface longer is a wall
    flat_max_height: float = 0.045            # m, a blob lower than this is an area painted on the floor (cubes are 0.08)
    name_min_confidence: float = 0.6          # share of sightings that must agree on a shape before it names the object
    # --- memory ---
    associate_radius: float = 0.35            # m, a detection this close to a remembered object of its colour is that object
    gone_after_frames: int = 6                # frames in a row in which a remembered spot is in view and empty before it is marked gone
    gone_view_margin: float = 0.1             # share of the image width kept free at the borders for the gone check
    gone_max_range: float = 2.5               # m, the gone check only trusts views of spots nearer than this
    sensor_timeout: float = 1.0               # s of sensor time: a laser scan or pan older than the frame by more is not used
    max_pan_rate: float = 0.3                 # rad/s, frames taken while the camera pans faster are skipped (pose too uncertain)
    max_turn_rate: float = 1.0                # rad/s, frames taken while the base turns faster are skipped
    colours: tuple[ColourClass, ...] = field(default_factory=lambda: DEFAULT_COLOURS)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> PerceptionConfigError:
            return PerceptionConfigError(f"perception parameter {name!r}: {why} (got {getattr(self, name)!r})")

        for name in ("base_height", "robot_radius", "pick_x", "max_range", "crate_min_size", "max_object_size",
                     "flat_max_height", "associate_radius", "gone_max_range", "sensor_timeout", "max_pan_rate",
                     "max_turn_rate"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise bad(name, "must be a finite number > 0")
        for name in ("camera_optical_offset",):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise bad(name, "must be a finite number >= 0")
        if not (math.isfinite(self.camera_pitch) and abs(self.camera_pitch) < math.pi / 2):
            raise bad("camera_pitch", "must be within (-pi/2, pi/2)")
        for name, n in (("camera_pan_axis_xyz", 3), ("laser_xyz", 3)):
            v = getattr(self, name)
            if len(v) != n or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
                raise bad(name, f"must be {n} finite numbers")
        for name in ("min_blob_pixels", "gone_after_frames"):
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

    @property
    def camera_height(self) -> float:
        """Pan axis above the floor, m."""
        return self.base_height + self.camera_pan_axis_xyz[2]


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


def config_from_dict(values: Mapping[str, Any]) -> PerceptionConfig:
    """Build from plain values (ROS parameters); unknown names are refused by name."""
    known = {f.name for f in fields(PerceptionConfig)}
    unknown = set(values) - known
    if unknown:
        raise PerceptionConfigError(f"unknown perception parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = dict(values)
    for name in ("camera_pan_axis_xyz", "laser_xyz"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
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
}


def parameter_defaults() -> dict[str, Any]:
    """name -> default of every ROS parameter perception_node declares (qwen_stack.parameter_schema)."""
    defaults = PerceptionConfig()
    out: dict[str, Any] = {}
    for f in fields(PerceptionConfig):
        if f.name == "colours":
            continue                              # a table: extended in code (DEFAULT_COLOURS), not per parameter
        v = getattr(defaults, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    out.update(NODE_PARAMETERS)
    return out
