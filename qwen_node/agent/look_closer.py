"""go_to_object for a name perception has not given yet: look closer at the one unnamed thing of its colour.

Perception names a thing `<colour>_<shape>` only once its shape vote is sure; far away or half hidden it
lists it as `<colour>_object_<n>` (perception/names.py). Asked for `green_square` while memory holds no
green_square but exactly one unnamed green floor area (or, for an object, one unnamed green solid thing),
go_to_object first drives to LOOK_M of it, facing it, and gives perception LOOK_WAIT_S to name it. Named
as asked, the approach goes on; otherwise the call fails saying what the thing turned out to be. The look
is the only thing done on an unconfirmed name: the approach, a grasp or a release need the name itself.
(Seen in the simulator: the stand-in brain asked for `green_square` 20 times while the green square, 4 m
away, was listed only as `green_object_1`.)
"""
from __future__ import annotations

import math
from typing import Any, Callable

from qwen_stack.perception.names import AREA_SHAPE, is_unnamed, named_parts

LOOK_M = 1.0          # m, the look point's distance from the unnamed thing: close enough to name any shape
LOOK_WAIT_S = 2.0     # s, for perception to name it once there (5 frames/s)
SAME_THING_M = 0.5    # m, the entry nearest the unnamed thing's spot after the look is that thing


def look_candidate(name: str, memory: list[dict[str, Any]], is_area: Callable[[str], bool]) -> dict[str, Any] | None:
    """The one unnamed memory entry that may be `name` (same colour, same kind: area or solid), else None
    (`name` is no plain `<colour>_<shape>`, or none or several such entries)."""
    parts = named_parts(name)
    if parts is None:
        return None
    colour, shape = parts
    want_area = shape == AREA_SHAPE
    found = [e for e in memory if is_unnamed(e["name"]) and e["name"].startswith(colour + "_object_")
             and is_area(e["name"]) == want_area]
    return found[0] if len(found) == 1 else None


def look_standoff(robot_xy: tuple[float, float], target_xy: tuple[float, float]) -> float:
    """LOOK_M, or the distance the robot already is at when nearer (then it only turns to face it)."""
    return min(LOOK_M, math.dist(robot_xy, target_xy))


def looked_error(name: str, candidate: dict[str, Any], memory: list[dict[str, Any]]) -> str:
    """Why go_to_object fails after the look: what perception now calls the thing at the candidate's spot."""
    colour = candidate["name"].rsplit("_object_", 1)[0]
    spot = (candidate["x"], candidate["y"])
    near = [e for e in memory if e["name"].startswith(colour + "_") and math.dist((e["x"], e["y"]), spot) <= SAME_THING_M]
    seen = min(near, key=lambda e: math.dist((e["x"], e["y"]), spot), default=None)
    if seen is None:
        what = "perception did not see it there again"
    elif is_unnamed(seen["name"]):
        what = f"perception still cannot name it ({seen['name']}, shape so far: {seen.get('shape', 'object')})"
    else:
        what = f"it is {seen['name']}"
    known = sorted(e["name"] for e in memory)
    return (f"no object named {name!r} in memory: drove closer to {candidate['name']}, the only unnamed "
            f"{colour} thing, and {what} (known: {known}); look around for {name}: rotate or look_at, "
            f"then detect_objects")
