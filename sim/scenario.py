"""Scenarios: YAML description + seed -> a fully resolved world layout (no MuJoCo, no ROS).

A scenario file lists the arena, the robot's start pose, the objects, the coloured floor areas
and the lighting. Any number may be given as a value (fixed) or as a two-element list
`[low, high]` (drawn uniformly with the scenario's seed). Placement is rejection-sampled in the
order of the file, keeping `min_clearance` between footprints, so the same file and seed always
give the same layout (numpy's PCG64 stream is stable across platforms and versions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from qwen_stack.geometry import Pose2D

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
SHAPES = ("box", "cylinder", "sphere")


class ScenarioError(ValueError):
    """A scenario file or dict is invalid; the message names the offending field."""


@dataclass(frozen=True)
class PlacedObject:
    """A movable object on the floor."""
    name: str
    shape: str                       # box | cylinder | sphere
    size: tuple[float, ...]          # box: half-sizes (x, y, z); cylinder: (radius, half-height); sphere: (radius,)
    rgba: tuple[float, float, float, float]
    mass: float                      # kg
    graspable: bool                  # the magnetic pick may attach it
    pose: Pose2D

    @property
    def half_height(self) -> float:
        return self.size[2] if self.shape == "box" else self.size[-1] if self.shape == "cylinder" else self.size[0]

    @property
    def footprint_radius(self) -> float:
        return math.hypot(self.size[0], self.size[1]) if self.shape == "box" else self.size[0]


@dataclass(frozen=True)
class FloorArea:
    """A flat coloured square/rectangle painted on the floor (a target area); not an obstacle."""
    name: str
    half_size: tuple[float, float]   # metres
    rgba: tuple[float, float, float, float]
    pose: Pose2D

    @property
    def footprint_radius(self) -> float:
        return math.hypot(*self.half_size)


@dataclass(frozen=True)
class Lighting:
    ambient: float                   # headlight ambient intensity, 0..1
    diffuse: float                   # directional light intensity, 0..1
    direction: tuple[float, float, float]  # direction the light shines along (normalised)


@dataclass(frozen=True)
class WorldLayout:
    """Everything needed to build the MJCF; the output of a scenario + seed."""
    name: str
    seed: int
    arena_half_size: tuple[float, float]  # inner half-extent of the walled area (x, y), metres
    wall_height: float
    wall_thickness: float
    robot_start: Pose2D
    objects: tuple[PlacedObject, ...]
    areas: tuple[FloorArea, ...]
    lighting: Lighting



def _draw(spec: Any, rng: np.random.Generator, where: str) -> float:
    """A number, or [low, high] drawn uniformly."""
    if isinstance(spec, bool):
        raise ScenarioError(f"{where}: expected a number or [low, high], got {spec!r}")
    if isinstance(spec, (int, float)):
        value = float(spec)
    elif isinstance(spec, (list, tuple)) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec):
        lo, hi = float(spec[0]), float(spec[1])
        if not lo <= hi:
            raise ScenarioError(f"{where}: range [{lo}, {hi}] has low > high")
        value = float(rng.uniform(lo, hi)) if hi > lo else lo
    else:
        raise ScenarioError(f"{where}: expected a number or [low, high], got {spec!r}")
    if not math.isfinite(value):
        raise ScenarioError(f"{where}: not finite ({value})")
    return value


def _floats(spec: Any, n: int | tuple[int, ...], where: str, positive: bool = False) -> tuple[float, ...]:
    counts = (n,) if isinstance(n, int) else n
    if not isinstance(spec, (list, tuple)) or len(spec) not in counts:
        raise ScenarioError(f"{where}: expected a list of {' or '.join(map(str, counts))} numbers, got {spec!r}")
    try:
        values = tuple(float(v) for v in spec)
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}: expected numbers, got {spec!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ScenarioError(f"{where}: values must be finite, got {spec!r}")
    if positive and not all(v > 0 for v in values):
        raise ScenarioError(f"{where}: values must be > 0, got {spec!r}")
    return values


def _rgba(spec: Any, where: str) -> tuple[float, float, float, float]:
    values = _floats(spec, (3, 4), where)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ScenarioError(f"{where}: colour components must be in [0, 1], got {spec!r}")
    return values if len(values) == 4 else values + (1.0,)  # type: ignore[return-value]


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = set(d) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


class _Placer:
    """Rejection sampling of footprints (circles) inside the arena, apart from each other."""

    def __init__(self, rng: np.random.Generator, half: tuple[float, float], clearance: float, attempts: int = 1000):
        self.rng, self.half, self.clearance, self.attempts = rng, half, clearance, attempts
        self.placed: list[tuple[float, float, float]] = []  # (x, y, radius)

    def place(self, spec: dict, radius: float, where: str) -> Pose2D:
        for _ in range(self.attempts):
            x = _draw(spec.get("x", 0.0), self.rng, f"{where}.x")
            y = _draw(spec.get("y", 0.0), self.rng, f"{where}.y")
            yaw = _draw(spec.get("yaw", 0.0), self.rng, f"{where}.yaw")
            inside = abs(x) + radius <= self.half[0] and abs(y) + radius <= self.half[1]
            apart = all(math.hypot(x - px, y - py) >= radius + pr + self.clearance for px, py, pr in self.placed)
            if inside and apart:
                self.placed.append((x, y, radius))
                return Pose2D(x, y, yaw)
        raise ScenarioError(f"{where}: no free place found in {self.attempts} draws "
                            f"(inside the walls and {self.clearance} m from everything placed before)")


def layout_from_dict(data: dict, seed: int | None = None, footprint_radius: float | None = None) -> WorldLayout:
    """Resolve a scenario mapping with `seed` (default: the scenario's own `seed`). The robot start keeps
    `footprint_radius` (default: config/robot.yaml's) clear of walls and objects."""
    _check_keys(data, {"name", "description", "seed", "arena", "robot_start", "objects", "floor_areas",
                       "lighting", "min_clearance"}, "scenario")
    seed = int(data.get("seed", 0) if seed is None else seed)
    if seed < 0:
        raise ScenarioError(f"scenario.seed: must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)

    arena = data.get("arena", {})
    _check_keys(arena, {"half_size", "wall_height", "wall_thickness"}, "arena")
    half = _floats(arena.get("half_size", [2.0, 2.0]), 2, "arena.half_size", positive=True)
    wall_height = _floats([arena.get("wall_height", 0.3)], 1, "arena.wall_height", positive=True)[0]
    wall_thickness = _floats([arena.get("wall_thickness", 0.05)], 1, "arena.wall_thickness", positive=True)[0]
    clearance = float(data.get("min_clearance", 0.15))
    if not clearance >= 0:
        raise ScenarioError(f"scenario.min_clearance: must be >= 0, got {clearance}")

    placer = _Placer(rng, (half[0], half[1]), clearance)
    start = data.get("robot_start", {})
    _check_keys(start, {"x", "y", "yaw"}, "robot_start")
    if footprint_radius is None:
        from qwen_stack.robot import load_robot

        footprint_radius = load_robot().footprint_radius
    robot_start = placer.place(start, footprint_radius, "robot_start")

    areas: list[FloorArea] = []
    names: set[str] = set()
    for i, a in enumerate(data.get("floor_areas", []) or []):
        where = f"floor_areas[{i}]"
        _check_keys(a, {"name", "half_size", "rgba", "x", "y", "yaw"}, where)
        name = _name(a, where, names)
        hs = _floats(a.get("half_size", [0.2, 0.2]), 2, f"{where}.half_size", positive=True)
        rgba = _rgba(a.get("rgba", [0.1, 0.2, 0.9, 1.0]), f"{where}.rgba")
        pose = placer.place(a, math.hypot(*hs), where)
        areas.append(FloorArea(name, (hs[0], hs[1]), rgba, pose))

    objects = []
    for i, o in enumerate(data.get("objects", []) or []):
        where = f"objects[{i}]"
        _check_keys(o, {"name", "shape", "size", "rgba", "mass", "graspable", "x", "y", "yaw"}, where)
        name = _name(o, where, names)
        shape = o.get("shape", "box")
        if shape not in SHAPES:
            raise ScenarioError(f"{where}.shape: must be one of {SHAPES}, got {shape!r}")
        n = {"box": 3, "cylinder": 2, "sphere": 1}[shape]
        size = _floats(o.get("size"), n, f"{where}.size ({shape})", positive=True)
        rgba = _rgba(o.get("rgba", [0.5, 0.5, 0.5, 1.0]), f"{where}.rgba")
        mass = _floats([o.get("mass", 0.2)], 1, f"{where}.mass", positive=True)[0]
        graspable = o.get("graspable", True)
        if not isinstance(graspable, bool):
            raise ScenarioError(f"{where}.graspable: must be true or false, got {graspable!r}")
        probe = PlacedObject(name, shape, size, rgba, mass, graspable, Pose2D(0, 0, 0))
        pose = placer.place(o, probe.footprint_radius, where)
        objects.append(PlacedObject(name, shape, size, rgba, mass, graspable, pose))

    light = data.get("lighting", {})
    _check_keys(light, {"ambient", "diffuse", "direction"}, "lighting")
    ambient = _draw(light.get("ambient", 0.35), rng, "lighting.ambient")
    diffuse = _draw(light.get("diffuse", 0.6), rng, "lighting.diffuse")
    for key, v in (("ambient", ambient), ("diffuse", diffuse)):
        if not 0.0 <= v <= 1.0:
            raise ScenarioError(f"lighting.{key}: must be in [0, 1], got {v}")
    direction = tuple(_draw(v, rng, f"lighting.direction[{k}]")
                      for k, v in enumerate(light.get("direction", [0.3, 0.2, -1.0])))
    if len(direction) != 3 or math.hypot(*direction) < 1e-6:
        raise ScenarioError(f"lighting.direction: expected a non-zero 3-vector, got {direction}")
    norm = math.hypot(*direction)
    direction = tuple(v / norm for v in direction)

    return WorldLayout(
        name=str(data.get("name", "unnamed")), seed=seed, arena_half_size=(half[0], half[1]),
        wall_height=wall_height, wall_thickness=wall_thickness, robot_start=robot_start,
        objects=tuple(objects), areas=tuple(areas),
        lighting=Lighting(ambient, diffuse, direction),  # type: ignore[arg-type]
    )


def _name(d: dict, where: str, seen: set[str]) -> str:
    name = d.get("name")
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise ScenarioError(f"{where}.name: must be a non-empty identifier (letters, digits, _), got {name!r}")
    if name in seen:
        raise ScenarioError(f"{where}.name: duplicate name {name!r}")
    seen.add(name)
    return name


def scenario_path(name_or_path: str) -> Path:
    """A scenario by name (sim/scenarios/<name>.yaml) or by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = SCENARIO_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(q.stem for q in SCENARIO_DIR.glob("*.yaml"))
    raise ScenarioError(f"scenario {name_or_path!r}: no such file; known scenarios: {known}")


def load_layout(name_or_path: str, seed: int | None = None, footprint_radius: float | None = None) -> WorldLayout:
    """Load a scenario YAML file and resolve it with `seed` (default: the file's seed); see layout_from_dict."""
    path = scenario_path(name_or_path)
    with open(path) as f:
        data = yaml.safe_load(f)
    try:
        return layout_from_dict(data or {}, seed, footprint_radius)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None

