"""Object memory in the odom frame (pure): association, fusion, naming, gone-marking.

Each detection (odom frame) is matched to the nearest remembered object of its colour within
`associate_radius`; failing that, to a remembered object of the same colour and shape whose spot
is not in view now (it was moved, e.g. carried and released); failing that it is a new object.
Positions fuse as a 1-D Kalman filter per object: a sighting's variance grows with the square of
its range (the camera is low: a pixel spans more floor farther away), and a little process noise
lets a re-sighting correct an old estimate. The shape is a vote over sightings; an object is
named `<colour>_<shape>` once the vote is confident over two sightings (`<colour>_<shape>_2` for
a second one), else `<colour>_object_<n>`; a name is replaced when the vote settles on another
shape. A new object within `confirm_radius` of a listed one of its colour is tentative: listed only once
seen in `confirm_sightings` frames, forgotten if that does not come within `confirm_within` s (one frame
that ranges a known object 0.3 m too far makes no phantom for the robot to drive to). Elsewhere a new
object is listed at once: a far area glimpsed in single frames at the edge of range must still be found.
A remembered object whose spot has been in clear view for `gone_after_frames` frames without a
detection is marked gone (and no longer listed); a later sighting brings it back. One that went
while a single object of its kind appeared elsewhere was moved: that one takes its name.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from qwen_stack.perception.config import PerceptionConfig
from qwen_stack.perception.detection import Detection
from qwen_stack.perception.names import is_unnamed, unnamed
from qwen_stack.geometry import Pose2D

POS_SIGMA_AT_1M = 0.03     # m, position noise of one sighting at 1 m (grows with range squared)
PROCESS_SIGMA = 0.005      # m per update, lets newer sightings move an old estimate


@dataclass
class MemoryEntry:
    name: str
    colour: str
    x: float                                # odom, m
    y: float
    variance: float                         # m^2
    width: float
    height: float
    solid: bool
    confidence: float
    first_seen: float                       # s, sensor time
    last_seen: float
    times_seen: int = 1                     # frames with a sighting
    tentative: bool = False                 # new beside a listed object of its colour: listed from its 2nd frame
    shape_votes: Counter = field(default_factory=Counter)
    missed_in_view: int = 0                 # frames in a row with the spot in view and no detection
    gone: bool = False
    in_view: bool = False
    held: bool = False                      # in the gripper: travels with the robot, not a floor object

    @property
    def shape(self) -> str:
        if not self.shape_votes:
            return "object"
        return self.shape_votes.most_common(1)[0][0]

    def shape_share(self) -> float:
        total = sum(self.shape_votes.values())
        return self.shape_votes[self.shape] / total if total else 0.0


class ObjectMemory:
    def __init__(self, cfg: PerceptionConfig):
        self.cfg = cfg
        self.entries: list[MemoryEntry] = []
        self._generic_index: Counter = Counter()     # colour -> last <colour>_object_<n> index

    def listed(self, e: MemoryEntry) -> bool:
        """Told to anyone (a tentative entry waits for its next sighting)."""
        return not e.tentative or e.times_seen >= self.cfg.confirm_sightings

    def visible(self) -> list[MemoryEntry]:
        """What memory lists: neither tentative, gone nor held."""
        return [e for e in self.entries if not e.gone and not e.held and self.listed(e)]

    def get(self, name: str) -> MemoryEntry | None:
        for e in self.visible():
            if e.name == name:
                return e
        return None

    def hold(self, robot: Pose2D, pick_x: float, name_hint: str = "") -> MemoryEntry | None:
        """The gripper took something: the remembered floor object nearest the pick point (within
        0.35 m), else the one named `name_hint`, is held from now on (not listed, not matched)."""
        px, py = robot.to_odom(pick_x, 0.0)
        cands = [(math.hypot(e.x - px, e.y - py), e) for e in self.entries if e.solid and not e.gone and not e.held]
        near = [c for c in cands if c[0] <= 0.35]
        e = min(near, key=lambda c: c[0])[1] if near else self.get(name_hint) if name_hint else None
        if e is not None:
            e.held, e.in_view = True, False
        return e

    def release(self, robot: Pose2D, pick_x: float) -> MemoryEntry | None:
        """The gripper let go: the held object stands on the floor at the pick point."""
        for e in self.entries:
            if e.held:
                e.x, e.y = robot.to_odom(pick_x, 0.0)
                e.held, e.gone, e.missed_in_view = False, False, 0
                e.variance = max(e.variance, 0.05 ** 2)    # where the gripper put it, give or take
                e.tentative = False                        # it is there: listed
                self._name(e)
                return e
        return None

    def update(self, detections: list[Detection], robot: Pose2D, stamp: float,
               spot_in_clear_view: Callable[[float, float], bool] | None = None) -> list[MemoryEntry]:
        """Fold one frame's detections (base frame) in; `spot_in_clear_view(x_odom, y_odom)` says
        whether the camera would have seen an object there (None: no gone-marking this frame).
        Returns the entry of each detection, in the detections' order."""
        for e in self.entries:
            e.in_view = False
        matched: set[int] = set()
        result: list[MemoryEntry | None] = [None] * len(detections)
        order = sorted(range(len(detections)), key=lambda i: detections[i].distance)
        for i in order:
            d = detections[i]
            ox, oy = robot.to_odom(d.x, d.y)
            e = self._associate(d, ox, oy, matched, spot_in_clear_view)
            if e is None:
                e = self._new_entry(d, ox, oy, stamp)
            else:
                # two pieces of one area (cut by the load) in a frame are one sighting
                first_in_frame = id(e) not in matched
                if d.partial:
                    self._confirm(e, d, stamp, first_in_frame)
                else:
                    self._fuse(e, d, ox, oy, stamp, first_in_frame)
            matched.add(id(e))
            result[i] = e
            e.in_view, e.gone, e.missed_in_view = True, False, 0
            if self.listed(e):
                self._name(e)
        # a new object not seen again soon was a glitch of one frame
        self.entries = [e for e in self.entries
                        if self.listed(e) or e.held or stamp - e.first_seen <= self.cfg.confirm_within]
        if spot_in_clear_view is None:
            return result  # type: ignore[return-value]
        for e in list(self.entries):
            if id(e) in matched or e.gone or e.held:
                continue
            if spot_in_clear_view(e.x, e.y):
                e.missed_in_view += 1
                if e.missed_in_view >= self.cfg.gone_after_frames:
                    e.gone = True
                    self._merge_moved(e)
            else:
                e.missed_in_view = 0
        return result  # type: ignore[return-value]

    def _merge_moved(self, gone: MemoryEntry) -> None:
        """`gone` left its spot. If exactly one object of its kind first appeared after `gone` was last
        seen, that is `gone` moved (pushed while the robot approached it): it was numbered
        (`<colour>_<shape>_2`) only because `gone` still held the name, so it takes that name back and
        `gone` is forgotten. Otherwise the user's "the yellow ball" would name nothing in memory while
        the one yellow ball stands in plain view."""
        if gone.shape == "object" or not gone.name or is_unnamed(gone.name):
            return
        later = [o for o in self.visible() if o is not gone and o.colour == gone.colour
                 and o.solid == gone.solid and o.shape == gone.shape and o.first_seen > gone.last_seen]
        if len(later) != 1:
            return
        moved = later[0]
        self.entries.remove(gone)
        if _numbered_from(moved.name, gone.name):
            moved.name = gone.name

    # --- internals -------------------------------------------------------------------------------
    @staticmethod
    def _sighting_variance(d: Detection) -> float:
        s = POS_SIGMA_AT_1M * max(0.3, d.distance) ** 2 / max(d.confidence, 0.1)
        if d.partial:      # its centre may be off by up to its width: the first whole sighting takes over
            s = max(s, d.width)
        return s * s

    def _associate(self, d: Detection, ox: float, oy: float, matched: set[int],
                   in_view: Callable[[float, float], bool] | None) -> MemoryEntry | None:
        best, best_dist = None, math.inf
        for e in self.entries:
            # the load can cut an area into pieces: each partial piece is a sighting of the same area
            if (id(e) in matched and not d.partial) or e.held or e.colour != d.colour or e.solid != d.solid:
                continue
            dist = math.hypot(e.x - ox, e.y - oy)
            gate = self.cfg.associate_radius + 2.0 * math.sqrt(e.variance) + (e.width if d.partial else 0.0)
            if dist < gate and dist < best_dist:
                best, best_dist = e, dist
        if best is not None or d.partial:
            return best
        # moved: the same kind of object, remembered where the camera does not see now (or gone)
        for e in self.entries:
            if id(e) in matched or e.held or e.colour != d.colour or e.solid != d.solid:
                continue
            same_kind = e.shape == d.shape and d.shape != "object" and e.shape_share() >= self.cfg.name_min_confidence
            if same_kind and (e.gone or (in_view is not None and not in_view(e.x, e.y))):
                if sum(1 for o in self.entries if o.colour == e.colour and o.shape == e.shape and self.listed(o)) == 1:
                    e.variance = 1e6                 # forget the old place: the next fuse takes the sighting
                    return e
        return None

    def _new_entry(self, d: Detection, ox: float, oy: float, stamp: float) -> MemoryEntry:
        # listed before this frame: two objects first seen together are both real
        near_known = any(o.colour == d.colour and o.solid == d.solid and o.first_seen < stamp
                         and math.hypot(o.x - ox, o.y - oy) <= self.cfg.confirm_radius for o in self.visible())
        e = MemoryEntry("", d.colour, ox, oy, self._sighting_variance(d), d.width, d.height, d.solid,
                        d.confidence, stamp, stamp, tentative=near_known)
        e.shape_votes[d.shape] += d.shape_confidence if d.shape != "object" else 0.0
        self.entries.append(e)
        return e

    def _fuse(self, e: MemoryEntry, d: Detection, ox: float, oy: float, stamp: float, new_frame: bool) -> None:
        prior = e.variance + PROCESS_SIGMA ** 2
        r = self._sighting_variance(d)
        k = prior / (prior + r)
        e.x += k * (ox - e.x)
        e.y += k * (oy - e.y)
        e.variance = (1 - k) * prior
        e.width += 0.3 * (d.width - e.width)
        e.height += 0.3 * (d.height - e.height)
        e.confidence = round(max(d.confidence, min(1.0, e.confidence + 0.02)), 3)
        self._confirm(e, d, stamp, new_frame)

    def _confirm(self, e: MemoryEntry, d: Detection, stamp: float, new_frame: bool) -> None:
        """A sighting of `e`: it is there and of this shape (all a partial sighting says: its position and
        size stay; _fuse updates those from a whole one). `times_seen` counts frames."""
        e.last_seen = max(e.last_seen, stamp)
        e.times_seen += int(new_frame)
        if d.shape != "object":
            e.shape_votes[d.shape] += d.shape_confidence

    def _name(self, e: MemoryEntry) -> None:
        """`<colour>_<shape>` once the shape vote is sure over at least two sightings; a name whose
        shape the vote has since overturned is replaced (a wrong name would send the robot to the
        wrong object); otherwise `<colour>_object_<n>`."""
        sure = e.shape != "object" and e.shape_share() >= self.cfg.name_min_confidence and e.times_seen >= 2
        if sure:
            base = f"{e.colour}_{e.shape}"
            if e.name == base or _is_numbered(e.name, base):
                return
            taken = {o.name for o in self.entries if o is not e}
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}_{n}"
            e.name = name
        elif not e.name:
            self._generic_index[e.colour] += 1
            e.name = unnamed(e.colour, self._generic_index[e.colour])


def _numbered_from(name: str, base: str) -> bool:
    """`name` is `base` numbered (`<base>_<n>`) or generic, i.e. a name given for want of `base`."""
    return is_unnamed(name) or _is_numbered(name, base)


def _is_numbered(name: str, base: str) -> bool:
    return name.startswith(base + "_") and name[len(base) + 1:].isdigit()


def memory_report(entries: list[dict], robot_xy: tuple[float, float] | None, now: float) -> dict:
    """The detect_objects result (the model's view; see the shared contract): names in view and
    the memory, numbers rounded (metres 2 decimals, seconds 1). `entries`: dicts with name,
    colour, shape, x, y, confidence, last_seen, in_view (held objects are never in memory)."""
    memory = []
    for e in entries:
        dist = math.hypot(e["x"] - robot_xy[0], e["y"] - robot_xy[1]) if robot_xy is not None else None
        memory.append({"name": e["name"], "colour": e["colour"], "shape": e["shape"],
                       "x": round(e["x"], 2), "y": round(e["y"], 2),
                       "distance": round(dist, 2) if dist is not None else None,
                       "confidence": round(float(e["confidence"]), 2),
                       "seen_s_ago": round(max(0.0, now - e["last_seen"]), 1)})
    return {"in_view": [e["name"] for e in entries if e["in_view"]], "memory": memory}
