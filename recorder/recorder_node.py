"""The recorder's rclpy node (thin shell around bag_writer); started by recorder/node.py."""
from __future__ import annotations

import importlib
import sys
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from qwen_stack.recorder.bag_writer import BagWriter, TopicInfo
from qwen_stack.recorder.config import RecorderConfig
from qwen_stack.recorder.qos import offer_of, offers_yaml, request_for
from qwen_stack.recorder.schema import DefinitionError, DefinitionSource
from qwen_stack.recorder.throttle import RateThrottle

from qwen_stack.node_parameters import settings_from_node

NODE_NAME = "recorder"


class RecorderNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.cfg = cfg = settings_from_node(self, RecorderConfig)   # RecorderConfigError: main() exits 2
        name = cfg.recording_name or time.strftime("qwen_stack_%Y%m%d-%H%M%S")
        folder = cfg.output_path / name
        if folder.exists() and any(folder.glob("*.mcap")):
            from qwen_stack.recorder.config import RecorderConfigError
            raise RecorderConfigError(f"recorder parameter 'recording_name' = {name!r}: {folder} already holds "
                                      "a recording; pick another name")
        self.writer = BagWriter(folder, name, cfg.limits(), budget_root=cfg.output_path,
                                on_event=lambda text: self.get_logger().info(text))
        self.definitions = DefinitionSource()
        # resolved name -> throttle (None: every message)
        self.wanted: dict[str, RateThrottle | None] = {self.resolve_topic_name(t): None for t in cfg.topics}
        for topic, rate in ((cfg.camera_topic, cfg.camera_rate), (cfg.annotated_image_topic, cfg.annotated_image_rate)):
            if topic:
                self.wanted[self.resolve_topic_name(topic)] = RateThrottle(rate)
        self.subs: dict[str, object] = {}
        self.refused: set[str] = set()       # topics that cannot be recorded (logged once)
        self.write_errors = 0
        self.create_timer(cfg.discovery_period_s, self.discover)
        self.create_timer(min(0.25, cfg.flush_period_s / 4), self.tick)
        throttled = [f"{t} at {r:g} Hz" for t, r in ((cfg.camera_topic, cfg.camera_rate),
                                                     (cfg.annotated_image_topic, cfg.annotated_image_rate)) if t]
        self.get_logger().info(f"recording to {folder} ({len(cfg.topics)} topics"
                               + "".join(f", {t}" for t in throttled) + f"; flush every {cfg.flush_period_s:g} s)")
        self.discover()

    def discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic not in self.wanted or topic in self.subs or topic in self.refused:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:        # only subscribers so far: wait for an offer to match its QoS
                continue
            if len(types) > 1:
                self.get_logger().warn(f"{topic} has several types {types}: recording {types[0]}")
            try:
                self.subscribe(topic, types[0], publishers)
            except (DefinitionError, ImportError, AttributeError, ValueError) as exc:
                self.refused.add(topic)
                self.get_logger().error(f"cannot record {topic} ({types[0]}): {exc}")

    def subscribe(self, topic: str, type_name: str, publishers) -> None:
        pkg, ns, name = type_name.split("/")
        msg_class = getattr(importlib.import_module(f"{pkg}.{ns}"), name)
        offers = [offer_of(p.qos_profile) for p in publishers]
        type_hash = str(getattr(publishers[0], "topic_type_hash", "") or "")
        self.writer.add_topic(TopicInfo(topic, type_name, self.definitions.full_text(type_name),
                                        offers_yaml(offers), type_hash if type_hash.startswith("RIHS01_") else ""))
        reliability, durability = request_for(offers)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg.queue_depth,
                         reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if durability == "transient_local"
                         else DurabilityPolicy.VOLATILE)
        throttle = self.wanted[topic]
        self.subs[topic] = self.create_subscription(
            msg_class, topic, lambda data, info, t=topic, th=throttle: self.on_message(t, th, data, info),
            qos, raw=True)
        self.get_logger().info(f"recording {topic} [{type_name}] ({reliability}, {durability})")

    def tick(self) -> None:
        try:
            self.writer.tick()
        except OSError as exc:      # as in on_message: the node keeps running and says why
            self.write_errors += 1
            self.get_logger().error(f"flush failed ({self.write_errors} so far): {exc}", throttle_duration_sec=5.0)

    def on_message(self, topic: str, throttle, data: bytes, info) -> None:
        log_time = time.time_ns()
        if throttle is not None and not throttle.accept(time.monotonic()):
            return
        try:
            self.writer.write(topic, data, log_time, info.get("source_timestamp") or log_time)
        except OSError as exc:      # disk full, folder removed: keep running, say so
            self.write_errors += 1
            self.get_logger().error(f"write failed ({self.write_errors} so far): {exc}",
                                    throttle_duration_sec=5.0)

    def close(self) -> None:
        # after Ctrl-C the context is shut down and the logger cannot reach /rosout: plain stderr
        def say(text: str) -> None:
            print(f"[recorder] {text}", file=sys.stderr, flush=True)

        self.writer.on_event = say
        self.writer.close()
        counts = ", ".join(f"{t} {n}" for t, n in sorted(self.writer.stats.messages.items()))
        say(f"messages: {counts or 'none'}")
