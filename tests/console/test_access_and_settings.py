"""Credentials, roles, the bind rule and parameter validation (pure, no ROS, no web)."""
from __future__ import annotations

import os
import stat

import pytest

from qwen_stack.console.access import (CONTROLLER_TOKEN_ENV, VIEWER_TOKEN_ENV, AccessConfigError, Credentials, Role,
                                       bearer_token, load_credentials, origin_allowed)
from qwen_stack.console.config import ConsoleConfigError, ConsoleSettings
from qwen_stack.paths import config_file

TOKEN = "a" * 20
VTOKEN = "b" * 20


def test_token_file_created_0600_at_first_start_and_reused(tmp_path):
    path = tmp_path / "sub" / "token"
    s = ConsoleSettings(token_file=str(path))
    creds, created = load_credentials(s, environ={})
    assert created and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(creds.controller_token) >= 40 and creds.controller_source == str(path)
    again, created_again = load_credentials(s, environ={})
    assert not created_again and again.controller_token == creds.controller_token
    other = tmp_path / "other"
    assert load_credentials(ConsoleSettings(token_file=str(other)), environ={})[0].controller_token \
        != creds.controller_token   # no default secret: every created token is random


def test_env_token_takes_precedence_and_no_file_written(tmp_path):
    path = tmp_path / "token"
    creds, created = load_credentials(ConsoleSettings(token_file=str(path)), environ={CONTROLLER_TOKEN_ENV: TOKEN})
    assert creds.controller_token == TOKEN and creds.controller_source == CONTROLLER_TOKEN_ENV
    assert not created and not path.exists()


def test_token_file_readable_by_others_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    os.chmod(path, 0o644)
    with pytest.raises(AccessConfigError, match="chmod 600"):
        load_credentials(ConsoleSettings(token_file=str(path)), environ={})


@pytest.mark.parametrize("bad", ["short", "with space inside 0123456789"])
def test_unusable_tokens_refused(bad):
    with pytest.raises(AccessConfigError, match=CONTROLLER_TOKEN_ENV):
        load_credentials(ConsoleSettings(token_file="/nonexistent/x"), environ={CONTROLLER_TOKEN_ENV: bad})


def test_bind_beyond_localhost_refused_without_credentials(tmp_path):
    s = ConsoleSettings(host="0.0.0.0", token_file=str(tmp_path / "token"))
    with pytest.raises(AccessConfigError, match="refusing to bind to '0.0.0.0'.*control credential"):
        load_credentials(s, environ={})
    assert not (tmp_path / "token").exists()              # nothing generated for a public bind
    with pytest.raises(AccessConfigError, match="refusing to bind to '0.0.0.0'.*viewer credential"):
        load_credentials(s, environ={CONTROLLER_TOKEN_ENV: TOKEN})
    with pytest.raises(AccessConfigError, match="must differ"):
        load_credentials(s, environ={CONTROLLER_TOKEN_ENV: TOKEN, VIEWER_TOKEN_ENV: TOKEN})
    creds, _ = load_credentials(s, environ={CONTROLLER_TOKEN_ENV: TOKEN, VIEWER_TOKEN_ENV: VTOKEN})
    assert not creds.open_viewing
    assert creds.role_of(None) == Role.ANONYMOUS


def test_viewer_token_file(tmp_path):
    vpath = tmp_path / "viewer"
    s = ConsoleSettings(host="192.168.1.5", viewer_token_file=str(vpath))
    with pytest.raises(AccessConfigError, match="viewer_token_file"):
        load_credentials(s, environ={CONTROLLER_TOKEN_ENV: TOKEN})
    vpath.write_text(VTOKEN + "\n")
    os.chmod(vpath, 0o600)
    creds, _ = load_credentials(s, environ={CONTROLLER_TOKEN_ENV: TOKEN})
    assert creds.role_of(VTOKEN) == Role.VIEWER


def test_roles():
    c = Credentials(TOKEN, VTOKEN, "env", "env", open_viewing=True)
    assert c.role_of(TOKEN) == Role.CONTROLLER
    assert c.role_of(VTOKEN) == Role.VIEWER
    assert c.role_of(None) == Role.VIEWER          # localhost: viewing is open
    assert c.role_of("c" * 20) == Role.ANONYMOUS    # a wrong token is never a viewer
    assert Credentials(TOKEN, None, "env", None, open_viewing=False).role_of(None) == Role.ANONYMOUS


def test_bearer_and_origin():
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer ") is None
    allowed = ConsoleSettings(port=9000).allowed_origins()
    assert allowed == {"http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"}
    assert origin_allowed("http://localhost:9000", allowed) and origin_allowed(None, allowed)
    assert not origin_allowed("http://localhost:9001", allowed) and not origin_allowed("null", allowed)
    assert ConsoleSettings(host="10.0.0.2", port=80, extra_origins="https://robot.example").allowed_origins() == {
        "http://10.0.0.2:80", "https://robot.example"}


def test_shipped_config_loads_with_defaults():
    assert ConsoleSettings.from_params_file(config_file("console.yaml")) == ConsoleSettings()


@pytest.mark.parametrize("name,value", [
    ("host", ""), ("port", 70000), ("port", "8080"), ("operator_name", " "), ("teleop_max_linear", 0.0),
    ("teleop_max_linear", float("nan")), ("teleop_max_angular", 11.0), ("teleop_deadman_s", 0.01),
    ("teleop_publish_hz", -1.0), ("video_max_fps", float("inf")), ("raw_jpeg_quality", 0),
    ("recent_verdicts", 0), ("extra_origins", "robot.example"), ("extra_origins", "http://x/"),
    ("service_timeout_s", 0.0),
    # issue 16: a YAML `true` is an int to Python; it is refused, not read as 1
    ("port", True), ("teleop_max_linear", True), ("heartbeat_period_s", True), ("raw_jpeg_quality", True),
    ("recent_verdicts", True), ("max_body_bytes", True), ("max_text_chars", False),
    ("teleop_session_timeout_s", 0.9),      # under two heartbeat periods (0.5 s): one late beat would drop control
    ("teleop_session_timeout_s", 31.0), ("max_body_bytes", 1023), ("max_body_bytes", 2 ** 30),
    ("max_text_chars", 63), ("operator_name", "o" * 65), ("operator_name", "line\nbreak"), ("robot_file", "")])
def test_bad_parameter_rejected_with_its_name(name, value):
    with pytest.raises(ConsoleConfigError, match=f"'{name}'"):
        ConsoleSettings(**{name: value})


@pytest.mark.parametrize("name, value, robot_limit", [("teleop_max_linear", 0.6, "max_linear_vel"),
                                                      ("teleop_max_angular", 1.2, "max_angular_vel")])
def test_teleop_clamps_stay_within_the_robots_limits(name, value, robot_limit):
    from qwen_stack.robot import load_robot

    robot = load_robot()
    assert ConsoleSettings().within_robot(robot) == ConsoleSettings()
    assert ConsoleSettings(teleop_max_linear=0.2).within_robot(robot).teleop_max_linear == 0.2   # slower: its own
    with pytest.raises(ConsoleConfigError, match=rf"'{name}' = {value}: above the robot's {robot_limit}"):
        ConsoleSettings(**{name: value}).within_robot(robot)


def test_unknown_parameter_rejected():
    with pytest.raises(ConsoleConfigError, match="unknown console parameters: \\['colour'\\]"):
        ConsoleSettings.from_dict({"colour": "red"})
