"""Browser tests of the console map against a BackendDouble (no ROS graph): what the SVG shows, checked
through its view transform and against where the elements land on screen."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from qwen_stack.console.access import Credentials
from qwen_stack.console.app import create_app
from qwen_stack.console.config import ConsoleSettings
from tests.console.backend_double import BackendDouble
from tests.console.browser import chromium, skip_without_browser
from tests.console.live_server import serve

skip_without_browser()
from playwright.sync_api import expect  # noqa: E402

TABLE = [[2.0, 1.0], [3.0, 1.0], [3.0, 2.0], [2.0, 2.0]]
ZONES = {"format": 1, "robot_radius": 0.25, "laser": {"x": 0.0, "y": 0.0, "yaw": 0.0},
         "stop_zone": [[0.45, 0.3], [0.45, -0.3], [-0.35, -0.3], [-0.35, 0.3]],
         "slowdown_zone": [[1.0, 0.5], [1.0, -0.5], [-0.6, -0.5], [-0.6, 0.5]],
         "geofence": [[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]],
         "keep_out": {"table": TABLE}}
_clock = itertools.count(1000, 10)   # map_tick times far enough apart to pass the throttle


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def map_page(browser):
    settings = ConsoleSettings()
    backend = BackendDouble(settings)
    creds = Credentials("controller-token-0123456789abcdef", "viewer-token-0123456789abcdef", "t", "t",
                        open_viewing=True)
    with serve(lambda port: create_app(settings, creds, backend, port=port)) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        expect(page.get_by_text("Connected as viewer")).to_be_visible()
        yield page, backend
        page.close()


def push(backend, apply, *args) -> None:
    backend.hub.update(apply, *args)
    backend.hub.update(backend.state.map_tick, float(next(_clock)))


def view(page) -> tuple[float, float, float]:
    s, cx, cy = map(float, page.get_by_role("img", name="Map").get_attribute("data-view").split())
    return s, cx, cy


def to_px(v, x, y) -> tuple[float, float]:
    s, cx, cy = v
    return 240 + (x - cx) * s, 240 - (y - cy) * s   # viewBox 480 x 480, +y up


def rect(locator) -> dict:
    """The element's geometry on screen (getBoundingClientRect: Playwright's bounding_box adds stroke for SVG)."""
    return locator.evaluate("e => { const r = e.getBoundingClientRect(); "
                            "return {x: r.x, y: r.y, width: r.width, height: r.height}; }")


def robot_centre(page) -> tuple[float, float]:
    box = rect(page.locator("#map-footprint"))
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_robot_marker_moves_and_turns_with_odometry(map_page):
    page, backend = map_page
    m = page.get_by_role("img", name="Map")
    expect(m).to_be_visible()
    push(backend, backend.state.map.on_zones, json.dumps(ZONES))
    push(backend, backend.state.map.on_pose, 0.0, 0.0, 0.0)
    robot = page.locator("#map-robot")
    expect(robot).to_have_attribute("transform", "translate(240.00 240.00) rotate(0.00)")   # centre of the arena
    before = robot_centre(page)
    push(backend, backend.state.map.on_pose, 1.0, 0.5, math.pi / 2)
    expect(robot).not_to_have_attribute("transform", "translate(240.00 240.00) rotate(0.00)")
    after = robot_centre(page)
    assert after[0] > before[0] + 5 and after[1] < before[1] - 2   # moved right (+x) and up (+y) on screen
    assert "rotate(-90.00)" in robot.get_attribute("transform")
    # the heading mark points up the screen (+y) when theta is 90 degrees
    head = rect(page.locator("#map-heading"))
    assert head["height"] > head["width"] and head["y"] + head["height"] / 2 < after[1]
    expect(page.locator("#map-info")).to_contain_text("robot x 1.00 m, y 0.50 m")
    # footprint radius is the supervisor's robot_radius through the view scale
    s = view(page)[0]
    assert float(page.locator("#map-footprint").get_attribute("r")) == pytest.approx(0.25 * s, abs=0.01)
    # the creep zone: not drawn while the supervisor runs without one, drawn inside the stop zone with one
    expect(page.locator("#map-creep")).to_have_attribute("points", "")
    push(backend, backend.state.map.on_zones,
         json.dumps({**ZONES, "creep_zone": [[0.28, 0.26], [0.28, -0.26], [-0.27, -0.26], [-0.27, 0.26]]}))
    expect(page.locator("#map-creep")).not_to_have_attribute("points", "")
    creep, stop = rect(page.locator("#map-creep")), rect(page.locator("#map-stop"))
    assert creep["width"] < stop["width"] and creep["height"] < stop["height"]


def test_keep_out_zone_drawn_where_the_policy_puts_it(map_page):
    page, backend = map_page
    push(backend, backend.state.map.on_pose, 0.0, 0.0, 0.0)
    push(backend, backend.state.map.on_zones, json.dumps(ZONES))
    zone = page.locator('[data-zone="table"] polygon')
    expect(zone).to_have_count(1)
    v = view(page)
    drawn = [tuple(map(float, p.split(","))) for p in zone.get_attribute("points").split()]
    expected = [to_px(v, x, y) for x, y in TABLE]
    assert len(drawn) == len(expected)
    for (dx, dy), (ex, ey) in zip(drawn, expected):
        assert abs(dx - ex) < 0.02 and abs(dy - ey) < 0.02
    # on screen: the zone (x 2..3, y 1..2) is right of and above the robot at the origin, inside the geofence
    zb, fb = rect(zone), rect(page.locator("#map-geofence polygon"))
    rx, ry = robot_centre(page)
    assert zb["x"] > rx and zb["y"] + zb["height"] < ry
    assert fb["x"] <= zb["x"] and zb["x"] + zb["width"] <= fb["x"] + fb["width"]
    # the geofence (10 m wide) and the zone (1 m) keep their size ratio
    assert zb["width"] == pytest.approx(fb["width"] / 10, rel=0.02)
    expect(page.locator("#map-info")).to_contain_text("1 keep-out zones")


def test_laser_objects_and_goal_drawn_and_bad_zones_reported(map_page):
    page, backend = map_page
    push(backend, backend.state.map.on_zones, json.dumps(ZONES))
    push(backend, backend.state.map.on_pose, 0.0, 0.0, 0.0)
    push(backend, backend.state.map.on_scan, -math.pi, 2 * math.pi / 720, 0.05, 10.0, np.full(720, 2.0))
    expect(page.locator("#map-scan circle")).to_have_count(180)
    push(backend, backend.state.map.on_objects, [{"name": "red_cube", "x": -2.0, "y": 3.0, "colour": "red"}])
    push(backend, backend.state.on_tool_call, {"task_id": "t", "step": 1, "name": "go_to_object", "status": "requested",
                                               "actuating": True, "arguments_json": '{"object_name": "red_cube"}'})
    cube = page.locator('[data-object="red_cube"] rect')
    expect(cube).to_have_attribute("fill", "red")
    goal = page.locator('[data-goal="goal: red_cube"]')
    expect(goal).to_have_count(1)
    gb, cb = rect(goal.locator("path")), rect(cube)
    assert abs((gb["x"] + gb["width"] / 2) - (cb["x"] + cb["width"] / 2)) < 1.0
    push(backend, backend.state.map.on_zones, "not json")
    expect(page.locator("#map-info")).to_contain_text("safety/zones is not JSON")
    expect(page.locator("#map-keepout polygon")).to_have_count(0)
