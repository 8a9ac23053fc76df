"""The safety supervisor's pure core: inputs in, (verdict, command actually to send) out. No rclpy.

One `step(now)` per control tick (and per received command, for low latency):
  e-stop latch -> input mux (teleop > autonomy, teleop lock, timeouts) -> re-arm after reset ->
  non-finite check -> stale sensors -> velocity limits -> laser zones (stop, slowdown, approach,
  stopping-distance cap) -> odometry-lag hold -> acceleration/jerk shaping against the last command
  sent -> geofence/keep-out on the predicted path -> output.
Any STOP or worse sends exactly zero (a stop is never delayed by acceleration shaping).

Time: every input and step carries a time on the caller's clock (the node's ROS clock, which may be sim
time). A time earlier than one already seen is a backward jump (sim reset, system clock stepped back):
everything received before it is discarded, because on the new timeline `now - stamp` would make it look
fresh; a held teleop lock stays held but counts as stale until refreshed; the clock then restarts from the
new time, so fresh inputs move the robot at once. Ages are never negative: an input stamped after `now`
is not fresh. A forward jump makes every input stale (STOP) until new ones arrive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qwen_stack.safety.config import SafetyConfig
from qwen_stack.safety.estop import EStopLatch
from qwen_stack.safety.geometry import (
    PolygonSet,
    ScanProjector,
    first_collision_time,
    scan_fault,
    points_in_polygon,
    predict_poses,
)
from qwen_stack.safety.inputs import (
    ZERO,
    CommandSource,
    EStopEvent,
    LaserScanData,
    OdometryData,
    OutputCommand,
    TeleopLock,
    VelocityCommand,
)
from qwen_stack.safety.verdict import Verdict, VerdictCollector, VerdictLevel, num

L = VerdictLevel
# fractions of the shaped command tried by the geofence/keep-out check (1 = as shaped, 0 = hardest allowed braking)
_GEOFENCE_FRACTIONS = np.array([1.0, 0.75, 0.5, 0.25, 0.0])  # [S]


@dataclass(frozen=True)
class StepResult:
    verdict: Verdict
    output: OutputCommand              # the command to send (and that the core now treats as sent)
    source: str                        # the input judged: "teleop", "autonomy" or "none"
    requested: VelocityCommand | None  # that input as received (None when there was none)
    estop_latched: bool
    stamp: float                       # the `now` the step was judged at


@dataclass
class _AxisState:
    value: float = 0.0
    accel: float = 0.0


@dataclass
class SafetyCore:
    cfg: SafetyConfig
    start_time: float = 0.0
    estop: EStopLatch = field(default_factory=EStopLatch)

    def __post_init__(self) -> None:
        self.commands: dict[str, VelocityCommand] = {}
        self._command_seq: dict[str, int] = {}        # source -> arrival number of its latest command
        self._seq = 0
        self._reset_seq = -1                           # commands that arrived before the last reset are void
        self.lock: TeleopLock | None = None
        self.lock_needs_refresh = False                # a held lock carried over a backward clock jump
        self.scan_stamp: float | None = None           # reception time of the last usable scan
        self.scan_fault: str | None = None             # why the scans since then were unusable (None: none were)
        self.scan_points = np.zeros((0, 2))            # [P, 2] obstacle points, base frame
        self.held_load = False                         # gripper/held names an object: the load mask applies
        self.creep_zone_ahead = self.creep_zone_behind = 0   # creep-zone points with x >= 0 / x <= 0 (base frame)
        self.stop_zone_points = 0                      # scan points inside stop_zone / slowdown_zone,
        self.slowdown_zone_points = 0                  # counted once per scan (they do not depend on the command)
        self.odom: OdometryData | None = None
        self.last_heartbeat: float | None = None
        self.armed: set[str] = {s.value for s in CommandSource}
        self.last_sent_time: float | None = None
        self.last_step_time: float | None = None
        self.clock_max: float | None = None            # latest time seen (inputs and steps), on the caller's clock
        self.clock_jumps = 0                           # backward jumps seen
        self._jump_reason: str | None = None           # reported by the next step
        self._lin = _AxisState()
        self._ang = _AxisState()
        c = self.cfg
        self._projector = ScanProjector(c.laser_x, c.laser_y, c.laser_yaw)
        self._horizon_times = np.linspace(0.0, c.prediction_horizon, c.prediction_steps + 1)      # [K]
        self._approach_times = np.linspace(0.0, c.time_before_collision, c.prediction_steps + 1)[1:]
        # bounds of the predicted path, row 0 the geofence (inside allowed), then the keep-out zones (outside allowed)
        self._bound_names = ["geofence"] + [f"keep-out {n}" for n in c.keep_out_polys]
        self._bounds = PolygonSet([c.geofence_poly] + list(c.keep_out_polys.values()))
        self._inside_sign = np.array([1.0] + [-1.0] * len(c.keep_out_polys))          # [Z]
        self._timeouts = {CommandSource.TELEOP.value: c.teleop_timeout, CommandSource.AUTONOMY.value: c.autonomy_timeout}
        # a laser whose range_max ends short of this cannot tell "free" (+inf) inside the stop zone
        self._stop_zone_reach = float(np.max(np.hypot(c.stop_poly[:, 0] - c.laser_x, c.stop_poly[:, 1] - c.laser_y)))

    # ------------------------------------------------------------------ clock
    def _observe(self, t: float) -> None:
        """Every input and step passes its time here; an earlier time than one seen is a backward jump."""
        if self.clock_max is not None and t < self.clock_max:
            self._discard_before_jump(self.clock_max, t)
            self.clock_max = t
        elif self.clock_max is None or t > self.clock_max:
            self.clock_max = t

    def _discard_before_jump(self, old: float, new: float) -> None:
        self.clock_jumps += 1
        self._jump_reason = (f"clock went backwards ({num(old)} -> {num(new)} s): inputs received before the "
                             "jump discarded")
        self.commands.clear()
        self._command_seq.clear()
        if self.lock is not None and self.lock.held:
            self.lock_needs_refresh = True             # fail safe: autonomy must not take over from the operator
        else:
            self.lock = None
        self.scan_stamp, self.scan_fault = None, None
        self.scan_points = np.zeros((0, 2))
        self.stop_zone_points = self.slowdown_zone_points = 0
        self.creep_zone_ahead = self.creep_zone_behind = 0
        self.odom = None
        self.last_heartbeat, self.start_time = None, new   # the operator gets one heartbeat_timeout from the jump
        self.last_sent_time = self.last_step_time = None   # shaping restarts (dt would be <= 0 on the new timeline)

    # ------------------------------------------------------------------ inputs
    def on_command(self, cmd: VelocityCommand) -> None:
        self._observe(cmd.stamp)
        self._seq += 1
        self.commands[cmd.source] = cmd
        self._command_seq[cmd.source] = self._seq

    def on_lock(self, lock: TeleopLock) -> None:
        self._observe(lock.stamp)
        self.lock, self.lock_needs_refresh = lock, False

    def on_scan(self, scan: LaserScanData) -> None:
        """Project once per scan (not per command): points [P, 2] in the base frame. A scan without usable
        data (scan_fault) changes nothing but the fault: the last usable scan ages and goes stale (STOP)."""
        self._observe(scan.stamp)
        fault = scan_fault(scan.angle_min, scan.angle_increment, scan.range_min, scan.range_max, scan.ranges)
        if fault is None and scan.range_max < self._stop_zone_reach:
            fault = (f"range_max {num(scan.range_max)} m short of the stop zone's far edge "
                     f"({num(self._stop_zone_reach)} m from the laser)")
        if fault is not None:
            self.scan_fault = fault
            return
        self.scan_fault = None
        pts = self._projector.points(scan.angle_min, scan.angle_increment, scan.range_min,
                                     scan.range_max, scan.ranges)
        c = self.cfg
        if self.held_load and c.load_mask_radius > 0 and len(pts):
            # the carried object is part of the robot: its returns are not obstacles (a small circle at the
            # pick site, only while the gripper says it holds something)
            pts = pts[np.hypot(pts[:, 0] - c.robot.pick_x, pts[:, 1]) > c.load_mask_radius]
        self.scan_points = pts
        self.scan_stamp = scan.stamp
        self.creep_zone_ahead = self.creep_zone_behind = 0
        if len(pts):
            self.stop_zone_points = int(np.count_nonzero(points_in_polygon(pts, c.stop_poly)))
            self.slowdown_zone_points = int(np.count_nonzero(points_in_polygon(pts, c.slowdown_poly)))
            if c.creep_poly is not None and self.stop_zone_points:
                inner = pts[points_in_polygon(pts, c.creep_poly)]
                self.creep_zone_ahead = int(np.count_nonzero(inner[:, 0] >= 0.0))
                self.creep_zone_behind = int(np.count_nonzero(inner[:, 0] <= 0.0))
        else:
            self.stop_zone_points = self.slowdown_zone_points = 0

    def on_gripper(self, held: str) -> None:
        """What the gripper holds ("" = nothing; a latched state, not a stream): the load mask applies from the
        next scan on. Never heard of: no mask (every return counts)."""
        self.held_load = bool(held)

    def on_odom(self, odom: OdometryData) -> None:
        self._observe(odom.stamp)
        self.odom = odom

    def on_heartbeat(self, stamp: float) -> None:
        self._observe(stamp)
        self.last_heartbeat = stamp

    def latch(self, event: EStopEvent) -> bool:
        self._observe(event.stamp)
        return self.estop.latch(event)

    def heartbeat_silence(self, now: float) -> str | None:
        if not self.cfg.heartbeat_enabled:
            return None
        since = self.last_heartbeat if self.last_heartbeat is not None else self.start_time
        if now - since > self.cfg.heartbeat_timeout:
            what = "never received" if self.last_heartbeat is None else f"silent for {num(now - since, 2)} s"
            return f"operator heartbeat {what} (timeout {self.cfg.heartbeat_timeout} s)"
        return None

    def reset(self, reason: str, operator: str, now: float) -> tuple[bool, str]:
        self._observe(now)
        ok, msg = self.estop.reset(reason, operator, now, blocked_by=self.heartbeat_silence(now))
        if ok:
            self.armed.clear()       # every source must send zero before it moves again
            self._reset_seq = self._seq
        return ok, msg

    # ------------------------------------------------------------------ step
    def step(self, now: float) -> StepResult:
        col = VerdictCollector()
        cfg = self.cfg
        self._observe(now)
        if self._jump_reason is not None:
            col.add(L.STOP, self._jump_reason)
            self._jump_reason = None
        self.last_step_time = now

        silence = self.heartbeat_silence(now)
        if silence and not self.estop.latched:
            self.estop.latch(EStopEvent("heartbeat", silence, now))
        if self.estop.latched:
            cause = self.estop.cause
            col.add(L.ESTOP, f"e-stop latched by {cause.origin}: {cause.reason}" if cause else "e-stop latched")
            return self._finish(col, ZERO, "none", None, now)

        source, cmd = self._select(col, now)
        if cmd is None:
            return self._finish(col, ZERO, source, None, now)

        if source not in self.armed:
            if abs(cmd.linear_x) <= cfg.rearm_max_speed and abs(cmd.angular_z) <= cfg.rearm_max_speed:
                self.armed.add(source)
            else:
                col.add(L.REJECT, f"{source} not re-armed after e-stop reset: send a zero command first")
                return self._finish(col, ZERO, source, cmd, now)

        comps = cmd.components()
        if not all(math.isfinite(c) for c in comps):
            names = ("linear_x", "linear_y", "linear_z", "angular_x", "angular_y", "angular_z")
            bad = ", ".join(f"{n}={c}" for n, c in zip(names, comps) if not math.isfinite(c))
            col.add(L.STOP, f"non-finite input: {bad}")
            return self._finish(col, ZERO, source, cmd, now)
        if any(comps[i] != 0.0 for i in (1, 2, 3, 4)):
            col.add(L.LIMIT, "non-planar components ignored (differential-drive base)")

        if not self._sensors_valid(col, now):
            return self._finish(col, ZERO, source, cmd, now)

        v, w = self._clamp_velocity(col, cmd.linear_x, cmd.angular_z)
        if cfg.require_scan:
            v, w = self._obstacle_zones(col, v, w)
            if col.level >= L.STOP:
                return self._finish(col, ZERO, source, cmd, now)
        v = self._odom_lag_hold(col, v)
        v, w, dt = self._shape(col, v, w, now)
        v, w = self._keep_in_bounds(col, v, w, dt)
        if col.level >= L.STOP:
            return self._finish(col, ZERO, source, cmd, now)
        return self._finish(col, OutputCommand(v, w), source, cmd, now)

    # ------------------------------------------------------------------ stages
    def _fresh(self, source: str, now: float) -> VelocityCommand | None:
        cmd = self.commands.get(source)
        if cmd is None or self._command_seq[source] <= self._reset_seq:
            return None
        age = now - cmd.stamp
        return cmd if 0.0 <= age <= self._timeouts[source] else None

    def _select(self, col: VerdictCollector, now: float) -> tuple[str, VelocityCommand | None]:
        teleop = self._fresh(CommandSource.TELEOP.value, now)
        autonomy = self._fresh(CommandSource.AUTONOMY.value, now)
        lock_held = self.lock is not None and self.lock.held
        if lock_held and self.lock_needs_refresh:
            col.add(L.STOP, "invalid source: teleop lock held before the clock went backwards, not refreshed since")
            return CommandSource.TELEOP.value, None
        lock_age = now - self.lock.stamp if lock_held else 0.0
        if lock_held and not 0.0 <= lock_age <= self.cfg.teleop_lock_timeout:
            col.add(L.STOP, f"invalid source: teleop lock held but not refreshed for {num(lock_age, 2)} s "
                            f"(timeout {self.cfg.teleop_lock_timeout} s)")
            return CommandSource.TELEOP.value, None
        if teleop is not None:
            return CommandSource.TELEOP.value, teleop
        if lock_held:
            if autonomy is not None:
                col.add(L.REJECT, "autonomy blocked: teleop lock held")
                return CommandSource.AUTONOMY.value, None
            col.add(L.STOP, "command watchdog: teleop lock held and no fresh teleop command")
            return CommandSource.TELEOP.value, None
        if autonomy is not None:
            return CommandSource.AUTONOMY.value, autonomy
        col.add(L.STOP, "command watchdog: no fresh input (controlled stop to zero)")
        return "none", None

    def _sensors_valid(self, col: VerdictCollector, now: float) -> bool:
        ok = True
        since = " since the last clock jump" if self.clock_jumps else ""
        if self.odom is None:
            col.add(L.STOP, f"invalid source: no odometry received{since}")
            ok = False
        elif not 0.0 <= now - self.odom.stamp <= self.cfg.odom_timeout:
            col.add(L.STOP, f"invalid source: odometry stale ({num(now - self.odom.stamp, 2)} s, "
                            f"timeout {self.cfg.odom_timeout} s)")
            ok = False
        elif not all(math.isfinite(x) for x in (self.odom.x, self.odom.y, self.odom.theta,
                                                self.odom.linear_x, self.odom.angular_z)):
            col.add(L.STOP, "invalid source: non-finite odometry")
            ok = False
        if self.cfg.require_scan:
            fault = f"; scans since unusable: {self.scan_fault}" if self.scan_fault else ""
            if self.scan_stamp is None:
                col.add(L.STOP, f"invalid source: no usable laser scan received{since}{fault}")
                ok = False
            elif not 0.0 <= now - self.scan_stamp <= self.cfg.scan_timeout:
                col.add(L.STOP, f"invalid source: laser scan stale ({num(now - self.scan_stamp, 2)} s, "
                                f"timeout {self.cfg.scan_timeout} s){fault}")
                ok = False
        return ok

    def _clamp_velocity(self, col: VerdictCollector, v: float, w: float) -> tuple[float, float]:
        c = self.cfg
        if v > c.max_linear_vel:
            col.add(L.LIMIT, f"linear velocity above max_linear_vel ({num(v)} > {c.max_linear_vel})")
            v = c.max_linear_vel
        elif v < -c.max_reverse_vel:
            col.add(L.LIMIT, f"reverse velocity above max_reverse_vel ({num(-v)} > {c.max_reverse_vel})")
            v = -c.max_reverse_vel
        if abs(w) > c.max_angular_vel:
            col.add(L.LIMIT, f"angular velocity above max_angular_vel ({num(abs(w))} > {c.max_angular_vel})")
            w = math.copysign(c.max_angular_vel, w)
        return v, w

    def _obstacle_zones(self, col: VerdictCollector, v: float, w: float) -> tuple[float, float]:
        c = self.cfg
        pts = self.scan_points                                              # [P, 2]
        if len(pts):
            n_stop = self.stop_zone_points
            creeping = False
            if n_stop >= c.min_points:
                if c.creep_poly is None:
                    col.add(L.STOP, f"stop zone: {n_stop} scan points inside")
                    return 0.0, 0.0
                # field switching: at creep speed the protective field is creep_zone; inside it, only moving
                # away (reversing from points ahead, driving forward from points behind) or turning on the spot
                # (the circular footprint sweeps nothing new) is let through
                ahead, behind = self.creep_zone_ahead, self.creep_zone_behind
                toward = ahead if v > 0 else behind if v < 0 else 0
                if toward >= c.min_points or (v == 0.0 and w == 0.0 and ahead + behind >= c.min_points):
                    col.add(L.STOP, f"creep zone: {ahead + behind} scan points inside "
                                    f"(stop zone: {n_stop})")
                    return 0.0, 0.0
                creeping = True
                if abs(v) > c.creep_speed or abs(w) > c.creep_angular_vel:
                    col.add(L.SLOWDOWN, f"stop zone: {n_stop} scan points inside, creep zone "
                                        f"{'clear' if ahead + behind < c.min_points else 'behind the motion'}: "
                                        f"creep (|v| <= {num(c.creep_speed)} m/s, |w| <= "
                                        f"{num(c.creep_angular_vel)} rad/s)")
                    v = max(-c.creep_speed, min(c.creep_speed, v))
                    w = max(-c.creep_angular_vel, min(c.creep_angular_vel, w))
            n_slow = self.slowdown_zone_points
            if n_slow >= c.min_points and (v != 0.0 or w != 0.0) and not creeping:
                col.add(L.SLOWDOWN, f"slowdown zone: {n_slow} scan points inside (ratio {c.slowdown_ratio})")
                v, w = v * c.slowdown_ratio, w * c.slowdown_ratio
            if v != 0.0 or w != 0.0:
                t_hit = first_collision_time(pts, v, w, self._approach_times, c.robot_radius)
                if t_hit < c.time_before_collision:
                    scale = t_hit / c.time_before_collision
                    col.add(L.SLOWDOWN, f"approach: collision in {num(t_hit, 2)} s < time_before_collision "
                                        f"{c.time_before_collision} s (scaled x{num(scale, 2)})")
                    v, w = v * scale, w * scale
        cap = c.stop_cap_forward if v >= 0 else c.stop_cap_reverse
        if abs(v) > cap:
            col.add(L.LIMIT, f"stopping-distance cap: |v| {num(abs(v))} > {num(cap)} m/s keeps the stop inside "
                             "stop_zone")
            v = math.copysign(cap, v)
        return v, w

    def _odom_lag_hold(self, col: VerdictCollector, v: float) -> float:
        """Do not speed up further in the direction already sent while odometry lags it. Lag is measured
        along that direction (odometry moving the other way is lag too); a request to slow down or to
        reverse is never held (the shaping brakes through zero first)."""
        prev = self._lin.value
        if prev == 0.0 or self.odom is None or v * prev <= 0.0 or abs(v) <= abs(prev):
            return v
        lag = (prev - self.odom.linear_x) * math.copysign(1.0, prev)
        if lag > self.cfg.odom_lag_tolerance:
            col.add(L.LIMIT, f"odometry lags command ({num(self.odom.linear_x)} vs sent {num(prev)} m/s): "
                             "not speeding up")
            return prev
        return v

    def _dt(self, now: float) -> float:
        if self.last_sent_time is None:
            return self.cfg.control_period
        return min(max(now - self.last_sent_time, 0.0), self.cfg.control_period)

    @staticmethod
    def _shape_axis(target: float, st: _AxisState, accel: float, decel: float, jerk: float, dt: float) -> float:
        prev = st.value
        if prev * target < 0:                     # sign change: brake to zero first
            new = math.copysign(max(abs(prev) - decel * dt, 0.0), prev)
        elif abs(target) >= abs(prev):
            step = min(abs(target) - abs(prev), accel * dt)
            new = math.copysign(abs(prev) + step, target if target != 0 else prev)
        else:
            new = math.copysign(max(abs(prev) - decel * dt, abs(target)), prev)
        if jerk > 0 and dt > 0:                   # soft: only delays, never overshoots or reverses
            a = (new - prev) / dt
            a = min(max(a, st.accel - jerk * dt), st.accel + jerk * dt)
            lo, hi = min(prev, new), max(prev, new)
            new = min(max(prev + a * dt, lo), hi)
        return new

    def _shape(self, col: VerdictCollector, v: float, w: float, now: float) -> tuple[float, float, float]:
        c, dt = self.cfg, self._dt(now)
        v_new = self._shape_axis(v, self._lin, c.max_linear_accel, c.max_linear_decel, c.max_linear_jerk, dt)
        w_new = self._shape_axis(w, self._ang, c.max_angular_accel, c.max_angular_decel, c.max_angular_jerk, dt)
        if abs(v_new - v) > 1e-12:
            col.add(L.LIMIT, f"linear acceleration limit ({num(v)} -> {num(v_new)} m/s)")
        if abs(w_new - w) > 1e-12:
            col.add(L.LIMIT, f"angular acceleration limit ({num(w)} -> {num(w_new)} rad/s)")
        return v_new, w_new, dt

    def _clearance(self, xy: np.ndarray) -> np.ndarray:
        """Signed clearance of points [S, K, 2] to every bound (positive = allowed side) -> [Z, S, K]."""
        s, k = xy.shape[:2]
        inside, dist = self._bounds.contains_and_distance(xy.reshape(-1, 2))   # [S*K, Z]
        signed = np.where(inside, dist, -dist) * self._inside_sign              # [S*K, Z]
        return signed.T.reshape(-1, s, k)

    def _keep_in_bounds(self, col: VerdictCollector, v: float, w: float, dt: float) -> tuple[float, float]:
        """Largest fraction between the shaped command and the hardest braking allowed whose predicted path
        keeps every clearance >= robot_radius, or at least never worse than the current clearance
        (so a robot that is already too close may move away)."""
        c, o = self.cfg, self.odom
        brake_v = math.copysign(max(abs(self._lin.value) - c.max_linear_decel * dt, 0.0), self._lin.value)
        brake_w = math.copysign(max(abs(self._ang.value) - c.max_angular_decel * dt, 0.0), self._ang.value)
        cand_v = brake_v + _GEOFENCE_FRACTIONS * (v - brake_v)             # [S]
        cand_w = brake_w + _GEOFENCE_FRACTIONS * (w - brake_w)
        poses = predict_poses(o.x, o.y, o.theta, cand_v, cand_w, self._horizon_times)  # [S, K, 3]
        clear = self._clearance(poses[..., :2])                              # [Z, S, K]
        names = self._bound_names
        now_clear = clear[:, :, :1]                                          # [Z, S, 1] (k=0 is the current pose)
        ok = np.all((clear >= c.robot_radius) | (clear >= now_clear - 1e-9), axis=(0, 2))  # [S]
        if ok[0]:
            return v, w
        good = np.flatnonzero(ok)
        worst = int(np.argmin(np.min(clear[:, 0, :], axis=1)))
        if len(good) == 0 or (cand_v[good[0]] == 0.0 and cand_w[good[0]] == 0.0):
            col.add(L.STOP, f"{names[worst]}: predicted path within robot_radius over {c.prediction_horizon} s")
            return 0.0, 0.0
        f = float(_GEOFENCE_FRACTIONS[good[0]])
        col.add(L.SLOWDOWN, f"{names[worst]}: command scaled to keep predicted path clear (fraction {num(f, 2)})")
        return float(cand_v[good[0]]), float(cand_w[good[0]])

    def _finish(self, col: VerdictCollector, out: OutputCommand, source: str,
                cmd: VelocityCommand | None, now: float) -> StepResult:
        dt = self._dt(now)
        if out.is_zero:
            self._lin.accel = self._ang.accel = 0.0
        elif dt > 0:
            self._lin.accel = (out.linear_x - self._lin.value) / dt
            self._ang.accel = (out.angular_z - self._ang.value) / dt
        self._lin.value, self._ang.value = out.linear_x, out.angular_z
        self.last_sent_time = now if self.last_sent_time is None else max(now, self.last_sent_time)
        return StepResult(col.verdict(), out, source, cmd, self.estop.latched, now)

    @property
    def last_sent(self) -> OutputCommand:
        return OutputCommand(self._lin.value, self._ang.value)
