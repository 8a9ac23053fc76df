"""The vectorised geometry against its plain per-point reference on seeded random inputs.
Tolerances: exact booleans except points within 1e-9 of an edge; distances 1e-9 m; poses 1e-6 m/rad
(the reference integrates numerically); collision times exactly equal (same sample grid)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qwen_stack.safety import geometry as fast
from qwen_stack.safety import geometry_reference as ref


def _random_polygon(rng, m):
    ang = np.sort(rng.uniform(0, 2 * np.pi, m))
    r = rng.uniform(0.5, 2.0, m)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=-1)   # star-shaped, simple


@pytest.mark.parametrize("seed", range(5))
def test_point_in_polygon_and_distance(seed):
    rng = np.random.default_rng(seed)
    poly = _random_polygon(rng, int(rng.integers(3, 12)))
    pts = rng.uniform(-2.5, 2.5, (400, 2))
    inside = fast.points_in_polygon(pts, poly)
    dist = fast.distance_to_boundary(pts, poly)
    plist = [tuple(p) for p in poly]
    for p, i, d in zip(pts, inside, dist):
        d_ref = ref.distance_to_boundary(p[0], p[1], plist)
        assert d == pytest.approx(d_ref, abs=1e-9)
        if d_ref > 1e-9:
            assert bool(i) == ref.point_in_polygon(p[0], p[1], plist)


@pytest.mark.parametrize("seed", range(5))
def test_predicted_poses(seed):
    rng = np.random.default_rng(seed)
    x, y, th = rng.uniform(-1, 1, 3)
    v = rng.uniform(-1, 1, 6)
    w = np.concatenate([rng.uniform(-2, 2, 5), [0.0]])
    times = np.linspace(0, 1.5, 7)
    poses = fast.predict_poses(x, y, th, v, w, times)               # [S, K, 3]
    for s in range(len(v)):
        for k, t in enumerate(times):
            assert poses[s, k] == pytest.approx(ref.predict_pose(x, y, th, v[s], w[s], t), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_scan_projection_and_collision_time(seed):
    rng = np.random.default_rng(seed)
    n = 360
    ranges = rng.uniform(0.0, 4.0, n)
    ranges[rng.integers(0, n, 30)] = np.nan
    ranges[rng.integers(0, n, 30)] = np.inf
    lx, ly, lyaw = rng.uniform(-0.2, 0.2, 3)
    proj = fast.ScanProjector(lx, ly, lyaw)
    pts = proj.points(-math.pi, 2 * math.pi / n, 0.1, 3.5, ranges)
    pts_ref = ref.scan_points(lx, ly, lyaw, -math.pi, 2 * math.pi / n, 0.1, 3.5, ranges)
    assert pts == pytest.approx(np.array(pts_ref), abs=1e-12)
    times = np.linspace(0.1, 1.0, 10)
    far = pts[np.hypot(pts[:, 0], pts[:, 1]) > 0.5]
    near = pts[np.hypot(pts[:, 0], pts[:, 1]) < 0.25][:3]     # already within the radius
    for v, w in [(0.5, 0.0), (0.8, 1.0), (-0.3, -0.5), (0.0, 0.7)]:
        for some in (far, near, np.concatenate([far, near])):
            t_fast = fast.first_collision_time(some, v, w, times, 0.25)
            t_ref = ref.first_collision_time([tuple(p) for p in some], v, w, times, 0.25)
            assert t_fast == t_ref


def test_a_point_within_the_radius_stops_only_the_motion_that_nears_it():
    times = np.linspace(0.1, 1.0, 10)
    inside = np.array([[0.2, 0.0]])                             # ahead, within radius 0.25
    assert fast.first_collision_time(inside, 0.1, 0.0, times, 0.25) == pytest.approx(0.1)
    assert fast.first_collision_time(inside, -0.1, 0.0, times, 0.25) == math.inf   # backing away
    assert fast.first_collision_time(inside, 0.0, 0.5, times, 0.25) == math.inf    # turning on the spot


def test_ray_extent_of_a_box():
    box = np.array([[0.45, 0.3], [0.45, -0.3], [-0.35, -0.3], [-0.35, 0.3]])
    assert fast.ray_extent(box, 0.0) == pytest.approx(0.45)
    assert fast.ray_extent(box, math.pi) == pytest.approx(0.35)
    assert fast.ray_extent(box, math.pi / 2) == pytest.approx(0.3)


@pytest.mark.parametrize("seed", range(5))
def test_polygon_set_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    polys = [_random_polygon(rng, int(rng.integers(3, 10))) + rng.uniform(-1, 1, 2) for _ in range(3)]
    pset = fast.PolygonSet(polys)
    pts = rng.uniform(-3, 3, (300, 2))
    inside, dist = pset.contains_and_distance(pts)                   # [Q, Z]
    for z, poly in enumerate(polys):
        plist = [tuple(p) for p in poly]
        for q, p in enumerate(pts):
            d_ref = ref.distance_to_boundary(p[0], p[1], plist)
            assert dist[q, z] == pytest.approx(d_ref, abs=1e-9)
            if d_ref > 1e-9:
                assert bool(inside[q, z]) == ref.point_in_polygon(p[0], p[1], plist)
