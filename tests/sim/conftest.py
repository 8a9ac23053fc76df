"""Simulator tests: headless rendering, and the open test arena as a fixture."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering on CPU; must be set before mujoco renders

import pytest  # noqa: E402
from sim_test_worlds import open_arena  # noqa: E402

from qwen_stack.sim.scenario import layout_from_dict  # noqa: E402


@pytest.fixture
def open_layout():
    return layout_from_dict(open_arena())
