"""The MuJoCo world behind a small stepping API (no ROS): command, step, read sensors.

    sim = Simulator(load_layout("fetch_red_cube"))
    sim.set_cmd_vel(0.3, 0.0)          # body twist; the motor driver stops it after cmd_timeout
    sim.step_for(1.0)                  # advance 1 s of sim time
    sim.odometry(), sim.ground_truth(), sim.laser_scan(), sim.render_camera()

Odometry integrates the wheel encoders (joint angles), never the true pose. Rendering is offscreen
(set MUJOCO_GL=egl before the first render for headless machines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from qwen_stack.geometry import wrap_angle, yaw_of_quaternion
from qwen_stack.sim.diff_drive import DiffDriveKinematics, MotorDriver, WheelOdometry
from qwen_stack.sim.scenario import WorldLayout
from qwen_stack.robot import RobotSpec, load_robot
from qwen_stack.sim.world import GROUP_WORLD, build_mjcf, joint_names


@dataclass(frozen=True)
class LaserSpec:
    """A planar scanner sampled with mj_multiRay from the `laser` site (REP 117: no return = +inf)."""
    beams: int = 360
    angle_min: float = -math.pi           # rad, first beam (0 = straight ahead, + left)
    angle_max: float = math.pi * (1 - 2 / 360)  # rad, last beam
    range_min: float = 0.05               # m, shorter returns are reported as -inf (too close to measure)
    range_max: float = 8.0                # m

    def __post_init__(self) -> None:
        if self.beams < 2:
            raise ValueError(f"LaserSpec.beams must be >= 2, got {self.beams}")
        if not self.angle_max > self.angle_min:
            raise ValueError("LaserSpec.angle_max must be > angle_min")
        if not 0 <= self.range_min < self.range_max:
            raise ValueError("LaserSpec needs 0 <= range_min < range_max")

    @property
    def angle_increment(self) -> float:
        return (self.angle_max - self.angle_min) / (self.beams - 1)

    def angles(self) -> np.ndarray:
        return self.angle_min + self.angle_increment * np.arange(self.beams)  # [beams]


@dataclass(frozen=True)
class BaseState:
    """Planar pose and body-frame velocity of the base."""
    x: float
    y: float
    yaw: float
    linear: float   # m/s along base x
    angular: float  # rad/s about z


@dataclass(frozen=True)
class ObjectState:
    name: str
    shape: str
    rgba: tuple[float, float, float, float]
    x: float
    y: float
    z: float
    yaw: float
    held: bool


class Simulator:
    def __init__(self, layout: WorldLayout, robot: RobotSpec | None = None, laser: LaserSpec = LaserSpec(),
                 cmd_timeout: float = 0.5, timestep: float = 0.002, max_render: tuple[int, int] = (640, 480),
                 fast_render: bool = True):
        robot = robot if robot is not None else load_robot()   # None: config/robot.yaml
        self.layout, self.robot, self.laser = layout, robot, laser
        self.joint_names = joint_names(robot)   # joint_states order
        self.xml = build_mjcf(layout, robot, offscreen=max_render, timestep=timestep, fast_render=fast_render)
        self.model = mujoco.MjModel.from_xml_string(self.xml)
        self.data = mujoco.MjData(self.model)
        self.kinematics = DiffDriveKinematics(robot.wheel_radius, robot.wheel_separation)
        self.driver = MotorDriver(self.kinematics, timeout=cmd_timeout, max_wheel_speed=robot.max_wheel_speed)
        self.odom = WheelOdometry(self.kinematics)
        m = self.model
        self._base_body = m.body("base_link").id
        self._base_qpos = m.jnt_qposadr[m.joint("base_free").id]
        self._base_qvel = m.jnt_dofadr[m.joint("base_free").id]
        self._joint_qpos = [m.jnt_qposadr[m.joint(n).id] for n in self.joint_names]
        self._joint_qvel = [m.jnt_dofadr[m.joint(n).id] for n in self.joint_names]
        self._act = {n: m.actuator(n).id for n in ("left_wheel_motor", "right_wheel_motor", "camera_pan_motor")}
        self._laser_site = m.site("laser").id
        self._pick_site = m.site("pick").id
        self._objects = {o.name: o for o in layout.objects}
        self._object_body = {o.name: m.body(o.name).id for o in layout.objects}
        self._object_qpos = {o.name: m.jnt_qposadr[m.joint(o.name + "_free").id] for o in layout.objects}
        self._weld = {o.name: m.equality("pick_" + o.name).id for o in layout.objects if o.graspable}
        self.held: str | None = None
        # injected faults (evaluation of recoveries; both off by default): attach requests that fail as if
        # the magnet slipped, and an object moved away once the base has left its start (during the approach)
        self.fail_next_attaches = 0
        self.move_on_approach = ""
        self._start_xy: tuple[float, float] | None = None
        self._laser_dirs_local = np.stack([np.cos(laser.angles()), np.sin(laser.angles()),
                                           np.zeros(laser.beams)], axis=1)  # [beams, 3]
        self._laser_group = np.zeros(6, dtype=np.uint8)
        self._laser_group[GROUP_WORLD] = 1
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        mujoco.mj_forward(self.model, self.data)
        self._update_odometry()

    # ---- time and commands --------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def set_cmd_vel(self, linear: float, angular: float) -> str | None:
        """Body twist command (m/s, rad/s) at the current sim time. Returns an error for bad input."""
        return self.driver.command(float(linear), float(angular), self.time)

    def set_pan(self, angle: float) -> str | None:
        """Camera pan target (rad, + left). Returns an error (and keeps the old target) if out of range."""
        if not math.isfinite(angle) or abs(angle) > self.robot.pan_limit:
            return f"pan {angle} rad is outside [-{self.robot.pan_limit}, {self.robot.pan_limit}]"
        self.data.ctrl[self._act["camera_pan_motor"]] = angle
        return None

    def step(self, n: int = 1) -> None:
        """Advance n physics steps; wheel targets come from the motor driver at each step."""
        d = self.data
        for _ in range(n):
            left, right = self.driver.wheel_targets(self.time)
            d.ctrl[self._act["left_wheel_motor"]] = left
            d.ctrl[self._act["right_wheel_motor"]] = right
            mujoco.mj_step(self.model, d)
            self._update_odometry()
        if self.move_on_approach:
            self._maybe_move_on_approach()

    def _maybe_move_on_approach(self) -> None:
        q = self.data.qpos[self._base_qpos:self._base_qpos + 2]
        if self._start_xy is None:
            self._start_xy = (float(q[0]), float(q[1]))
        if math.hypot(q[0] - self._start_xy[0], q[1] - self._start_xy[1]) < 0.5:
            return
        name, self.move_on_approach = self.move_on_approach, ""
        if name == self.held or name not in self._object_qpos:
            return
        a = self._object_qpos[name]
        ox, oy = self.data.qpos[a], self.data.qpos[a + 1]
        # 0.9 m sideways of the robot's line to it, kept inside the arena
        bx, by = ox - q[0], oy - q[1]
        n = math.hypot(bx, by) or 1.0
        half = min(self.layout.arena_half_size) - 0.3
        for sign in (1, -1):
            nx, ny = ox - sign * 0.9 * by / n, oy + sign * 0.9 * bx / n
            if abs(nx) <= half and abs(ny) <= half:
                break
        self.move_object(name, max(-half, min(half, nx)), max(-half, min(half, ny)))

    def move_object(self, name: str, x: float, y: float) -> None:
        """Teleport an object (at rest, same height and orientation) to (x, y)."""
        a, v = self._object_qpos[name], self.model.jnt_dofadr[self.model.joint(name + "_free").id]
        self.data.qpos[a], self.data.qpos[a + 1] = x, y
        self.data.qvel[v:v + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def step_for(self, seconds: float) -> None:
        self.step(max(0, int(round(seconds / self.timestep))))

    def _update_odometry(self) -> None:
        q = self.data.qpos
        self.odom.update(float(q[self._joint_qpos[0]]), float(q[self._joint_qpos[1]]), self.time)

    # ---- state ------------------------------------------------------------------------------
    def odometry(self) -> BaseState:
        """Wheel-encoder dead reckoning in the odom frame (the robot's start pose)."""
        o = self.odom
        return BaseState(o.x, o.y, o.yaw, o.linear, o.angular)

    def ground_truth(self) -> BaseState:
        """The true pose in the world frame and the true body-frame velocity."""
        q = self.data.qpos[self._base_qpos:self._base_qpos + 7]
        w, z = q[3], q[6]
        yaw = yaw_of_quaternion(q[4], q[5], z, w)   # MuJoCo's qpos quaternion is (w, x, y, z)
        v = self.data.qvel[self._base_qvel:self._base_qvel + 6]  # free joint: world linear, body angular
        linear = v[0] * math.cos(yaw) + v[1] * math.sin(yaw)
        return BaseState(float(q[0]), float(q[1]), yaw, float(linear), float(v[5]))

    def joint_states(self) -> tuple[tuple[str, ...], list[float], list[float]]:
        q, v = self.data.qpos, self.data.qvel
        return self.joint_names, [float(q[i]) for i in self._joint_qpos], [float(v[i]) for i in self._joint_qvel]

    def objects(self) -> list[ObjectState]:
        out = []
        for name, spec in self._objects.items():
            a = self._object_qpos[name]
            x, y, z, w, qx, qy, qz = self.data.qpos[a:a + 7]
            yaw = yaw_of_quaternion(qx, qy, qz, w)
            out.append(ObjectState(name, spec.shape, spec.rgba, float(x), float(y), float(z), yaw, name == self.held))
        return out

    # ---- sensors ----------------------------------------------------------------------------
    def laser_scan(self) -> np.ndarray:
        """Ranges in metres, one per beam of LaserSpec.angles(); +inf where nothing within range_max."""
        d = self.data
        origin = d.site_xpos[self._laser_site].copy()
        rot = d.site_xmat[self._laser_site].reshape(3, 3)
        dirs = (self._laser_dirs_local @ rot.T).reshape(-1)  # [beams*3], world frame
        n = self.laser.beams
        geomid = np.zeros(n, dtype=np.int32)
        dist = np.zeros(n, dtype=np.float64)
        mujoco.mj_multiRay(self.model, d, origin, dirs, self._laser_group, 1, -1, geomid, dist, None, n,
                           self.laser.range_max)
        ranges = np.where((geomid < 0) | (dist < 0) | (dist > self.laser.range_max), np.inf, dist)
        ranges = np.where(ranges < self.laser.range_min, -np.inf, ranges)
        return ranges  # [beams]

    def render_camera(self, width: int = 320, height: int = 240) -> np.ndarray:
        """RGB image [height, width, 3] uint8 from the robot's camera."""
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height=height, width=width)
        r = self._renderers[key]
        r.update_scene(self.data, camera="camera")
        return r.render()

    def camera_intrinsics(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) of the pinhole camera for an image of that size (square pixels)."""
        fy = 0.5 * height / math.tan(math.radians(self.robot.camera_fovy_deg) / 2)
        return fy, fy, width / 2.0, height / 2.0

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    # ---- magnetic pick ------------------------------------------------------------------------
    def attach(self, name: str = "") -> tuple[bool, str]:
        """Attach the named (or, empty name, the nearest) graspable object within reach of the pick.

        Returns (success, message); the message names the object or says why not.
        """
        if self.held is not None:
            return False, f"already holding {self.held}"
        if self.fail_next_attaches > 0:
            self.fail_next_attaches -= 1
            return False, f"{name or 'the object'} slipped off the magnet (injected fault)"
        pick = self.data.site_xpos[self._pick_site]
        candidates = []
        for obj_name, spec in self._objects.items():
            if name and obj_name != name:
                continue
            pos = self.data.xpos[self._object_body[obj_name]]
            dist = math.hypot(pos[0] - pick[0], pos[1] - pick[1]) - spec.footprint_radius
            candidates.append((dist, obj_name, spec))
        if name and not candidates:
            return False, f"no object named {name!r}; objects: {sorted(self._objects)}"
        candidates.sort()
        for dist, obj_name, spec in candidates:
            if not spec.graspable:
                if name:
                    return False, f"{obj_name} is not graspable"
                continue
            if dist > self.robot.pick_reach:
                return False, f"{obj_name} is {dist:.2f} m from the pick (reach {self.robot.pick_reach} m)"
            self._weld_object(obj_name)
            return True, obj_name
        return False, "no graspable object"

    def _weld_object(self, name: str) -> None:
        m, d = self.model, self.data
        base, obj = self._base_body, self._object_body[name]
        # The magnet pulls the object onto the pick site (its centre on the site's vertical, its height and
        # yaw kept), lifted 1 cm so it does not drag on the floor: the load then sits where the supervisor's
        # load mask and perception expect it, whatever the distance it was grasped from.
        rb, pb = d.xmat[base].reshape(3, 3), d.xpos[base]
        site = rb.T @ (d.site_xpos[self._pick_site] - pb)
        rel_pos = rb.T @ (d.xpos[obj] + np.array([0.0, 0.0, 0.01]) - pb)
        rel_pos[:2] = site[:2]
        adr = self._object_qpos[name]
        d.qpos[adr:adr + 3] = pb + rb @ rel_pos
        d.qvel[m.jnt_dofadr[m.joint(name + "_free").id]:][:6] = 0.0
        mujoco.mj_forward(m, d)
        qb_inv = np.zeros(4)
        mujoco.mju_negQuat(qb_inv, d.xquat[base])
        rel_quat = np.zeros(4)
        mujoco.mju_mulQuat(rel_quat, qb_inv, d.xquat[obj])
        eq = self._weld[name]
        m.eq_data[eq, 0:3] = 0.0           # anchor on body2
        m.eq_data[eq, 3:6] = rel_pos
        m.eq_data[eq, 6:10] = rel_quat
        m.eq_data[eq, 10] = 1.0            # torquescale
        d.eq_active[eq] = 1
        self.held = name

    def detach(self) -> tuple[bool, str]:
        """Release the held object where it is. Returns (success, released object name or reason)."""
        if self.held is None:
            return False, "not holding anything"
        self.data.eq_active[self._weld[self.held]] = 0
        name, self.held = self.held, None
        return True, name


def yaw_difference(a: float, b: float) -> float:
    """a - b wrapped to [-pi, pi)."""
    return wrap_angle(a - b)
