"""recorder_node: records the stack's topics into MCAP (rosbag2 layout) with the pure writer in bag_writer.py.

Thin shell: topics are found on the graph (a configured topic is subscribed once a publisher offers it, with
the type and QoS the publishers offer, as `ros2 bag record` does), messages arrive serialized (raw=True: no
decode or encode), the camera goes through a RateThrottle, everything else is written as received. One
SingleThreadedExecutor runs every callback, so the writer has one caller. SIGINT and SIGTERM (node_main)
end the spin; the file is then closed with its summary. A `kill -9` loses at most the chunk in
progress, flushed every flush_period_s. Bad parameters exit with code 2 and a message naming the parameter.
"""
from __future__ import annotations

import importlib
import sys
import time
from typing import TYPE_CHECKING

from qwen_stack.node_main import run_node
from qwen_stack.node_parameters import settings_from_node
from qwen_stack.rosenv import apply_to_current_process

if TYPE_CHECKING:
    from qwen_stack.recorder.qos import Offer

NODE_NAME = "recorder"


def _offer_of(qos) -> "Offer":
    """rclpy QoSProfile (a publisher's offer from the graph) -> recorder.qos.Offer."""
    from qwen_stack.recorder.qos import Offer

    def name(policy) -> str:
        return policy.name.lower()

    def ns(duration) -> int:
        return int(duration.nanoseconds)

    return Offer(reliability=name(qos.reliability), durability=name(qos.durability), history=name(qos.history),
                 depth=int(qos.depth), deadline_ns=ns(qos.deadline), lifespan_ns=ns(qos.lifespan),
                 liveliness=name(qos.liveliness), liveliness_lease_duration_ns=ns(qos.liveliness_lease_duration),
                 avoid_ros_namespace_conventions=bool(qos.avoid_ros_namespace_conventions))


def build_node():
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    from qwen_stack.recorder.bag_writer import BagWriter, TopicInfo
    from qwen_stack.recorder.config import RecorderConfig
    from qwen_stack.recorder.qos import offers_yaml, request_for
    from qwen_stack.recorder.schema import DefinitionError, DefinitionSource
    from qwen_stack.recorder.throttle import RateThrottle

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
            offers = [_offer_of(p.qos_profile) for p in publishers]
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

    return RecorderNode


def main(argv: list[str] | None = None) -> int:
    apply_to_current_process()
    try:
        from qwen_stack.recorder.config import RecorderConfigError
        from qwen_stack.recorder.schema import DefinitionError

        node_cls = build_node()
    except ImportError as exc:
        print(f"recorder_node: cannot import ROS ({exc}); run in the stack's environment", file=sys.stderr)
        return 2
    return run_node("recorder_node", node_cls, argv=argv,
                    config_errors=(RecorderConfigError, DefinitionError, OSError), on_stop=lambda node: node.close())


if __name__ == "__main__":
    sys.exit(main())
