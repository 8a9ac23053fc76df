"""What the supervisor tells the world: SafetyVerdict messages, the audit log, and the /diagnostics summary
(including a second publisher on the base command topic). Message classes are passed in (lazy ROS import)."""
from __future__ import annotations

import json
from collections import Counter

from qwen_stack.safety.verdict import Verdict, VerdictLevel


ZONES_FORMAT = 1   # bumped when the layout of zones_json changes


def zones_json(cfg) -> str:
    """The zones the supervisor enforces, from its validated config, as the JSON it latches on safety/zones:
    robot_radius (m), the laser mount in the base frame, stop, slowdown and creep polygons (base frame), geofence and
    keep-out polygons (odom frame). Polygons are [[x, y], ...]. Viewers draw these; they never re-read the config."""
    def poly(p) -> list:
        return [[float(x), float(y)] for x, y in p]

    return json.dumps({
        "format": ZONES_FORMAT,
        "robot_radius": float(cfg.robot_radius),
        "laser": {"x": float(cfg.laser_x), "y": float(cfg.laser_y), "yaw": float(cfg.laser_yaw)},
        "stop_zone": poly(cfg.stop_poly),
        "slowdown_zone": poly(cfg.slowdown_poly),
        "creep_zone": poly(cfg.creep_poly) if cfg.creep_poly is not None else [],   # [] = creep off
        "geofence": poly(cfg.geofence_poly),
        "keep_out": {name: poly(p) for name, p in sorted(cfg.keep_out_polys.items())},
    })


class SupervisorReporter:
    def __init__(self, node, audit, SafetyVerdict, Twist, DiagnosticArray, DiagnosticStatus, KeyValue, now):
        self.node, self.audit = node, audit
        self.SafetyVerdict, self.Twist = SafetyVerdict, Twist
        self.DiagnosticArray, self.DiagnosticStatus, self.KeyValue = DiagnosticArray, DiagnosticStatus, KeyValue
        self.now = now
        self.level_counts: Counter = Counter()
        self.last_step = None
        self.second_publishers: list[str] = []

    def _verdict_msg(self, verdict: Verdict, source: str, requested=(0.0, 0.0), sent=(0.0, 0.0), latched=False):
        m = self.SafetyVerdict()
        m.stamp = self.node.get_clock().now().to_msg()
        m.level, m.level_name, m.source = int(verdict.level), verdict.level.name, source
        m.reasons = list(verdict.reasons)
        m.requested.linear.x, m.requested.angular.z = (float(x) for x in requested)
        m.sent.linear.x, m.sent.angular.z = (float(x) for x in sent)
        m.estop_latched = bool(latched)
        return m

    def step(self, result) -> None:
        """One control step: verdict topic + audit (requested command, verdict, output)."""
        req = result.requested
        requested = (req.linear_x, req.angular_z) if req is not None else (0.0, 0.0)
        sent = (result.output.linear_x, result.output.angular_z)
        self.level_counts[result.verdict.level.name] += 1
        self.last_step = result
        # audit first: whatever anyone has seen published is already on disk
        self.audit.write("step", result.source, result.stamp, level=result.verdict.level.name,
                         reasons=list(result.verdict.reasons), requested=list(requested), sent=list(sent),
                         estop_latched=result.estop_latched)
        self.node.verdict_pub.publish(self._verdict_msg(result.verdict, result.source, requested, sent,
                                                        result.estop_latched))

    def stop(self, reason: str, latched: bool = False) -> None:
        """A zero sent outside a control step: its STOP verdict and audit record (send before the zero)."""
        verdict = Verdict(VerdictLevel.STOP, (reason,))
        self.level_counts[verdict.level.name] += 1
        self.audit.write("step", "supervisor", self.now(self.node), level=verdict.level.name, reasons=[reason],
                         requested=[0.0, 0.0], sent=[0.0, 0.0], estop_latched=bool(latched))
        self.node.verdict_pub.publish(self._verdict_msg(verdict, "supervisor", latched=latched))

    def action(self, service: str, source: str, arguments_json: str, verdict: Verdict, accepted: bool) -> None:
        self.level_counts[verdict.level.name] += 1
        self.node.verdict_pub.publish(self._verdict_msg(verdict, f"action:{service}",
                                                        latched=verdict.level == VerdictLevel.ESTOP))
        self.audit.write("action", source, self.now(self.node), service=service, arguments_json=arguments_json,
                         accepted=accepted, level=verdict.level.name, reasons=list(verdict.reasons))
        if not accepted:
            self.node.get_logger().warn(f"refused {service} from {source}: {'; '.join(verdict.reasons)}")

    def diagnostics(self, core, publisher_count: int, publisher_infos) -> None:
        me = (self.node.get_name(), self.node.get_namespace())
        others = [f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in publisher_infos
                  if (i.node_name, i.node_namespace) != me]
        if publisher_count > 1 and not others:
            others = [f"{publisher_count - 1} unnamed publisher(s)"]
        if others != self.second_publishers:
            if others:
                self.node.get_logger().error(f"second publisher on cmd_vel: {others} (the supervisor must be the only one)")
            self.second_publishers = others
        if others:
            reason = f"second publisher on cmd_vel: {', '.join(others)}"
            self.node.verdict_pub.publish(self._verdict_msg(Verdict(VerdictLevel.REJECT, (reason,)), "cmd_vel",
                                                            latched=core.estop.latched))
            self.audit.write("second_publisher", "cmd_vel", self.now(self.node), publishers=others)
        st = self.DiagnosticStatus()
        st.name = f"{self.node.get_fully_qualified_name()}: safety supervisor"
        st.hardware_id = "qwen_stack"
        last = self.last_step
        if core.estop.latched:
            st.level, st.message = self.DiagnosticStatus.ERROR, "e-stop latched"
        elif others:
            st.level, st.message = self.DiagnosticStatus.ERROR, f"second publisher on cmd_vel: {', '.join(others)}"
        elif last is not None and last.verdict.level >= VerdictLevel.STOP:
            st.level, st.message = self.DiagnosticStatus.WARN, f"{last.verdict.level.name}: {last.verdict.reasons[0]}"
        else:
            st.level, st.message = self.DiagnosticStatus.OK, last.verdict.level.name if last else "no step yet"
        kv = self.KeyValue
        st.values = [kv(key="estop_latched", value=str(core.estop.latched)),
                     kv(key="active_source", value=last.source if last else "none"),
                     kv(key="last_reasons", value="; ".join(last.verdict.reasons) if last else ""),
                     kv(key="cmd_vel_publishers", value=str(publisher_count)),
                     kv(key="second_publishers", value=", ".join(others))]
        st.values += [kv(key=f"verdicts_{name}", value=str(n)) for name, n in sorted(self.level_counts.items())]
        arr = self.DiagnosticArray()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        arr.status = [st]
        self.node.diag_pub.publish(arr)
