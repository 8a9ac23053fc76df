"""console_node settings: one dataclass, validated, every field documented in config/console.yaml.

The teleop clamps are the console's own operating limits: at most the robot's (robot_file,
config/robot.yaml), which within_robot() checks when the node starts."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from qwen_stack.robot import ROBOT_FILE, RobotSpec


class ConsoleConfigError(ValueError):
    """A console parameter that cannot be used; the message names it."""


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
MAX_OPERATOR_NAME_CHARS = 64   # recorded with every reset and approval: a name, not a text


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token_file: str = ""
    viewer_token_file: str = ""
    extra_origins: str = ""
    operator_name: str = "operator"
    teleop_max_linear: float = 0.5
    teleop_max_angular: float = 1.0
    teleop_deadman_s: float = 0.3
    teleop_publish_hz: float = 20.0
    heartbeat_period_s: float = 0.5
    teleop_session_timeout_s: float = 1.5
    video_max_fps: float = 15.0
    raw_jpeg_quality: int = 80
    robot_state_hz: float = 10.0
    map_hz: float = 4.0
    recent_verdicts: int = 50
    recent_tool_calls: int = 100
    thinking_max_chars: int = 20000
    service_timeout_s: float = 3.0
    max_body_bytes: int = 16384
    max_text_chars: int = 2000
    robot_file: str = ROBOT_FILE   # the robot description (config/ name or path); the stack sets it

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ConsoleConfigError(f"console parameter '{name}' = {getattr(self, name)!r}: {why}")

        def positive(name: str, upper: float = math.inf) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= upper):
                bad(name, f"must be a number in (0, {upper:g}]")

        def integer(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)   # a YAML `true` is an int to Python: refused, not read as 1
            if isinstance(v, bool) or not (isinstance(v, int) and lo <= v <= hi):
                bad(name, f"must be an integer in [{lo}, {hi}]")

        if not isinstance(self.host, str) or not self.host.strip():
            bad("host", "must be an address to bind (127.0.0.1 keeps the console on this machine)")
        integer("port", 0, 65535)   # 0: any free port
        if not isinstance(self.operator_name, str) or not self.operator_name.strip():
            bad("operator_name", "must not be empty (it is recorded with approvals and e-stop resets)")
        if len(self.operator_name) > MAX_OPERATOR_NAME_CHARS or not self.operator_name.isprintable():
            bad("operator_name", f"must be printable text of at most {MAX_OPERATOR_NAME_CHARS} characters")
        for origin in self.origins_extra():
            if not (origin.startswith("http://") or origin.startswith("https://")) or origin.endswith("/"):
                bad("extra_origins", f"{origin!r} is not an origin like 'https://host:port'")
        positive("teleop_max_linear", 5.0)
        positive("teleop_max_angular", 10.0)
        if not isinstance(self.robot_file, str) or not self.robot_file.strip():
            bad("robot_file", "must name the robot description (config/robot.yaml)")
        positive("teleop_deadman_s", 5.0)
        positive("teleop_publish_hz", 200.0)
        positive("heartbeat_period_s", 10.0)
        positive("video_max_fps", 120.0)
        positive("robot_state_hz", 100.0)
        positive("map_hz", 30.0)
        positive("service_timeout_s", 60.0)
        if self.teleop_deadman_s < 1.0 / self.teleop_publish_hz:
            bad("teleop_deadman_s", "must be at least one teleop publish period (1 / teleop_publish_hz)")
        positive("teleop_session_timeout_s", 30.0)
        if self.teleop_session_timeout_s < 2 * self.heartbeat_period_s:
            bad("teleop_session_timeout_s", "must be at least two heartbeat periods (2 * heartbeat_period_s): "
                                            "one late heartbeat must not take control away")
        integer("max_body_bytes", 1024, 10_485_760)
        integer("max_text_chars", 64, 100_000)
        integer("raw_jpeg_quality", 1, 100)
        for name in ("recent_verdicts", "recent_tool_calls", "thinking_max_chars"):
            integer(name, 1, 1_000_000)

    @property
    def loopback(self) -> bool:
        """True when the server is reachable from this machine only."""
        return self.host in LOOPBACK_HOSTS

    def origins_extra(self) -> list[str]:
        return [o.strip() for o in self.extra_origins.split(",") if o.strip()]

    def allowed_origins(self, port: int | None = None) -> set[str]:
        """Origins whose pages may open the WebSockets and send control requests."""
        port = self.port if port is None else port
        hosts = {"127.0.0.1", "localhost", "[::1]"} if self.loopback else {self.host}
        return {f"http://{h}:{port}" for h in hosts} | set(self.origins_extra())

    def within_robot(self, robot: RobotSpec) -> "ConsoleSettings":
        """These settings, once their teleop clamps are checked against the robot's limits (ConsoleConfigError)."""
        for name, robot_name in (("teleop_max_linear", "max_linear_vel"), ("teleop_max_angular", "max_angular_vel")):
            if getattr(self, name) > getattr(robot, robot_name):
                raise ConsoleConfigError(f"console parameter '{name}' = {getattr(self, name)!r}: above the robot's "
                                         f"{robot_name} ({getattr(robot, robot_name):g}, robot_file {self.robot_file})")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "ConsoleSettings":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConsoleConfigError(f"unknown console parameters: {sorted(unknown)}")
        return cls(**values)

    @classmethod
    def from_params_file(cls, path: str | Path) -> "ConsoleSettings":
        """Read the `ros__parameters` of a ROS parameter file (the first node entry that has them)."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        for entry in data.values():
            if isinstance(entry, dict) and "ros__parameters" in entry:
                return cls.from_dict(dict(entry["ros__parameters"]))
        raise ConsoleConfigError(f"{path}: no 'ros__parameters' block")
