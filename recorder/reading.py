"""Reading recordings back, including files whose writer was killed (no summary, no footer, a torn last record).

The MCAP stream reader walks the records in file order; a file cut short ends in an incomplete record,
which ends the walk: everything before it (every chunk flushed before the crash) is returned, and the
result says the file was truncated. Messages are decoded with mcap_ros2's CDR decoder from the schemas
stored in the file itself (no ROS installation needed).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mcap.reader import StreamReader
from mcap.records import Channel, Footer, Message, Schema
from mcap_ros2.decoder import DecoderFactory


@dataclass
class RecordedMessage:
    topic: str
    type_name: str
    log_time: int        # ns, reception at the recorder
    publish_time: int    # ns, the publisher's source timestamp
    data: Any            # decoded message (attribute access like the ROS message), or raw bytes


@dataclass
class BagRead:
    path: Path
    messages: list = field(default_factory=list)     # RecordedMessage, in file (arrival) order
    channels: dict = field(default_factory=dict)     # topic -> Channel record
    schemas: dict = field(default_factory=dict)      # schema id -> Schema record
    counts: Counter = field(default_factory=Counter)  # topic -> messages in the file (kept or not)
    complete: bool = False                           # footer reached: the writer closed the file
    error: str = ""                                  # why reading stopped early (torn last record)

    def on(self, topic: str) -> list:
        return [m for m in self.messages if m.topic == topic]


def read_bag(path: str | Path, decode: bool = True, topics: set[str] | None = None,
             keep: Callable[[str], bool] | None = None) -> BagRead:
    """Messages of `topics` (all if None) for which `keep(topic)` holds; every message is counted."""
    out = BagRead(Path(path))
    factory = DecoderFactory()
    decoders: dict[int, Any] = {}
    by_id: dict[int, Channel] = {}
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f, skip_magic=False).records:
                if isinstance(record, Schema):
                    out.schemas[record.id] = record
                elif isinstance(record, Channel):
                    by_id[record.id] = record
                    out.channels[record.topic] = record
                elif isinstance(record, Message):
                    ch = by_id[record.channel_id]
                    out.counts[ch.topic] += 1
                    if (topics is not None and ch.topic not in topics) or (keep is not None and not keep(ch.topic)):
                        continue
                    schema = out.schemas.get(ch.schema_id)
                    data: Any = record.data
                    if decode:
                        if ch.id not in decoders:
                            decoders[ch.id] = factory.decoder_for(ch.message_encoding, schema)
                        if decoders[ch.id] is not None:
                            data = decoders[ch.id](record.data)
                    out.messages.append(RecordedMessage(ch.topic, schema.name if schema else "", record.log_time,
                                                        record.publish_time, data))
                elif isinstance(record, Footer):
                    out.complete = True
        except Exception as exc:   # noqa: BLE001 - a torn record at the end of a killed writer's file
            out.error = f"{type(exc).__name__}: {exc}"[:300]
    return out


def recording_files(path: str | Path) -> list[Path]:
    """A file, or the .mcap files of a recording folder in split order (<name>_<index>.mcap)."""
    p = Path(path)
    if p.is_dir():
        def index(f: Path) -> tuple:
            stem = f.stem.rsplit("_", 1)
            return (stem[0], int(stem[1])) if len(stem) == 2 and stem[1].isdigit() else (f.stem, -1)
        return sorted(p.glob("*.mcap"), key=index)
    return [p]
