"""recorder_node settings: one dataclass (each field is a ROS parameter, documented in config/recorder.yaml),
validated at start; a bad value is refused with a message naming the parameter."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from qwen_stack import topics as T
from qwen_stack.paths import SOURCE_ROOT
from qwen_stack.recorder.bag_writer import COMPRESSION, BagLimits

DEFAULT_OUTPUT_DIR = "~/.local/share/qwen_stack/bags"
# What a mission needs to be replayed and understood (see recorder/README.md). Relative names resolve in
# the recorder's namespace; topics that never appear (perception/* without a perception node) are skipped.
DEFAULT_TOPICS = [
    "/tf", "/tf_static", T.ROBOT_DESCRIPTION, T.ODOM, T.SCAN,
    T.PERCEPTION_OBJECTS, T.PERCEPTION_MARKERS,
    T.AUTONOMY_CMD_VEL, T.TELEOP_CMD_VEL, T.BASE_CMD_VEL, T.SAFETY_VERDICT,
    T.AGENT_TOOL_CALLS, T.AGENT_THINKING, T.AGENT_STATUS,
    T.SAFETY_ESTOP_TOPIC, T.SAFETY_ESTOP_STATE, T.TELEOP_LOCK, T.SAFETY_APPROVAL_REQUEST,
]
_NAME = re.compile(r"^[A-Za-z0-9_.-]*$")
_TOPIC = re.compile(r"^~?/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


class RecorderConfigError(ValueError):
    """A recorder parameter that cannot be used; the message names it."""


@dataclass(frozen=True)
class RecorderConfig:
    output_dir: str = DEFAULT_OUTPUT_DIR          # recordings go to <output_dir>/<recording_name>/
    recording_name: str = ""                     # "" = qwen_stack_<local date-time>
    topics: list = field(default_factory=lambda: list(DEFAULT_TOPICS))
    camera_topic: str = T.CAMERA_COMPRESSED      # recorded at camera_rate ("" = no camera)
    camera_rate: float = 5.0                     # Hz kept of the camera; 0 = every frame
    annotated_image_topic: str = T.PERCEPTION_IMAGE_ANNOTATED   # raw RGB: recorded at annotated_image_rate ("" = not)
    annotated_image_rate: float = 1.0            # Hz kept of the annotated image; 0 = every frame
    split_size_mb: float = 512.0                 # a file is closed at this size
    split_duration_s: float = 600.0              # ... or this age
    budget_mb: float = 8192.0                    # all recordings under output_dir; oldest files go first; 0 = no limit
    flush_period_s: float = 1.0                  # chunk written out this often: what a crash can lose
    compression: str = "zstd"                    # chunk compression: zstd, lz4 or none
    queue_depth: int = 100                       # per-topic subscription queue (messages)
    discovery_period_s: float = 1.0              # how often the graph is checked for topics that appeared

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise RecorderConfigError(f"recorder parameter '{name}' = {getattr(self, name)!r}: {why}")

        def number(name: str, lo: float, hi: float, zero_ok: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(name, "must be a number")
            if not (lo <= v <= hi or (zero_ok and v == 0)):
                bad(name, f"must be in [{lo:g}, {hi:g}]" + (" or 0" if zero_ok else ""))

        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            bad("output_dir", f"must name a folder (default {DEFAULT_OUTPUT_DIR})")
        out = self.output_path
        repo = SOURCE_ROOT.resolve()
        if (repo / ".git").exists() and (out == repo or repo in out.parents):
            bad("output_dir", f"is inside the source checkout {repo}; recordings stay out of the repository")
        if not isinstance(self.recording_name, str) or not _NAME.match(self.recording_name) or self.recording_name in (".", ".."):
            bad("recording_name", "letters, digits, '_', '-', '.' only (a folder name)")
        if not isinstance(self.topics, (list, tuple)) or not all(isinstance(t, str) for t in self.topics):
            bad("topics", "must be a list of topic names")
        for t in self.topics:
            if not _TOPIC.match(t):
                bad("topics", f"{t!r} is not a valid topic name")
        if len(set(self.topics)) != len(self.topics):
            bad("topics", "lists a topic twice")
        if not self.topics and not self.camera_topic:
            bad("topics", "nothing to record (and camera_topic is empty)")
        if self.camera_topic and not _TOPIC.match(self.camera_topic):
            bad("camera_topic", "is not a valid topic name ('' records no camera)")
        if self.camera_topic in self.topics:
            bad("camera_topic", "is also in topics; list it only as camera_topic (it is throttled)")
        number("camera_rate", 0.1, 1000.0, zero_ok=True)
        if self.annotated_image_topic and not _TOPIC.match(self.annotated_image_topic):
            bad("annotated_image_topic", "is not a valid topic name ('' records none)")
        if self.annotated_image_topic and self.annotated_image_topic in (*self.topics, self.camera_topic):
            bad("annotated_image_topic", "is also in topics or camera_topic; list it once (it is throttled)")
        number("annotated_image_rate", 0.1, 1000.0, zero_ok=True)
        number("split_size_mb", 1.0, 1e6)
        number("split_duration_s", 1.0, 86400.0)
        number("budget_mb", 2 * self.split_size_mb if self.budget_mb else 0.0, 1e9, zero_ok=True)
        number("flush_period_s", 0.05, 10.0)
        if self.compression not in COMPRESSION:
            bad("compression", f"must be one of {sorted(COMPRESSION)}")
        if isinstance(self.queue_depth, bool) or not isinstance(self.queue_depth, int) or not 1 <= self.queue_depth <= 10000:
            bad("queue_depth", "must be an integer in [1, 10000]")
        number("discovery_period_s", 0.1, 60.0)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser().resolve()

    def limits(self) -> BagLimits:
        mb = 2**20
        return BagLimits(split_bytes=int(self.split_size_mb * mb), split_seconds=float(self.split_duration_s),
                         budget_bytes=int(self.budget_mb * mb), flush_period_s=float(self.flush_period_s),
                         chunk_bytes=min(2**20, max(2**16, int(self.split_size_mb * mb) // 8)),
                         compression=self.compression)

    @classmethod
    def from_dict(cls, values: dict) -> "RecorderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RecorderConfigError(f"unknown recorder parameters: {unknown}")
        return cls(**values)
