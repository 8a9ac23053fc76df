"""metadata.yaml of a recording folder, as rosbag2 writes it (bag format version 9), so that `ros2 bag info`,
`ros2 bag play` and other rosbag2 readers open the folder, not only its single files.

The live writer keeps a FileSummary per file it wrote and rewrites the folder's metadata.yaml (atomically:
temporary file + rename) after every flush, split and close, so a killed recorder leaves metadata that matches
what was flushed. When the disk budget deletes a file of another recording, that folder's metadata.yaml is
rebuilt from its remaining files (`rebuild_after_deletion`), so no metadata names a missing file.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mcap.exceptions import McapError
from mcap.reader import StreamReader
from mcap.records import Channel, Message

VERSION = 9
STORAGE = "mcap"
FILENAME = "metadata.yaml"


@dataclass
class FileSummary:
    name: str                                    # file name, relative to the recording folder
    start_ns: int = 0                            # first message's log time (0 while empty)
    end_ns: int = 0                              # last message's log time
    counts: Counter = field(default_factory=Counter)   # topic -> messages

    def add(self, topic: str, log_time_ns: int) -> None:
        self.start_ns = log_time_ns if not self.total else min(self.start_ns, log_time_ns)
        self.end_ns = max(self.end_ns, log_time_ns)
        self.counts[topic] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class TopicMeta:
    name: str
    type_name: str
    offered_qos_profiles: str   # YAML text, as in the MCAP channel metadata
    type_hash: str = ""


def bag_metadata(files: list[FileSummary], topics: list[TopicMeta], ros_distro: str = "") -> dict:
    """The metadata.yaml document for these files (in order) and topics."""
    used = [f for f in files if f.total]
    start = min((f.start_ns for f in used), default=0)
    end = max((f.end_ns for f in used), default=0)
    totals = Counter()
    for f in files:
        totals.update(f.counts)
    return {"rosbag2_bagfile_information": {
        "version": VERSION,
        "storage_identifier": STORAGE,
        "duration": {"nanoseconds": end - start},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(totals.values()),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.name, "type": t.type_name, "serialization_format": "cdr",
                                "offered_qos_profiles": t.offered_qos_profiles,
                                "type_description_hash": t.type_hash},
             "message_count": totals[t.name]} for t in topics],
        "compression_format": "",          # chunks are compressed inside the MCAP files, not the files
        "compression_mode": "",
        "relative_file_paths": [f.name for f in files],
        "files": [{"path": f.name, "starting_time": {"nanoseconds_since_epoch": f.start_ns},
                   "duration": {"nanoseconds": f.end_ns - f.start_ns}, "message_count": f.total} for f in files],
        "custom_data": {},
        "ros_distro": ros_distro,
    }}


def write_metadata(folder: Path, document: dict) -> Path:
    """Atomically (a reader sees the old or the new file, never half of one)."""
    path = Path(folder) / FILENAME
    tmp = path.with_name(f".{FILENAME}.tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    os.replace(tmp, path)
    return path


def summarize_file(path: Path) -> FileSummary:
    """Counts and times of one MCAP file by walking its records (a file cut short by a kill is read up to its
    torn record)."""
    summary, by_id = FileSummary(Path(path).name), {}
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f, skip_magic=False).records:
                if isinstance(record, Channel):
                    by_id[record.id] = record.topic
                elif isinstance(record, Message):
                    summary.add(by_id[record.channel_id], record.log_time)
        except (McapError, EOFError, ValueError, KeyError):
            pass
    return summary


def rebuild_after_deletion(folder: Path) -> Path | None:
    """Rewrites `folder`'s metadata.yaml from the .mcap files still there (after the budget deleted one).
    Topic types and QoS come from the old metadata. No file left: the metadata goes too (the folder can then
    be removed). None when there is nothing to write."""
    folder = Path(folder)
    old_path = folder / FILENAME
    try:
        old = yaml.safe_load(old_path.read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    names = [n for n in old.get("relative_file_paths", []) if (folder / n).exists()]
    if not names:
        old_path.unlink(missing_ok=True)
        return None
    files = [summarize_file(folder / n) for n in names]
    topics = [TopicMeta(t["topic_metadata"]["name"], t["topic_metadata"]["type"],
                        t["topic_metadata"].get("offered_qos_profiles", ""),
                        t["topic_metadata"].get("type_description_hash", ""))
              for t in old.get("topics_with_message_count", [])]
    return write_metadata(folder, bag_metadata(files, topics, old.get("ros_distro", "")))
