"""QoS of recorded topics: what the recorder asks for, and the publishers' offers as rosbag2 stores them.

Plain values (no rclpy) so the rules are testable: the node converts rclpy's QoSProfile into `Offer`.
"""
from __future__ import annotations

from dataclasses import dataclass

INFINITE_NS = 2**63 - 1   # rmw's "infinite" duration (RMW_DURATION_INFINITE), written as sec 9223372036 nsec 854775807


@dataclass(frozen=True)
class Offer:
    """One publisher's QoS offer. Policies by rmw's names ('reliable', 'transient_local', ...)."""
    reliability: str = "reliable"
    durability: str = "volatile"
    history: str = "keep_last"
    depth: int = 10
    deadline_ns: int = INFINITE_NS
    lifespan_ns: int = INFINITE_NS
    liveliness: str = "automatic"
    liveliness_lease_duration_ns: int = INFINITE_NS
    avoid_ros_namespace_conventions: bool = False


def request_for(offers: list[Offer]) -> tuple[str, str]:
    """(reliability, durability) a subscription needs to receive from every offer (rosbag2's rule).

    Reliable only if every publisher is reliable (a reliable reader cannot match a best-effort writer);
    transient local only if every publisher is (then latched messages such as /tf_static arrive too).
    """
    if not offers:
        return "reliable", "volatile"
    reliability = "reliable" if all(o.reliability == "reliable" for o in offers) else "best_effort"
    durability = "transient_local" if all(o.durability == "transient_local" for o in offers) else "volatile"
    return reliability, durability


def _duration(ns: int) -> str:
    sec, nsec = divmod(max(0, int(ns)), 1_000_000_000)
    return f"\n    sec: {sec}\n    nsec: {nsec}"


def offers_yaml(offers: list[Offer]) -> str:
    """The 'offered_qos_profiles' channel metadata: a YAML list, policy names as rosbag2 writes them
    (bag format version 9+), so `ros2 bag play` re-publishes with the recorded QoS (latched /tf_static)."""
    if not offers:
        return "[]"
    items = []
    for o in offers:
        items.append(
            f"- history: {o.history}\n  depth: {int(o.depth)}\n  reliability: {o.reliability}\n"
            f"  durability: {o.durability}\n  deadline:{_duration(o.deadline_ns)}\n"
            f"  lifespan:{_duration(o.lifespan_ns)}\n  liveliness: {o.liveliness}\n"
            f"  liveliness_lease_duration:{_duration(o.liveliness_lease_duration_ns)}\n"
            f"  avoid_ros_namespace_conventions: {'true' if o.avoid_ros_namespace_conventions else 'false'}")
    return "\n".join(items)


def offer_of(qos) -> Offer:
    """rclpy QoSProfile (a publisher's offer from the graph) -> recorder.qos.Offer."""
    def name(policy) -> str:
        return policy.name.lower()

    def ns(duration) -> int:
        return int(duration.nanoseconds)

    return Offer(reliability=name(qos.reliability), durability=name(qos.durability), history=name(qos.history),
                 depth=int(qos.depth), deadline_ns=ns(qos.deadline), lifespan_ns=ns(qos.lifespan),
                 liveliness=name(qos.liveliness), liveliness_lease_duration_ns=ns(qos.liveliness_lease_duration),
                 avoid_ros_namespace_conventions=bool(qos.avoid_ros_namespace_conventions))
