"""Browser tests of the console page against a BackendDouble (no ROS graph).

Elements are found by role and label; assertions are on what the user sees and on what the
console would have sent to ROS (recorded by the double).
"""
from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from qwen_stack.console.access import Credentials
from qwen_stack.console.app import create_app
from qwen_stack.console.config import ConsoleSettings
from qwen_stack.console.teleop import TeleopCommand
from tests.console.backend_double import BackendDouble
from tests.console.browser import chromium, skip_without_browser
from tests.console.live_server import serve

CONTROLLER = "controller-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"

skip_without_browser()
from playwright.sync_api import expect  # noqa: E402


def jpeg(value: int) -> bytes:
    img = np.full((48, 64, 3), value, np.uint8)   # [H, W, 3]
    img[:, : (value % 64)] = 255 - value
    ok, data = cv2.imencode(".jpg", img)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _console(open_viewing: bool = True, settings: ConsoleSettings | None = None):
    settings = settings or ConsoleSettings()
    backend = BackendDouble(settings)
    creds = Credentials(CONTROLLER, VIEWER, "test", "test", open_viewing=open_viewing)
    return backend, (lambda port: create_app(settings, creds, backend, port=port))


@pytest.fixture
def controller_page(browser):
    backend, make = _console()
    with serve(make) as url:
        page = browser.new_page()
        page.goto(f"{url}/#token={CONTROLLER}")
        expect(page.get_by_text("Connected as controller")).to_be_visible()
        yield page, backend
        page.close()


def test_viewer_sees_video_frames_change_and_cannot_control(browser):
    backend, make = _console()
    with serve(make) as url:
        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_text("Connected as viewer")).to_be_visible()
        expect(page.get_by_role("button", name="E-STOP", exact=True)).to_be_disabled()
        expect(page.get_by_role("button", name="Take over")).to_be_disabled()
        video = page.get_by_role("img", name="Live camera video")
        shots = []
        for value in (40, 200):
            before = int(video.get_attribute("data-frames") or 0)
            backend.frames.publish(jpeg(value))
            expect(video).to_have_attribute("data-frames", str(before + 1))
            shots.append(page.evaluate("document.getElementById('video').toDataURL()"))
        assert shots[0] != shots[1]
        expect(page.get_by_text("64×48, 2 frames")).to_be_visible()
        page.close()


def test_the_camera_toggles_to_perceptions_annotated_view_and_back(browser):
    backend, make = _console()
    with serve(make) as url:
        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_text("Connected as viewer")).to_be_visible()
        video = page.get_by_role("img", name="Live camera video")
        backend.frames.publish(jpeg(40))
        expect(video).to_have_attribute("data-frames", "1")
        camera = page.evaluate("document.getElementById('video').toDataURL()")

        toggle = page.get_by_label("Show what perception detects (boxes and labels)")
        toggle.check()
        annotated = page.get_by_role("img", name="Live camera video, annotated by perception")
        expect(annotated).to_be_visible()
        expect(page.get_by_text("Waiting for perception's view…")).to_be_visible()
        backend.frames.publish(jpeg(80))                 # the camera goes on: not shown in this view
        backend.annotated.publish(jpeg(200))
        expect(annotated).to_have_attribute("data-frames", "1")
        expect(page.get_by_text("64×48, 1 frames (perception)")).to_be_visible()
        boxes = page.evaluate("document.getElementById('video').toDataURL()")
        assert boxes != camera

        toggle.uncheck()
        video = page.get_by_role("img", name="Live camera video", exact=True)
        expect(video).to_have_attribute("data-frames", "1")   # the camera's newest frame comes at once
        backend.annotated.publish(jpeg(120))             # perception goes on: not shown in the camera view
        backend.frames.publish(jpeg(40))
        expect(video).to_have_attribute("data-frames", "2")
        assert page.evaluate("document.getElementById('video').toDataURL()") == camera
        page.close()


def test_viewing_beyond_localhost_needs_a_token(browser):
    backend, make = _console(open_viewing=False)
    with serve(make) as url:
        page = browser.new_page()
        page.goto(url)
        expect(page.get_by_role("alert")).to_have_text("Sign in with a token to view this robot")
        page.get_by_label("Access token").fill(VIEWER)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Connected as viewer")).to_be_visible()
        page.close()


def test_estop_by_keyboard_then_latched_shown_and_reset_needs_reason(controller_page):
    page, backend = controller_page
    estop = page.get_by_role("button", name="E-STOP", exact=True)
    expect(estop).to_be_visible()
    page.keyboard.press("Tab")                      # first in the tab order
    expect(estop).to_be_focused()
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 5
    while not backend.sent_of("estop") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.sent_of("estop") == [True]
    status = page.get_by_role("status").filter(has_text="E-stop")
    expect(status).to_have_text("E-stop state unknown")        # the page waits for the supervisor's word
    backend.hub.update(backend.state.on_estop_latched, True)    # the supervisor latches
    expect(status).to_have_text("E-stop LATCHED")

    page.get_by_role("button", name="Reset E-stop…").click()
    dialog = page.get_by_role("dialog", name="Reset the E-stop")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason for reset").fill("   ")
    dialog.get_by_role("button", name="Confirm reset").click()
    expect(dialog.get_by_role("alert")).to_have_text("A reason is needed")
    assert backend.sent_of("reset_estop") == []
    dialog.get_by_label("Reason for reset").fill("area checked, obstacle removed")
    dialog.get_by_role("button", name="Confirm reset").click()
    expect(dialog).to_be_hidden()
    assert backend.sent_of("reset_estop") == [("area checked, obstacle removed", "operator")]
    assert backend.sent_of("teleop") == []                      # a reset never moves the robot


def _take_over_and_hold_w(page, held_s: float) -> None:
    """Take over, hold the forward key for `held_s`, release it: the page shows each step."""
    page.get_by_role("button", name="Take over").click()
    expect(page.get_by_text("You are in control")).to_be_visible()
    page.keyboard.down("w")
    expect(page.get_by_text("Driving: 0.50 m/s, 0.00 rad/s")).to_be_visible()
    time.sleep(held_s)
    page.keyboard.up("w")
    expect(page.get_by_text("Not driving")).to_be_visible()


def test_take_over_drives_while_key_held_and_stops_on_release(controller_page):
    page, backend = controller_page
    _take_over_and_hold_w(page, 0.4)
    assert backend.sent_of("teleop_lock") == [True]
    deadline = time.monotonic() + 2
    while backend.sent_of("teleop")[-1] != TeleopCommand(0.0, 0.0) and time.monotonic() < deadline:
        time.sleep(0.01)
    sent = backend.sent_of("teleop")
    forward = [c for c in sent if c == TeleopCommand(0.5, 0.0)]
    assert len(forward) >= 3                                     # re-sent while held (every 100 ms)
    assert sent[-1] == TeleopCommand(0.0, 0.0)                   # release sends zero
    page.get_by_role("button", name="Hand back").click()
    expect(page.get_by_text("Autonomy in control")).to_be_visible()
    assert backend.sent_of("teleop_lock")[-1] is False


def test_a_drive_command_delayed_past_the_release_does_not_move_the_robot(controller_page):
    """Requests travel on separate connections and can overtake each other; hold every drive command
    back until after the release's zero has landed, then let them through: the robot must stay stopped."""
    page, backend = controller_page
    held_back, seqs = [], []

    def hold_drives(route):
        body = json.loads(route.request.post_data)
        seqs.append(body["seq"])
        if body["linear"] != 0:
            held_back.append(route)
        else:
            route.continue_()

    page.route("**/api/teleop/command", hold_drives)
    _take_over_and_hold_w(page, 0.3)
    deadline = time.monotonic() + 2
    while TeleopCommand(0.0, 0.0) not in backend.sent_of("teleop")[1:] and time.monotonic() < deadline:
        time.sleep(0.01)                                     # [0] is the take-over's own zero
    assert held_back and backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)
    for route in held_back:
        route.continue_()
    page.wait_for_timeout(300)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)   # numbered in the order sent
    assert TeleopCommand(0.5, 0.0) not in backend.sent_of("teleop")
    assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)


def test_approval_request_shown_with_arguments_and_countdown_then_denied(controller_page):
    page, backend = controller_page
    backend.hub.update(backend.state.on_approval_request, {
        "request_id": "r-7", "service": "skills/grasp", "arguments_json": '{"object_name": "red_cube"}',
        "timeout_s": 30.0}, time.time())
    item = page.get_by_role("listitem", name="Approval request skills/grasp")
    expect(item).to_be_visible()
    expect(item.get_by_label("Arguments")).to_contain_text('"object_name": "red_cube"')
    expect(item.get_by_role("timer")).to_have_text("Denied by default in 30 s")
    expect(item.get_by_role("timer")).not_to_have_text("Denied by default in 30 s", timeout=3000)  # counts down
    item.get_by_role("button", name="Deny skills/grasp").click()
    expect(item).to_be_hidden()
    assert backend.sent_of("approval") == [("r-7", False, "operator")]
    expect(page.get_by_text("None pending")).to_be_visible()


def test_task_thinking_tool_calls_verdicts_robot_and_health(controller_page):
    page, backend = controller_page
    page.get_by_label("Instruction").fill("bring the red cube")
    page.get_by_role("button", name="Start task").click()
    expect(page.get_by_text("Task “bring the red cube”: running")).to_be_visible()
    assert backend.sent_of("start_task") == ["bring the red cube"]
    for chunk in ("I see a red ", "cube on the left."):
        backend.hub.update(backend.state.on_thinking, chunk)
    expect(page.get_by_label("Model thinking")).to_have_text("I see a red cube on the left.")
    backend.hub.update(backend.state.on_tool_call, {
        "task_id": "t1", "step": 0, "name": "drive_distance", "arguments_json": '{"distance": 0.5}',
        "actuating": True, "status": "rejected", "result_json": '{"error": "obstacle"}'})
    row = page.get_by_role("table", name="Tool calls").get_by_role("row").nth(1)
    expect(row).to_contain_text("drive_distance")
    expect(row.get_by_role("cell").nth(3)).to_have_text("rejected")
    expect(row).to_contain_text('"error": "obstacle"')
    backend.hub.update(backend.state.on_verdict, {"time": time.time(), "level": 4, "level_name": "REJECT",
                                                  "source": "action:skills/drive_distance",
                                                  "reasons": ["obstacle within 0.30 m"]})
    expect(page.get_by_role("list", name="Recent verdicts")).to_contain_text(
        "REJECT action:skills/drive_distance: obstacle within 0.30 m")
    backend.hub.update(backend.state.on_odometry, 1.25, -0.5, 0.0, 0.2, 0.0, 0.0)
    expect(page.get_by_text("x 1.25 m, y -0.50 m")).to_be_visible()
    backend.hub.update(backend.state.on_diagnostics, [{"name": "camera: stream", "level": 1, "message": "slow"}])
    expect(page.get_by_role("table", name="Node health")).to_contain_text("camera: streamWARNslow")
    page.get_by_role("button", name="Cancel task").click()
    deadline = time.monotonic() + 3
    while not backend.sent_of("cancel_task") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(backend.sent_of("cancel_task")) == 1


def test_heartbeat_sent_while_page_with_control_is_open(controller_page):
    page, backend = controller_page
    time.sleep(1.2)                                   # heartbeat_period_s = 0.5
    n = len(backend.sent_of("heartbeat"))
    assert n >= 2
    page.close()
    time.sleep(0.8)
    m = len(backend.sent_of("heartbeat"))
    time.sleep(1.0)
    assert len(backend.sent_of("heartbeat")) == m     # silent once the page is gone


GAMEPAD_DOUBLE = """
window.__pad = {id: "gamepad double", index: 0, connected: true, axes: [0, 0], buttons: [{pressed: false, value: 0}]};
navigator.getGamepads = () => [window.__pad];
"""


def test_gamepad_drives_only_while_deadman_button_held(browser):
    backend, make = _console()
    with serve(make) as url:
        page = browser.new_page()
        page.add_init_script(GAMEPAD_DOUBLE)        # a test double of the browser's Gamepad API
        page.goto(f"{url}/#token={CONTROLLER}")
        page.get_by_role("button", name="Take over").click()
        expect(page.get_by_text("You are in control")).to_be_visible()
        page.evaluate("window.__pad.axes = [0, -1]")          # stick forward, deadman not held
        time.sleep(0.4)
        assert all(c == TeleopCommand(0.0, 0.0) for c in backend.sent_of("teleop"))
        page.evaluate("window.__pad.buttons[0].pressed = true")
        expect(page.get_by_text("Driving: 0.50 m/s, 0.00 rad/s")).to_be_visible()
        page.evaluate("window.__pad.buttons[0].pressed = false")   # stick still forward
        expect(page.get_by_text("Not driving")).to_be_visible()
        deadline = time.monotonic() + 2
        while backend.sent_of("teleop")[-1] != TeleopCommand(0.0, 0.0) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert TeleopCommand(0.5, 0.0) in backend.sent_of("teleop")
        assert backend.sent_of("teleop")[-1] == TeleopCommand(0.0, 0.0)
        page.close()


def test_closing_the_controlling_tab_releases_control_and_stops_the_robot(browser):
    """Issue 16 item 9: the tab holding control is closed while W is held; within the session bound
    (teleop_session_timeout_s after its last heartbeat, plus one publish period) the console sends zero,
    releases the teleop lock, and another tab sees autonomy in control and may take over."""
    settings = ConsoleSettings(teleop_session_timeout_s=1.0, heartbeat_period_s=0.25)
    backend, make = _console(settings=settings)
    with serve(make) as url, backend.ticking():
        holder = browser.new_page()
        holder.goto(f"{url}/#token={CONTROLLER}")
        holder.get_by_role("button", name="Take over").click()
        expect(holder.get_by_text("You are in control")).to_be_visible()
        other = browser.new_page()
        other.goto(f"{url}/#token={CONTROLLER}")
        expect(other.get_by_text("An operator is in control")).to_be_visible()
        holder.keyboard.down("w")
        expect(holder.get_by_text("Driving: 0.50 m/s, 0.00 rad/s")).to_be_visible()
        time.sleep(1.5)                                   # longer than the session timeout: heartbeats keep it
        assert False not in backend.sent_of("teleop_lock")
        holder.close(run_before_unload=False)             # the key is never released on this page
        deadline = time.monotonic() + 10
        while False not in backend.sent_of("teleop_lock") and time.monotonic() < deadline:
            time.sleep(0.02)
        released_at = backend.times_of("teleop_lock")[backend.sent_of("teleop_lock").index(False)]
        last_beat = max(t for w, v, t in backend.sent if w == "control_heartbeat" and t < released_at)
        # Not before the timeout, and at the first tick after it (ticks come every 1 / teleop_publish_hz):
        # the bound is timeout + one publish period, whatever the host's load does to the wall clock.
        deadline = last_beat + settings.teleop_session_timeout_s
        assert released_at > deadline
        assert len([t for t in backend.ticks if deadline < t < released_at]) <= 1   # only the releasing tick
        sent = [(w, v) for w, v, t in backend.sent if t >= released_at - 1e-9 and w in ("teleop", "teleop_lock")]
        assert sent[:1] == [("teleop_lock", False)]
        before = [(w, v) for w, v, t in backend.sent if t < released_at and w == "teleop"]
        assert before[-1] == ("teleop", TeleopCommand(0.0, 0.0))   # zero went out before the lock was released
        assert all(w != "teleop" for w, _ in sent)                  # and nothing after it
        expect(other.get_by_text("Autonomy in control")).to_be_visible()
        other.get_by_role("button", name="Take over").click()
        expect(other.get_by_text("You are in control")).to_be_visible()
        other.close()


# --- issue 16 item 13: what an operator reads at a glance ----------------------------------------
def test_operator_reads_task_agent_tool_calls_and_verdicts_at_a_glance(controller_page):
    page, backend = controller_page
    status = {"state": "running", "task": "fetch the red cube", "steps": 2, "backend": "replay", "is_model": False,
              "note": "NOT a language model: replaying a fixed script", "camera": "sim", "frames_in_window": 8,
              "last_prompt_images": None, "estop_latched": False, "teleop_locked": False}
    backend.hub.update(backend.state.on_agent_status, json.dumps(status))     # a task started with the CLI
    task = page.get_by_role("status").filter(has_text="Task")
    expect(task).to_have_text("Task “fetch the red cube”: running, 2 tool calls (started outside this console)")
    expect(page.get_by_text("Agent: running · backend replay (NOT a language model: replaying a fixed script) · "
                            "camera sim, 8 frames")).to_be_visible()
    # tool calls: summaries in the cells, the supervisor's verdict in its own column
    state_json = json.dumps({"pose": {"x": 1.0, "y": 2.0}, "objects": [{"name": f"obj{i}"} for i in range(40)]})
    for step in range(60):                            # a long mission must not grow the page without end
        backend.hub.update(backend.state.on_tool_call, {
            "task_id": "t1", "step": step, "name": "describe_state", "arguments_json": "{}", "actuating": False,
            "status": "succeeded", "result_json": json.dumps({"tool": "describe_state", "status": "succeeded",
                                                             "response": {"success": True, "state_json": state_json}})})
    backend.hub.update(backend.state.on_tool_call, {
        "task_id": "t1", "step": 60, "name": "release", "arguments_json": '{"object_name": "red_cube"}',
        "actuating": True, "status": "requested", "result_json": ""})
    backend.hub.update(backend.state.on_verdict, {"time": time.time(), "level": 4, "level_name": "REJECT",
                                                  "source": "action:skills/release", "reasons": ["operator denied"]})
    backend.hub.update(backend.state.on_tool_call, {
        "task_id": "t1", "step": 60, "name": "release", "arguments_json": '{"object_name": "red_cube"}',
        "actuating": True, "status": "rejected",
        "result_json": json.dumps({"tool": "release", "status": "rejected", "reasons": ["operator denied"]})})
    table = page.get_by_role("table", name="Tool calls")
    last = table.get_by_role("row").filter(has_text="release")
    expect(last.get_by_role("cell")).to_have_text(["60", "release", "object_name=red_cube", "rejected",
                                                   "REJECT: operator denied", "operator denied"], use_inner_text=True)
    first = table.get_by_role("row").nth(1)
    expect(first.get_by_role("cell").nth(4)).to_have_text("— (read-only)")
    expect(first.get_by_role("cell").nth(5)).to_have_text("state_json={pose, objects}", use_inner_text=True)   # as rendered
    assert "\\\"" not in table.inner_text()                        # no escaped JSON anywhere
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2000, f"the page grew to {height} px"
    first.get_by_role("cell").nth(5).get_by_text("state_json={pose, objects}").click()   # the whole result on demand
    expect(first.get_by_role("cell").nth(5)).to_contain_text('"name": "obj39"')


def test_supervisor_at_rest_reads_idle_not_stop(controller_page):
    page, backend = controller_page
    backend.hub.update(backend.state.on_diagnostics, [{
        "name": "/safety_supervisor: safety supervisor", "level": 1, "message": "STOP: command watchdog: no fresh input",
        "values": {"active_source": "none", "estop_latched": "False"}}])
    row = page.get_by_role("table", name="Node health").get_by_role("row").nth(1)
    expect(row.get_by_role("cell")).to_have_text([
        "/safety_supervisor: safety supervisor", "OK", "idle: nothing commands motion, the supervisor holds the base at zero"])
    backend.hub.update(backend.state.on_verdict, {"time": time.time(), "level": 3, "level_name": "STOP",
                                                  "source": "none", "reasons": ["command watchdog: no fresh input"]})
    verdicts = page.get_by_role("list", name="Recent verdicts")
    expect(verdicts).to_contain_text("idle: nothing commands motion, the base is held at zero")
    expect(verdicts).not_to_contain_text("STOP")


def test_wrong_token_blanks_everything_an_earlier_session_showed(browser):
    backend, make = _console()
    with serve(make) as url:
        page = browser.new_page()
        page.goto(url)                                                  # a viewer on localhost
        expect(page.get_by_text("Connected as viewer")).to_be_visible()
        video = page.get_by_role("img", name="Live camera video")
        backend.frames.publish(jpeg(120))
        expect(video).to_have_attribute("data-frames", "1")
        backend.hub.update(backend.state.on_odometry, 1.25, -0.5, 0.0, 0.2, 0.0, 0.0)
        backend.hub.update(backend.state.on_estop_latched, False)
        backend.hub.update(backend.state.on_task, "bring the cube", "running")
        expect(page.get_by_text("x 1.25 m, y -0.50 m")).to_be_visible()
        page.get_by_label("Access token").fill("wrong-token-0123456789abcdef")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Token not accepted: sign in with a valid token")
        expect(page.get_by_text("Not signed in")).to_be_visible()
        expect(page.get_by_text("x 1.25 m, y -0.50 m")).to_have_count(0)
        expect(page.get_by_role("status").filter(has_text="Task")).to_have_text("No task")
        expect(page.get_by_role("status").filter(has_text="E-stop")).to_have_text("E-stop state unknown")
        expect(page.get_by_text("No video")).to_be_visible()
        assert video.get_attribute("data-frames") is None
        blank = page.evaluate("""() => { const c = document.getElementById('video');
            return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every((v) => v === 0); }""")
        assert blank                                                    # the last frame is gone
        backend.frames.publish(jpeg(200))                               # and nothing new arrives
        backend.hub.update(backend.state.on_odometry, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0)
        time.sleep(0.5)
        expect(page.get_by_text("x 3.00 m, y 3.00 m")).to_have_count(0)
        page.close()


def test_control_kept_while_the_events_socket_reconnects(browser):
    """The heartbeat falls back to HTTP while /ws/events is down, so a network blip does not end control."""
    settings = ConsoleSettings(teleop_session_timeout_s=1.0, heartbeat_period_s=0.25)
    backend, make = _console(settings=settings)
    with serve(make) as url, backend.ticking():
        page = browser.new_page()
        page.goto(f"{url}/#token={CONTROLLER}")
        page.get_by_role("button", name="Take over").click()
        expect(page.get_by_text("You are in control")).to_be_visible()
        page.evaluate("window.__reconnect = connectEvents; window.connectEvents = () => {}; page.events.close()")
        expect(page.get_by_text("Disconnected, reconnecting…")).to_be_visible()
        n = len(backend.sent_of("control_heartbeat"))
        time.sleep(2.5)                                   # 2.5 session timeouts without the socket
        assert len(backend.sent_of("control_heartbeat")) >= n + 4   # over HTTP meanwhile
        assert False not in backend.sent_of("teleop_lock")
        page.evaluate("window.connectEvents = window.__reconnect; connectEvents()")
        expect(page.get_by_text("Connected as controller")).to_be_visible()
        expect(page.get_by_text("You are in control")).to_be_visible()
        page.close()
