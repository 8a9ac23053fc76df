"""MCAP files in the rosbag2 MCAP layout, split by size and time, flushed about every second, inside a disk budget.

Layout (what `ros2 bag record -s mcap` writes): header profile "ros2"; one schema per message type, named
"pkg/msg/Type", encoding "ros2msg" (recorder.schema); one channel per topic, message encoding "cdr",
metadata "offered_qos_profiles" (and "topic_type_hash" when known); messages carry the serialized CDR bytes
as received, log_time = reception time, publish_time = the publisher's source timestamp (both ns since the
Unix epoch). Every file is complete on its own (its own schemas and channels), so one file opens without
the others and the budget can delete any of them.

A metadata.yaml (recorder.metadata, rosbag2's bag format 9) describes the folder's files; it is rewritten after
every flush, split and close, so `ros2 bag info/play` open the folder at any time.

Crash safety: the chunk in progress is closed and written out every `flush_period_s` (mcap's
Writer.flush), so a killed process leaves a file whose last chunk is at most that old; the file then lacks
its summary and footer, which the stream readers do not need (recorder.reading reads such files).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer

from qwen_stack.recorder.metadata import FileSummary, TopicMeta, bag_metadata, rebuild_after_deletion, write_metadata

PROFILE = "ros2"
LIBRARY = "qwen_stack recorder"
COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


@dataclass(frozen=True)
class TopicInfo:
    topic: str                  # fully qualified name, e.g. "/cmd_vel"
    type_name: str              # "pkg/msg/Type"
    definition: str             # complete ros2msg text (recorder.schema)
    offered_qos_profiles: str   # YAML (recorder.qos.offers_yaml)
    type_hash: str = ""         # "RIHS01_..." when the graph reports it


@dataclass
class BagLimits:
    split_bytes: int = 512 * 2**20       # a file is closed once it is this big (+ at most one chunk)
    split_seconds: float = 600.0         # ... or this old
    budget_bytes: int = 0                # all recordings under the budget root together; 0 = no limit
    flush_period_s: float = 1.0          # close and write the chunk in progress this often
    chunk_bytes: int = 1 * 2**20         # a chunk is also closed when it reaches this size
    compression: str = "zstd"

    def __post_init__(self) -> None:
        if self.split_bytes <= 0 or self.split_seconds <= 0 or self.flush_period_s <= 0 or self.chunk_bytes <= 0:
            raise ValueError(f"split sizes, times and periods must be > 0: {self}")
        if self.compression not in COMPRESSION:
            raise ValueError(f"compression {self.compression!r}: one of {sorted(COMPRESSION)}")
        if self.budget_bytes < 0 or (self.budget_bytes and self.budget_bytes < 2 * self.split_bytes):
            raise ValueError("budget_bytes must be 0 (no limit) or at least two files (2 * split_bytes)")


@dataclass
class BagStats:
    messages: dict = field(default_factory=dict)   # topic -> messages written
    files: list = field(default_factory=list)      # every file this writer opened, in order
    deleted: list = field(default_factory=list)    # files the budget removed
    flushes: int = 0


class BagWriter:
    """Writes one recording: `folder/<name>_<index>.mcap`, index from 0. Not thread safe (one caller)."""

    def __init__(self, folder: Path, name: str, limits: BagLimits, budget_root: Path | None = None,
                 clock: Callable[[], float] = time.monotonic, on_event: Callable[[str], None] | None = None):
        self.folder, self.name, self.limits = Path(folder), name, limits
        self.budget_root = Path(budget_root) if budget_root is not None else self.folder
        self.clock, self.on_event = clock, on_event or (lambda text: None)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.topics: dict[str, TopicInfo] = {}
        self.stats = BagStats()
        self._index = -1
        self._file = None
        self._writer: Writer | None = None
        self._channels: dict[str, int] = {}
        self._sequence: dict[str, int] = {}
        self._opened_at = self._last_flush = 0.0
        self._unflushed = 0
        self._files: list[FileSummary] = []     # this recording's files still on disk, in order
        self._open_next()

    # ------------------------------------------------------------------ public
    @property
    def current_path(self) -> Path:
        return self.folder / f"{self.name}_{self._index}.mcap"

    def add_topic(self, info: TopicInfo) -> None:
        """Registers a topic (in the current file at once, and in every later one)."""
        if info.topic in self.topics:
            return
        self.topics[info.topic] = info
        self.stats.messages.setdefault(info.topic, 0)
        self._register(info)

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """One serialized (CDR) message of a registered topic."""
        if self._writer is None:
            raise RuntimeError("the bag writer is closed")
        now = self.clock()
        if now - self._opened_at >= self.limits.split_seconds:
            self._rotate("time")
        seq = self._sequence[topic] = self._sequence.get(topic, 0) + 1
        self._writer.add_message(self._channels[topic], log_time=int(log_time_ns), data=bytes(data),
                                 publish_time=int(publish_time_ns if publish_time_ns else log_time_ns), sequence=seq)
        self.stats.messages[topic] += 1
        self._files[-1].add(topic, int(log_time_ns))
        self._unflushed += 1
        if self._file.tell() >= self.limits.split_bytes:
            self._rotate("size")
        self.tick(now)

    def tick(self, now: float | None = None) -> None:
        """Call often (every write does, and a timer): flushes when due, splits by time."""
        if self._writer is None:
            return
        now = self.clock() if now is None else now
        if now - self._opened_at >= self.limits.split_seconds:
            self._rotate("time")
        elif now - self._last_flush >= self.limits.flush_period_s:
            self._flush(now)

    def close(self) -> None:
        """Finishes the current file (summary and footer: indexed, seekable). Idempotent."""
        if self._writer is None:
            return
        self._finish_current()
        self._write_metadata()
        self.on_event(f"closed {self.current_path}")

    # ------------------------------------------------------------------ internals
    def _open_next(self) -> None:
        self._index += 1
        path = self.current_path
        self._file = open(path, "wb")
        self._writer = Writer(self._file, chunk_size=self.limits.chunk_bytes,
                              compression=COMPRESSION[self.limits.compression])
        self._writer.start(profile=PROFILE, library=LIBRARY)
        # rosbag2's MCAP plugin writes the distribution it recorded with; readers show it
        self._writer.add_metadata("rosbag2", {"ROS_DISTRO": os.environ.get("ROS_DISTRO", "")})
        self._channels, self._schemas = {}, {}
        for info in self.topics.values():
            self._register(info)
        self._opened_at = self._last_flush = self.clock()
        self._writer.flush()                 # header readable at once
        self.stats.files.append(path)
        self._files.append(FileSummary(path.name))
        self._write_metadata()
        self.on_event(f"opened {path}")
        self._enforce_budget()

    def _register(self, info: TopicInfo) -> None:
        schema_id = self._schemas.get(info.type_name)
        if schema_id is None:
            schema_id = self._schemas[info.type_name] = self._writer.register_schema(
                name=info.type_name, encoding=SchemaEncoding.ROS2, data=info.definition.encode())
        metadata = {"offered_qos_profiles": info.offered_qos_profiles}
        if info.type_hash:
            metadata["topic_type_hash"] = info.type_hash
        self._channels[info.topic] = self._writer.register_channel(
            topic=info.topic, message_encoding=MessageEncoding.CDR, schema_id=schema_id, metadata=metadata)

    def _flush(self, now: float) -> None:
        if self._unflushed:
            self._writer.flush()
            self.stats.flushes += 1
            self._unflushed = 0
            self._write_metadata()              # matches what is now on disk
        self._last_flush = now
        self._enforce_budget()

    def _finish_current(self) -> None:
        self._writer.finish()
        self._file.close()
        self._writer = self._file = None

    def _write_metadata(self) -> None:
        topics = [TopicMeta(t.topic, t.type_name, t.offered_qos_profiles, t.type_hash) for t in self.topics.values()]
        write_metadata(self.folder, bag_metadata(self._files, topics, os.environ.get("ROS_DISTRO", "")))

    def _rotate(self, why: str) -> None:
        self.on_event(f"split ({why}): closing {self.current_path}")
        self._finish_current()
        self._open_next()

    def _enforce_budget(self) -> None:
        """Deletes the oldest .mcap files under the budget root until the total fits; never the current file."""
        if not self.limits.budget_bytes:
            return
        current = self.current_path.resolve()
        files = []
        for p in self.budget_root.rglob("*.mcap"):
            try:
                st = p.stat()
            except FileNotFoundError:      # deleted meanwhile (another recorder's budget)
                continue
            files.append((st.st_mtime, str(p), p, st.st_size))
        total = sum(size for *_, size in files)
        for _, _, p, size in sorted(files):
            if total <= self.limits.budget_bytes:
                break
            if p.resolve() == current:
                continue
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            total -= size
            self.stats.deleted.append(p)
            if p.parent.resolve() == self.folder.resolve():
                self._files = [f for f in self._files if f.name != p.name]
                self._write_metadata()
            else:
                rebuild_after_deletion(p.parent)    # another recording: its metadata must not name the file
            self.on_event(f"budget: deleted {p} ({size / 2**20:.1f} MB)")
            try:
                p.parent.rmdir()               # a recording folder left empty
            except OSError:
                pass
