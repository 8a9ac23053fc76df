"""Small hand-placed worlds whose geometry the simulator tests derive by hand."""
from __future__ import annotations

ARENA_HALF = 3.0  # m, inner half-extent of the test arena's walls


def open_arena(robot=(-1.5, 0.0, 0.0), objects=(), areas=()) -> dict:
    """A 6 m x 6 m arena with the robot at `robot` (x, y, yaw) and the given objects/areas."""
    return {
        "name": "test_open_arena",
        "arena": {"half_size": [ARENA_HALF, ARENA_HALF], "wall_height": 0.3, "wall_thickness": 0.05},
        "min_clearance": 0.05,
        "robot_start": {"x": robot[0], "y": robot[1], "yaw": robot[2]},
        "objects": list(objects),
        "floor_areas": list(areas),
        "lighting": {"ambient": 0.4, "diffuse": 0.6, "direction": [0.3, 0.2, -1.0]},
    }


RED_CUBE = {"name": "red_cube", "shape": "box", "size": [0.04, 0.04, 0.04], "rgba": [0.9, 0.1, 0.1, 1.0], "mass": 0.2}
