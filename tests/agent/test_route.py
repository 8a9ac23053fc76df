"""Detours around known obstacles, with hand-derived geometry."""
from __future__ import annotations



from qwen_stack.qwen_node.agent.route import _closest_on_segment, detour_waypoints


def _min_clearance(path, obstacles):
    return min(_closest_on_segment(a, b, o)[2] for a, b in zip(path, path[1:]) for o in obstacles)


def test_clear_path_has_no_waypoints():
    assert detour_waypoints((0, 0), (4, 0), [(2, 1.0)], clearance=0.5) == []


def test_obstacle_on_the_line_is_passed_on_the_left_with_clearance():
    wps = detour_waypoints((0, 0), (4, 0), [(2, 0.0)], clearance=0.5)
    assert len(wps) >= 1 and wps[0][1] > 0          # left of the direction of travel (+y)
    assert _min_clearance([(0, 0), *wps, (4, 0)], [(2, 0.0)]) >= 0.5 - 1e-6


def test_obstacle_beside_the_line_is_passed_on_its_far_side():
    wps = detour_waypoints((0, 0), (4, 0), [(2, -0.2)], clearance=0.5)
    assert wps and wps[0][1] > 0
    assert _min_clearance([(0, 0), *wps, (4, 0)], [(2, -0.2)]) >= 0.5 - 1e-6


def test_several_obstacles_all_cleared():
    obs = [(1.5, 0.1), (3.0, -0.1), (2.2, 0.9)]
    wps = detour_waypoints((0, 0), (4.5, 0), obs, clearance=0.4)
    assert _min_clearance([(0, 0), *wps, (4.5, 0)], obs) >= 0.4 - 1e-6


def test_obstacles_at_the_start_or_goal_are_ignored():
    assert detour_waypoints((0, 0), (4, 0), [(0.1, 0.0), (3.9, 0.0)], clearance=0.5) == []
