"""The pure writer: files split by size and time, flush cadence (what a crash loses), disk budget, clean close;
the camera throttle; QoS offers as rosbag2 stores them. Fake clocks, bytes payloads: no ROS graph."""
from __future__ import annotations

import os
import random
import shutil

import pytest
import yaml

from qwen_stack.recorder.bag_writer import BagLimits, BagWriter, TopicInfo
from qwen_stack.recorder.qos import INFINITE_NS, Offer, offers_yaml, request_for
from qwen_stack.recorder.reading import read_bag, recording_files
from qwen_stack.recorder.throttle import RateThrottle

RAW = "uint8[] data\n"   # a definition whose CDR is a length-prefixed byte array


def cdr_bytes(payload: bytes) -> bytes:
    """CDR (little endian) of `uint8[] data`: encapsulation header, uint32 length, bytes."""
    return b"\x00\x01\x00\x00" + len(payload).to_bytes(4, "little") + payload


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def writer(tmp_path, clock=None, **limits):
    w = BagWriter(tmp_path / "rec", "rec", BagLimits(**limits), budget_root=tmp_path, clock=clock or Clock())
    w.add_topic(TopicInfo("/blob", "test_msgs/msg/Blob", RAW, offers_yaml([Offer()])))
    return w


def all_messages(folder):
    out = []
    for f in recording_files(folder):
        r = read_bag(f)
        assert r.complete, (f, r.error)
        out += r.messages
    return out


def test_split_by_size_keeps_every_message_in_order_and_every_file_complete(tmp_path):
    rng = random.Random(0)
    w = writer(tmp_path, split_bytes=64 * 1024, chunk_bytes=8 * 1024, compression="none")
    for i in range(200):   # 200 x ~2 KB, incompressible
        w.write("/blob", cdr_bytes(i.to_bytes(4, "little") + rng.randbytes(2000)), log_time_ns=i + 1)
    w.close()
    files = recording_files(tmp_path / "rec")
    assert len(files) >= 5 and files == w.stats.files
    for f in files:   # split threshold + at most one chunk + the summary
        assert os.path.getsize(f) <= 64 * 1024 + 8 * 1024 + 4096, f
    msgs = all_messages(tmp_path / "rec")
    assert [int.from_bytes(bytes(m.data.data[:4]), "little") for m in msgs] == list(range(200))
    assert [m.log_time for m in msgs] == list(range(1, 201))
    for f in files:   # each file stands alone: its own schema and channel with the QoS metadata
        r = read_bag(f)
        ch = r.channels["/blob"]
        assert ch.message_encoding == "cdr" and "offered_qos_profiles" in ch.metadata
        assert r.schemas[ch.schema_id].name == "test_msgs/msg/Blob" and r.schemas[ch.schema_id].encoding == "ros2msg"


def test_split_by_time(tmp_path):
    clock = Clock()
    w = writer(tmp_path, clock, split_seconds=10.0)
    for i in range(250):              # 25 s at 10 Hz
        clock.t = i * 0.1
        w.write("/blob", cdr_bytes(bytes([i % 256])), log_time_ns=i)
    w.close()
    files = recording_files(tmp_path / "rec")
    assert len(files) == 3
    per_file = [[m.log_time for m in read_bag(f).messages] for f in files]
    assert per_file[0] == list(range(0, 100)) and per_file[1] == list(range(100, 200)) and per_file[2] == list(range(200, 250))


def test_flush_cadence_bounds_what_a_kill_loses(tmp_path):
    """Read the open file (as after `kill -9`) at every step: all messages older than the flush period are there."""
    clock = Clock()
    w = writer(tmp_path, clock, flush_period_s=1.0)
    for i in range(60):               # 6 s at 10 Hz
        clock.t = i * 0.1 + 0.001
        w.write("/blob", cdr_bytes(b"x" * 10), log_time_ns=i)
        snap = tmp_path / "snap.mcap"
        shutil.copyfile(w.current_path, snap)   # the bytes a killed process leaves
        r = read_bag(snap)
        assert not r.complete
        seen = len(r.messages)
        assert [m.log_time for m in r.messages] == list(range(seen))
        lost = (i + 1) - seen                     # written but not yet on disk
        assert lost <= 10, f"step {i}: {lost} messages (> 1 s at 10 Hz) only in memory"
    assert w.stats.flushes == 5            # at t = 1, 2, 3, 4, 5 s: one chunk per second, not per message
    w.close()
    assert read_bag(w.current_path).complete


def test_torn_last_record_is_tolerated(tmp_path):
    clock = Clock()
    w = writer(tmp_path, clock, flush_period_s=1.0)
    for i in range(30):
        clock.t = i * 0.1
        w.write("/blob", cdr_bytes(b"y" * 100), log_time_ns=i)
    w.close()
    size = os.path.getsize(w.current_path)
    os.truncate(w.current_path, size - 200)       # cut inside the summary
    r = read_bag(w.current_path)
    assert len(r.messages) == 30 and not r.complete and r.error


def test_budget_deletes_oldest_files_never_the_current_one(tmp_path):
    old = tmp_path / "older_recording"
    old.mkdir()
    for k in range(3):                            # an earlier recording: 3 files, oldest first
        p = old / f"older_recording_{k}.mcap"
        p.write_bytes(b"\0" * 100_000)
        os.utime(p, (1000 + k, 1000 + k))
    rng = random.Random(1)
    w = writer(tmp_path, split_bytes=50_000, chunk_bytes=8_000, budget_bytes=150_000, compression="none")
    deleted_before = 0
    for i in range(150):
        w.write("/blob", cdr_bytes(rng.randbytes(1500)), log_time_ns=i)
        assert w.current_path.exists()
        assert w.current_path not in w.stats.deleted
        for p in w.stats.deleted[deleted_before:]:
            assert not p.exists()
        deleted_before = len(w.stats.deleted)
        files = list(tmp_path.rglob("*.mcap"))
        assert sum(f.stat().st_size for f in files) <= 150_000 + 50_000 + 8_000 + 4096   # budget + the open file
    w.close()
    assert w.stats.deleted[:3] == [old / f"older_recording_{k}.mcap" for k in range(3)]   # oldest first
    assert not old.exists()                       # its folder, left empty, went too
    assert w.stats.deleted[3] == tmp_path / "rec" / "rec_0.mcap"
    assert w.current_path.exists() and read_bag(w.current_path).complete


def test_close_is_idempotent_and_ends_writing(tmp_path):
    w = writer(tmp_path)
    w.write("/blob", cdr_bytes(b"a"), log_time_ns=1)
    w.close()
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.write("/blob", cdr_bytes(b"b"), log_time_ns=2)
    assert len(read_bag(w.current_path).messages) == 1


def test_topic_added_mid_file_is_in_this_file_and_the_next(tmp_path):
    clock = Clock()
    w = writer(tmp_path, clock, split_seconds=5.0)
    w.write("/blob", cdr_bytes(b"a"), log_time_ns=1)
    w.add_topic(TopicInfo("/late", "test_msgs/msg/Blob", RAW, offers_yaml([Offer()]), "RIHS01_" + "ab" * 32))
    w.write("/late", cdr_bytes(b"b"), log_time_ns=2)
    clock.t = 6.0
    w.write("/late", cdr_bytes(b"c"), log_time_ns=3)
    w.close()
    first, second = (read_bag(f) for f in recording_files(tmp_path / "rec"))
    assert [m.topic for m in first.messages] == ["/blob", "/late"] and [m.topic for m in second.messages] == ["/late"]
    assert set(second.channels) == {"/blob", "/late"}
    assert second.channels["/late"].metadata["topic_type_hash"] == "RIHS01_" + "ab" * 32


@pytest.mark.parametrize("bad", [dict(split_bytes=0), dict(flush_period_s=0), dict(compression="gzip"),
                                 dict(budget_bytes=100, split_bytes=100), dict(budget_bytes=-1)])
def test_bad_limits_are_refused(bad):
    with pytest.raises(ValueError):
        BagLimits(**bad)


def test_throttle_keeps_evenly_spaced_frames_at_the_rate():
    rng = random.Random(2)
    th = RateThrottle(5.0)
    kept = [t for t in (i / 15 + rng.uniform(-0.004, 0.004) for i in range(150)) if th.accept(t)]   # 10 s at 15 Hz
    assert len(kept) == 50 and th.dropped == 100
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    assert all(0.18 < g < 0.22 for g in gaps), gaps
    th = RateThrottle(5.0)                        # after a gap the schedule restarts: no burst
    assert th.accept(0.0) and th.accept(10.0) and not th.accept(10.05) and th.accept(10.2)
    keep_all = RateThrottle(0.0)
    assert all(keep_all.accept(t * 0.001) for t in range(100))
    with pytest.raises(ValueError):
        RateThrottle(-1.0)


def test_request_follows_every_offer():
    latched = Offer(durability="transient_local")
    assert request_for([latched, latched]) == ("reliable", "transient_local")
    assert request_for([latched, Offer()]) == ("reliable", "volatile")           # a volatile writer: no latching
    assert request_for([Offer(reliability="best_effort"), Offer()]) == ("best_effort", "volatile")
    assert request_for([]) == ("reliable", "volatile")


def test_offers_yaml_is_rosbag2s_list_of_profiles():
    doc = yaml.safe_load(offers_yaml([Offer(durability="transient_local", depth=1),
                                      Offer(reliability="best_effort", deadline_ns=1_500_000_000)]))
    inf = {"sec": INFINITE_NS // 10**9, "nsec": INFINITE_NS % 10**9}
    assert doc[0] == {"history": "keep_last", "depth": 1, "reliability": "reliable", "durability": "transient_local",
                      "deadline": inf, "lifespan": inf, "liveliness": "automatic", "liveliness_lease_duration": inf,
                      "avoid_ros_namespace_conventions": False}
    assert inf == {"sec": 9223372036, "nsec": 854775807}
    assert doc[1]["reliability"] == "best_effort" and doc[1]["deadline"] == {"sec": 1, "nsec": 500_000_000}


def test_rclpy_qos_becomes_the_offer_rosbag2_writes():
    """The node's conversion of a publisher's rclpy QoSProfile (as the graph reports it) into an Offer."""
    pytest.importorskip("rclpy")
    from rclpy.duration import Duration
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy,
                           qos_profile_sensor_data)

    from qwen_stack.recorder.qos import offer_of

    o = offer_of(qos_profile_sensor_data)
    assert (o.reliability, o.durability, o.history, o.depth) == ("best_effort", "volatile", "keep_last", 5)
    graph = QoSProfile(history=HistoryPolicy.UNKNOWN, depth=0, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL, liveliness=LivelinessPolicy.MANUAL_BY_TOPIC,
                       deadline=Duration(nanoseconds=INFINITE_NS), lifespan=Duration(seconds=2))
    o = offer_of(graph)
    assert o == Offer(reliability="reliable", durability="transient_local", history="unknown", depth=0,
                      deadline_ns=INFINITE_NS, lifespan_ns=2 * 10**9, liveliness="manual_by_topic",
                      liveliness_lease_duration_ns=0)


# ---- metadata.yaml: the folder opens in an independent rosbag2 reader (rosbags, Ternaris) ----------------

def _rosbags_read(folder):
    from rosbags.rosbag2 import Reader

    with Reader(folder) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        msgs = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
        return counts, msgs, reader.message_count


def test_a_split_recording_opens_as_a_rosbag2_folder(tmp_path):
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    w = writer(tmp_path, split_bytes=20_000, chunk_bytes=4_000, compression="zstd")
    w.add_topic(TopicInfo("/note", "std_msgs/msg/String", "string data\n", offers_yaml([Offer()]), "RIHS01_abc"))
    rng, sent = random.Random(3), []
    for i in range(120):
        if i % 3 == 0:
            data = store.serialize_cdr(store.types["std_msgs/msg/String"](data=f"note {i}"), "std_msgs/msg/String")
            topic = "/note"
        else:
            data, topic = cdr_bytes(rng.randbytes(500)), "/blob"
        w.write(topic, bytes(data), log_time_ns=1_000_000_000 + i)
        sent.append((topic, 1_000_000_000 + i, bytes(data)))
    w.close()
    meta = yaml.safe_load((tmp_path / "rec" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert len(meta["relative_file_paths"]) >= 3 and meta["relative_file_paths"] == [p.name for p in w.stats.files]
    assert meta["message_count"] == 120 and sum(f["message_count"] for f in meta["files"]) == 120
    assert meta["starting_time"]["nanoseconds_since_epoch"] == 1_000_000_000 and meta["duration"]["nanoseconds"] == 119
    counts, msgs, total = _rosbags_read(tmp_path / "rec")
    assert counts == {"/blob": 80, "/note": 40} and total == 120
    assert sorted(msgs) == sorted(sent)                         # every message, bytes and time, across the files
    notes = [store.deserialize_cdr(raw, "std_msgs/msg/String").data for topic, _, raw in sorted(msgs) if topic == "/note"]
    assert notes == [f"note {i}" for i in range(0, 120, 3)]


def test_metadata_matches_what_was_flushed_when_the_recorder_is_killed(tmp_path):
    clock = Clock()
    w = writer(tmp_path, clock=clock, flush_period_s=1.0)
    for i in range(50):
        clock.t = i * 0.1
        w.write("/blob", cdr_bytes(b"x" * 10), log_time_ns=i)
    # killed here: no close. metadata.yaml describes what the last flush wrote, and that is all in the file
    meta = yaml.safe_load((tmp_path / "rec" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    on_disk = read_bag(w.current_path).counts["/blob"]
    assert meta["message_count"] == on_disk and 40 <= on_disk < 50


def test_the_budget_keeps_every_metadata_true(tmp_path):
    old = tmp_path / "older_recording"
    w_old = BagWriter(old, "older_recording", BagLimits(split_bytes=30_000, chunk_bytes=4_000, compression="none"),
                      budget_root=tmp_path / "unused")
    w_old.add_topic(TopicInfo("/blob", "test_msgs/msg/Blob", RAW, offers_yaml([Offer()])))
    rng = random.Random(5)
    for i in range(80):
        w_old.write("/blob", cdr_bytes(rng.randbytes(1000)), log_time_ns=i)
    w_old.close()
    old_files = recording_files(old)
    assert len(old_files) >= 2
    for k, p in enumerate(old_files):
        os.utime(p, (1000 + k, 1000 + k))        # older than anything the new recording writes
    w = writer(tmp_path, split_bytes=50_000, chunk_bytes=8_000, compression="none", budget_bytes=100_000)
    for i in range(40):
        w.write("/blob", cdr_bytes(rng.randbytes(1500)), log_time_ns=10_000 + i)
    w.close()
    assert old_files[0] in w.stats.deleted and old_files[-1].exists()   # the old recording lost its oldest file
    for folder in (old, tmp_path / "rec"):      # both folders open, and name only files that exist
        meta = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert all((folder / n).exists() for n in meta["relative_file_paths"])
        counts, msgs, total = _rosbags_read(folder)
        assert total == len(msgs) == meta["message_count"] == sum(read_bag(folder / n).counts["/blob"]
                                                                  for n in meta["relative_file_paths"])
